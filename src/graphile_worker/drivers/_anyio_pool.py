"""A small pool of :class:`AnyioConnection` built on anyio primitives, for asyncio and trio.

A semaphore of ``max_size`` slots counts the connections lent out or being opened; idle
connections wait in a stack, so the most recently used one (whose prepared statements are
warm) is lent first. Each is checked before it is lent (:meth:`AnyioConnection.check_idle`,
no round trip) and when it comes back (:attr:`AnyioConnection.reusable`); a failed check
closes it, and a new connection is opened when no idle one is left. Lending and returning
never wait on the loop when a slot and an idle connection are at hand.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import anyio

from ..errors import ConnectionLostError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._anyio_connection import AnyioConnection

__all__ = ["AnyioPool"]

_CLOSED = "the driver is closed; open a new one with create_driver()"


class AnyioPool:
    """Lends out at most ``max_size`` connections; keeps idle ones for the next caller."""

    __slots__ = ("_closed", "_connect", "_idle", "_slots")

    def __init__(self, connect: Callable[[], Awaitable[AnyioConnection]], max_size: int) -> None:
        """Create an empty pool (inside the event loop: the semaphore belongs to it)."""
        self._connect = connect
        self._slots = anyio.Semaphore(max_size)
        self._idle: deque[AnyioConnection] = deque()
        self._closed = False

    async def fill(self, count: int) -> None:
        """Open ``count`` connections now and keep them idle.

        Raises:
            ConnectionLostError: a connection could not be opened (none is kept then).
        """
        try:
            for _ in range(count):
                self._idle.append(await self._connect())
        except BaseException:
            self._close_idle()
            raise

    async def acquire(self) -> AnyioConnection:
        """Lend a healthy connection, waiting for a free slot when all are in use.

        Raises:
            ConnectionLostError: the pool is closed, or a new connection failed to open.
        """
        if self._closed:
            raise ConnectionLostError(_CLOSED)
        slots = self._slots
        try:
            slots.acquire_nowait()
        except anyio.WouldBlock:
            await slots.acquire()
        try:
            idle = self._idle
            while idle:
                connection = idle.pop()
                if connection.check_idle():
                    return connection
                connection.close()
            if self._closed:
                raise ConnectionLostError(_CLOSED)
            return await self._connect()
        except BaseException:
            slots.release()
            raise

    def release(self, connection: AnyioConnection) -> None:
        """Take a connection back: keep it if it is reusable, else close it."""
        if self._closed or not connection.reusable:
            connection.close()
        else:
            self._idle.append(connection)
        self._slots.release()

    def close(self) -> None:
        """Close the idle connections now; lent ones are closed as they come back."""
        self._closed = True
        self._close_idle()

    def _close_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()
