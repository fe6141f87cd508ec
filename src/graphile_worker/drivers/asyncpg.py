"""The fastest driver, for asyncio: asyncpg with prepared statements.

Queries are written with ``:name`` placeholders; :func:`graphile_worker.sql.to_numbered`
turns them into ``$1, $2...`` once per query text (cached), and each call only picks the
values out of the params mapping in that order.

JSON rule (the same for every driver): JSON parameters are passed as already serialised
``str`` and cast in SQL (``CAST(:payload AS json)``); ``json``/``jsonb`` columns come back
decoded. asyncpg would otherwise expect Python objects for json parameters when a statement
is prepared, so a text codec that passes ``str`` through is installed on every connection.

Pooled connections are not reset with ``RESET ALL; UNLISTEN *; ...`` when they go back to
the pool (asyncpg's default): that costs a round trip per call, and our statements leave no
session state behind. An open transaction is still rolled back by asyncpg itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import asyncpg

from .._json import decode_column
from ..errors import ConnectionLostError, GraphileWorkerError
from ..sql import to_numbered
from ._common import DriverBase, check_commit_status, numbered_values
from ._errors import (
    ErrorMap,
    configuration_error,
    connection_lost,
    map_exceptions,
    query_error,
    sqlstate_error,
    translate,
)
from ._listener import ListenConnection
from ._url import normalize_url, resolve_url
from .base import AsyncExecutor, Notification, Params, Row

__all__ = ["DEFAULT_STATEMENT_CACHE_SIZE", "AsyncpgDriver"]

logger: logging.Logger = logging.getLogger("graphile_worker.drivers")

DEFAULT_STATEMENT_CACHE_SIZE = 100
"""Prepared statements kept per connection (asyncpg's default); 0 disables them."""

# --------------------------------------------------------------------------------- errors


def _interface_error(error: BaseException) -> GraphileWorkerError:
    # asyncpg reports a call on a connection that already died as a bare InterfaceError:
    # "connection is closed", or, for a pooled connection (inside transaction()), "...
    # released back to the pool", because the pool takes back a connection the moment the
    # server ends its session. Anything else of this class is a client-side misuse, such as
    # a parameter of the wrong type.
    message = str(error)
    if message.startswith("connection is closed") or "released back to the pool" in message:
        return connection_lost(error)
    return query_error(error)


_ERRORS: ErrorMap = {
    # Server errors, by SQLSTATE: asyncpg's PostgresConnectionError (class 08),
    # AdminShutdownError (57P01, e.g. pg_terminate_backend) and the other session-ending
    # class 57 errors mean the connection is gone.
    asyncpg.exceptions.PostgresError: sqlstate_error,
    asyncpg.exceptions.ClientConfigurationError: configuration_error,
    asyncpg.exceptions.InterfaceError: _interface_error,
    # asyncpg's protocol state no longer matches the server's, typically because the server
    # ended the session between two queries; the connection cannot be used again.
    asyncpg.exceptions.InternalClientError: connection_lost,
    OSError: connection_lost,  # refused, unreachable, reset by peer
    asyncio.TimeoutError: connection_lost,  # connect or pool acquire timed out
}
_TRANSLATABLE: tuple[type[BaseException], ...] = tuple(_ERRORS)


def _translate(error: BaseException) -> GraphileWorkerError:
    """Our exception for an asyncpg (or socket) exception, one of :data:`_TRANSLATABLE`."""
    return translate(error, _ERRORS) or query_error(error)


# ------------------------------------------------------------------------ codecs and binding


def _encode_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(
        f"JSON parameters must be passed as already serialised str (json.dumps(value)), "
        f"not {type(value).__name__}"
    )


async def _prepare_connection(connection: asyncpg.Connection) -> None:
    """Install the json/jsonb codecs (no round trip: both are built-in types)."""
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name,
            encoder=_encode_json,
            decoder=decode_column,
            schema="pg_catalog",
            format="text",
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool ``reset`` hook that skips asyncpg's reset query (see the module docstring)."""


def _bind(sql: str, params: Params | None) -> tuple[str, Sequence[Any]]:
    """``:name`` SQL and a mapping -> ``$n`` SQL and positional arguments."""
    query, names = to_numbered(sql)
    return query, numbered_values(names, params)


def _rowcount(status: str) -> int:
    """Rows affected from a command tag such as ``UPDATE 3`` or ``INSERT 0 1``; else -1."""
    count = status.rpartition(" ")[2]
    return int(count) if count.isdigit() else -1


# ------------------------------------------------------------------------------ executors


class _AsyncpgExecutor:
    """The five calls over an asyncpg ``Pool`` (autocommit) or one ``Connection``."""

    __slots__ = ("_target",)

    def __init__(self, target: asyncpg.Pool | asyncpg.Connection) -> None:
        self._target = target

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; return the rows it affected (or -1)."""
        query, args = _bind(sql, params)
        try:
            status: str = await self._target.execute(query, *args)
        except _TRANSLATABLE as error:
            raise _translate(error) from error
        return _rowcount(status)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one statement and return every row as a dict."""
        query, args = _bind(sql, params)
        try:
            records = await self._target.fetch(query, *args)
        except _TRANSLATABLE as error:
            raise _translate(error) from error
        return [dict(record.items()) for record in records]

    async def _fetch_values(self, sql: str, params: Params | None = None) -> list[Any]:
        """Every row as asyncpg's own record, whose values index by position (see
        :func:`~graphile_worker.sql._statement.fetch_values`)."""
        query, args = _bind(sql, params)
        try:
            return await self._target.fetch(query, *args)  # type: ignore[no-any-return]
        except _TRANSLATABLE as error:
            raise _translate(error) from error

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        """Run one statement and return its first row as a dict, or ``None``."""
        query, args = _bind(sql, params)
        try:
            record = await self._target.fetchrow(query, *args)
        except _TRANSLATABLE as error:
            raise _translate(error) from error
        return None if record is None else dict(record.items())

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        """Run one statement and return the first column of its first row, or ``None``."""
        query, args = _bind(sql, params)
        try:
            return await self._target.fetchval(query, *args)
        except _TRANSLATABLE as error:
            raise _translate(error) from error

    async def execute_script(self, sql: str) -> None:
        """Run several ``;``-separated statements (simple query protocol, no parameters)."""
        try:
            await self._target.execute(sql)
        except _TRANSLATABLE as error:
            raise _translate(error) from error


class AsyncpgDriver(_AsyncpgExecutor, DriverBase):
    """A :class:`~graphile_worker.drivers.DatabaseDriver` over an asyncpg pool (asyncio only).

    Open it with :func:`graphile_worker.drivers.create_driver` (``driver="asyncpg"``) or
    :meth:`open`; close it with :meth:`aclose` or ``async with``. Calls made directly on
    the driver run in autocommit mode on any pooled connection.
    """

    __slots__ = ("_listen_url", "_pool", "_url")

    def __init__(self, pool: asyncpg.Pool, url: str, *, listen_url: str | None = None) -> None:
        """Wrap an already opened pool; most code should call :meth:`open` instead."""
        super().__init__(pool)
        self._pool = pool
        self._url = url
        self._listen_url = listen_url or url

    @classmethod
    async def open(
        cls,
        url: str | None = None,
        *,
        min_size: int = 1,
        max_size: int = 10,
        prepared_statements: bool = True,
        statement_cache_size: int = DEFAULT_STATEMENT_CACHE_SIZE,
        listen_url: str | None = None,
    ) -> AsyncpgDriver:
        """Connect to ``url`` and fill the pool.

        The arguments are those of :func:`~graphile_worker.drivers.create_driver`, plus
        ``statement_cache_size``, the prepared statements kept per connection.
        ``prepared_statements=False`` makes asyncpg use unnamed statements only
        (``statement_cache_size=0``).

        Raises:
            ConnectionLostError: the server cannot be reached or refused the connection.
        """
        dsn = resolve_url(url)
        listen_dsn = None if listen_url is None else normalize_url(listen_url)
        with map_exceptions(_ERRORS, connecting=True):
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                statement_cache_size=statement_cache_size if prepared_statements else 0,
                init=_prepare_connection,
                reset=_keep_session,
            )
        return cls(pool, dsn, listen_url=listen_dsn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncExecutor]:
        """Hold one pooled connection inside ``BEGIN`` ... ``COMMIT`` (``ROLLBACK`` on error)."""
        with map_exceptions(_ERRORS):
            connection = await self._pool.acquire()
        try:
            with map_exceptions(_ERRORS):
                await connection.execute("BEGIN")
            try:
                yield _AsyncpgExecutor(connection)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _rollback_quietly(connection)
                raise
            with map_exceptions(_ERRORS):
                status = await connection.execute("COMMIT")
            check_commit_status(status)
        finally:
            with anyio.CancelScope(shield=True):
                await self._pool.release(connection)

    async def _open_listener(self, channels: Sequence[str]) -> ListenConnection:
        listener = _AsyncpgListenConnection()
        with map_exceptions(_ERRORS, connecting=True):
            connection = await asyncpg.connect(self._listen_url, statement_cache_size=0)
        try:
            connection.add_termination_listener(listener.on_termination)
            with map_exceptions(_ERRORS):
                for channel in channels:  # one LISTEN round trip per channel
                    await connection.add_listener(channel, listener.on_notification)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _close_quietly(connection)
            raise
        listener.connection = connection
        return listener

    async def aclose(self) -> None:
        """Close every pooled connection, waiting for those in use to be released."""
        with anyio.CancelScope(shield=True), map_exceptions(_ERRORS):
            await self._pool.close()


async def _rollback_quietly(connection: asyncpg.Connection) -> None:
    """Roll back after an error; a broken connection is left for the pool to replace.

    When the server ended the session, asyncpg has already detached the connection from
    its pool proxy, and every call on the proxy raises ``InterfaceError``.
    """
    try:
        if connection.is_closed():
            return
        await connection.execute("ROLLBACK")
    except _TRANSLATABLE as error:
        logger.warning("rollback failed (%s); the connection will be replaced", error)
        with suppress(*_TRANSLATABLE):
            connection.terminate()


async def _close_quietly(connection: asyncpg.Connection) -> None:
    try:
        await connection.close(timeout=5)
    except _TRANSLATABLE:
        connection.terminate()


class _AsyncpgListenConnection:
    """Notifications arrive through asyncpg callbacks; :meth:`receive` waits for them."""

    __slots__ = ("_arrived", "_lost", "_queue", "connection")

    def __init__(self) -> None:
        self.connection: asyncpg.Connection | None = None
        self._queue: deque[Notification] = deque()
        self._arrived = anyio.Event()
        self._lost = False

    def on_notification(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._queue.append(Notification(channel, payload))
        self._arrived.set()

    def on_termination(self, connection: Any) -> None:
        self._lost = True
        self._arrived.set()

    async def receive(self, timeout: float) -> Sequence[Notification]:  # noqa: ASYNC109
        if not self._queue and not self._lost:
            with anyio.move_on_after(timeout):
                await self._arrived.wait()
        if self._queue:
            found = list(self._queue)
            self._queue.clear()
        elif self._lost:
            raise ConnectionLostError("the LISTEN connection was closed")
        else:
            found = []
        if self._arrived.is_set():
            self._arrived = anyio.Event()
        return found

    async def ping(self) -> None:
        assert self.connection is not None
        with map_exceptions(_ERRORS):
            await self.connection.execute("SELECT 1")

    async def close(self) -> None:
        if self.connection is not None:
            await _close_quietly(self.connection)
