"""The part of ``LISTEN`` every driver shares: reconnecting, back-off and the reconnect marker.

A driver only knows how to open one listening connection (:data:`Connector`) and how to wait
on it (:class:`ListenConnection`). :class:`NotificationStream` turns that into the iterator
:meth:`DatabaseDriver.listen() <graphile_worker.drivers.DatabaseDriver.listen>` promises:
when the connection breaks it reconnects with back-off, re-issues ``LISTEN`` and yields
``Notification("", "")`` so the caller knows that notifications may have been missed while
it was away. An idle connection is pinged now and then, because a connection that died
silently (a dropped network path, a NAT timeout) would otherwise never report it.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import anyio

from ..errors import ConfigurationError, DatabaseError
from .base import Notification

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = [
    "RECONNECTED",
    "Connector",
    "ListenConnection",
    "NotificationStream",
    "listen_statement",
    "reconnect_delays",
]

logger: logging.Logger = logging.getLogger("graphile_worker.drivers")

RECONNECTED = Notification("", "")
"""Yielded after every reconnect: notifications sent while disconnected were lost."""

IDLE_PING_SECONDS = 30.0
"""How long a listening connection may stay silent before we check that it is alive."""


class ListenConnection(Protocol):
    """One open connection that has already run ``LISTEN`` on every channel."""

    async def receive(self, timeout: float) -> Sequence[Notification]:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds; return what arrived (empty on timeout).

        The timeout is a parameter rather than a cancel scope around the call on purpose:
        cancelling a wait that has just read notifications from the socket would lose them,
        while a timeout handled inside the driver never does.

        Raises:
            DatabaseError: the connection is broken (usually ``ConnectionLostError``).
        """
        ...

    async def ping(self) -> None:
        """Run a trivial query, raising ``DatabaseError`` if the connection is broken."""
        ...

    async def close(self) -> None:
        """Close the connection; must not raise."""
        ...


Connector = Callable[[], Awaitable[ListenConnection]]
"""Opens a new listening connection (connect, then ``LISTEN`` on every channel)."""


def validate_channels(channels: Sequence[str]) -> tuple[str, ...]:
    """Check the channel names before any connection is opened.

    Raises:
        ConfigurationError: no channel, or a name that PostgreSQL cannot accept.
    """
    if not channels:
        raise ConfigurationError("listen() needs at least one channel name")
    for channel in channels:
        if not isinstance(channel, str) or not channel or "\x00" in channel:
            raise ConfigurationError(
                f"channel name {channel!r} is not valid; use a non-empty string without NUL"
            )
    return tuple(dict.fromkeys(channels))


def listen_statement(channels: Sequence[str]) -> str:
    """``LISTEN`` on every channel in one simple-protocol query (one round trip).

    Channel names are identifiers, so ``jobs:insert`` must be double-quoted.
    """
    return "; ".join('LISTEN "' + channel.replace('"', '""') + '"' for channel in channels)


def reconnect_delays(
    *, first: float = 0.1, factor: float = 2.0, cap: float = 10.0, jitter: float = 0.5
) -> Iterator[float]:
    """Seconds to wait before each reconnection attempt: 0, then growing up to ``cap``.

    The first attempt is immediate because most losses (a terminated backend, a pooler
    restart) are over at once. Each later delay is scaled by a random factor in
    ``[1 - jitter, 1]`` so that many workers losing the same server do not return in step.
    """
    yield 0.0
    delay = first
    while True:
        yield delay * (1.0 - jitter * random.random())  # jitter, not cryptography
        delay = min(cap, delay * factor)


class NotificationStream:
    """The async context manager and iterator returned by a driver's ``listen()``.

    Entering opens the connection and runs ``LISTEN``, so a ``NOTIFY`` sent after
    ``__aenter__`` returns is never missed; a failure to connect at that point is raised
    (as ``ConnectionLostError``) rather than retried, so that a wrong URL is reported at
    once. Later losses are retried forever with :func:`reconnect_delays` until the
    ``async with`` block ends.
    """

    def __init__(
        self,
        connect: Connector,
        channels: Sequence[str],
        *,
        idle_ping: float = IDLE_PING_SECONDS,
    ) -> None:
        self._connect = connect
        self._channels = tuple(channels)
        self._idle_ping = idle_ping
        self._connection: ListenConnection | None = None
        self._pending: deque[Notification] = deque()
        self._closed = False

    async def __aenter__(self) -> Self:
        if self._closed:
            raise RuntimeError("a NotificationStream cannot be entered twice")
        self._connection = await self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed = True
        self._pending.clear()
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Notification:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closed:
                raise StopAsyncIteration
            connection = self._connection
            if connection is None:
                await self._reconnect()
                return RECONNECTED
            try:
                batch = await connection.receive(self._idle_ping)
                if not batch:
                    await connection.ping()
                    continue
            except DatabaseError as error:
                logger.warning(
                    "lost the LISTEN connection for %s (%s); reconnecting",
                    ", ".join(self._channels),
                    error,
                )
                self._connection = None
                with anyio.CancelScope(shield=True):
                    await connection.close()
                continue
            self._pending.extend(batch)

    async def _reconnect(self) -> None:
        for attempt, delay in enumerate(reconnect_delays()):
            if delay:
                await anyio.sleep(delay)
            try:
                connection = await self._connect()
            except DatabaseError as error:
                logger.warning(
                    "could not re-open the LISTEN connection (attempt %d, %s); retrying",
                    attempt + 1,
                    error,
                )
                continue
            if self._closed:  # the block ended while we were connecting
                with anyio.CancelScope(shield=True):
                    await connection.close()
                raise StopAsyncIteration
            self._connection = connection
            logger.info("re-opened the LISTEN connection for %s", ", ".join(self._channels))
            return
