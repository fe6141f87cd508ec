"""psycopg on the event loop with no thread, for trio and asyncio.

psycopg's async API only runs on asyncio, and the threaded driver pays for a worker-thread
hop (and for decoding rows in a thread that contends for the GIL) on every call. This
driver drives psycopg's sans-I/O layer instead: libpq's asynchronous calls, the protocol
generators of :mod:`psycopg.generators` awaited with ``anyio.wait_readable`` and
``wait_writable`` (:mod:`._anyio_waiting`), rows decoded by psycopg's own loaders. Its pool
(:mod:`._anyio_pool`) uses anyio primitives only, so the same code runs on both runtimes.

Frequently run statements are prepared on the server (after ``prepare_threshold`` runs on a
connection, like psycopg); ``prepared_statements=False`` turns that off for PgBouncer in
transaction mode. A cancelled call stops its statement on the server before it returns
(or closes the connection), so the pool never lends a connection in an unknown state.
"""

from __future__ import annotations

import logging
from collections import deque
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import anyio
import psycopg

from ..errors import DatabaseError
from ._anyio_connection import AnyioConnection, prepare_conninfo
from ._anyio_pool import AnyioPool
from ._common import DriverBase, check_commit_status
from ._errors import configuration_error
from ._listener import listen_statement
from ._url import normalize_url, resolve_url
from .base import AsyncExecutor, Notification, Params, Row

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from ._listener import ListenConnection

__all__ = ["PsycopgAnyioDriver"]

logger: logging.Logger = logging.getLogger("graphile_worker.drivers")

T = TypeVar("T")
Method: TypeAlias = "Callable[[AnyioConnection, str, Params | None], Awaitable[T]]"
"""One of :class:`AnyioConnection`'s statement methods: (connection, sql, params) -> result."""


class _Executor:
    """The executor calls, over whichever connection :meth:`_call` runs them on."""

    __slots__ = ()

    async def _call(self, method: Method[T], sql: str, params: Params | None) -> T:
        raise NotImplementedError

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; return the rows it affected (or -1)."""
        return await self._call(AnyioConnection.execute, sql, params)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one statement and return every row as a dict."""
        return await self._call(AnyioConnection.fetch, sql, params)

    async def _fetch_values(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        """Every row as a tuple (see :func:`~graphile_worker.sql._statement.fetch_values`)."""
        return await self._call(AnyioConnection.fetch_tuples, sql, params)

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        """Run one statement and return its first row as a dict, or ``None``."""
        return await self._call(AnyioConnection.fetchrow, sql, params)

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        """Run one statement and return the first column of its first row, or ``None``."""
        return await self._call(AnyioConnection.fetchval, sql, params)

    async def execute_script(self, sql: str) -> None:
        """Run several ``;``-separated statements without parameters."""
        await self._call(AnyioConnection.execute_script, sql, None)


class _TransactionExecutor(_Executor):
    """The body of :meth:`PsycopgAnyioDriver.transaction`: every call on one connection."""

    __slots__ = ("_connection",)

    def __init__(self, connection: AnyioConnection) -> None:
        self._connection: AnyioConnection | None = connection

    async def _call(self, method: Method[T], sql: str, params: Params | None) -> T:
        connection = self._connection
        if connection is None:
            raise RuntimeError(
                "this transaction has ended; its executor cannot be used after the async with block"
            )
        return await method(connection, sql, params)

    def detach(self) -> None:
        """Forget the connection, which goes back to the pool and to other callers."""
        self._connection = None


class PsycopgAnyioDriver(_Executor, DriverBase):
    """A :class:`~graphile_worker.drivers.DatabaseDriver` over libpq, on trio or asyncio.

    Open it with :func:`graphile_worker.drivers.create_driver` (``driver="psycopg-anyio"``)
    or :meth:`open`; close it with :meth:`aclose` or ``async with``. Calls made directly on
    the driver run in autocommit mode on any pooled connection.
    """

    __slots__ = ("_connect_listener", "_pool")

    def __init__(
        self, pool: AnyioPool, connect_listener: Callable[[], Awaitable[AnyioConnection]]
    ) -> None:
        """Wrap an already filled pool; most code should call :meth:`open` instead."""
        self._pool = pool
        self._connect_listener = connect_listener

    @classmethod
    async def open(
        cls,
        url: str | None = None,
        *,
        min_size: int = 1,
        max_size: int = 10,
        prepared_statements: bool = True,
        prepare_threshold: int | None = 5,
        listen_url: str | None = None,
    ) -> PsycopgAnyioDriver:
        """Connect to ``url`` and fill the pool; the other arguments are those of
        :func:`~graphile_worker.drivers.create_driver`, plus ``prepare_threshold``: runs of
        one statement on one connection before it is prepared on the server (``0``: at
        once; ``None``: never; ``prepared_statements=False`` means never too).

        At least one connection is opened here even with ``min_size=0``, so that a wrong
        URL or an unreachable server is reported at once.

        Raises:
            ConnectionLostError: the server cannot be reached or refused the connection.
        """
        threshold = prepare_threshold if prepared_statements else None
        conninfo = resolve_url(url)
        pool = AnyioPool(_connector(conninfo, threshold), max_size)
        await pool.fill(max(min_size, 1))
        listen_conninfo = conninfo if listen_url is None else normalize_url(listen_url)
        return cls(pool, _connector(listen_conninfo, None))

    # ------------------------------------------------------------------------ statements

    async def _call(self, method: Method[T], sql: str, params: Params | None) -> T:
        pool = self._pool
        connection = await pool.acquire()
        try:
            return await method(connection, sql, params)
        finally:
            pool.release(connection)

    # ----------------------------------------------------------------------- transaction

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncExecutor]:
        """Hold one pooled connection inside ``BEGIN`` ... ``COMMIT`` (``ROLLBACK`` on error)."""
        connection = await self._pool.acquire()
        executor = _TransactionExecutor(connection)
        try:
            await connection.command(b"BEGIN")
            try:
                yield executor
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _rollback_quietly(connection)
                raise
            check_commit_status(await connection.command(b"COMMIT"))
        finally:
            executor.detach()
            self._pool.release(connection)

    # ---------------------------------------------------------------------------- listen

    async def _open_listener(self, channels: Sequence[str]) -> ListenConnection:
        connection = await self._connect_listener()
        try:
            await connection.command(listen_statement(channels).encode("utf-8"))
        except BaseException:
            connection.close()
            raise
        return _AnyioListenConnection(connection)

    # ----------------------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Close the pool; connections still lent out are closed when they come back."""
        self._pool.close()


def _connector(url: str, prepare_threshold: int | None) -> Callable[[], Awaitable[AnyioConnection]]:
    """A function opening connections to ``url``; the URL is checked once, here.

    Raises:
        ConfigurationError: libpq cannot parse the URL.
    """
    try:
        conninfo, timeout = prepare_conninfo(url)
    except psycopg.Error as error:
        raise configuration_error(error) from error
    return partial(
        AnyioConnection.connect,
        conninfo,
        connect_timeout=timeout,
        prepare_threshold=prepare_threshold,
    )


async def _rollback_quietly(connection: AnyioConnection) -> None:
    """Roll back after an error; a connection that cannot is closed (and then dropped)."""
    if not connection.in_transaction:
        return
    try:
        await connection.command(b"ROLLBACK")
    except (DatabaseError, RuntimeError) as error:  # RuntimeError: a statement still runs
        logger.warning("rollback failed (%s); dropping the connection", error)
        connection.close()


class _AnyioListenConnection:
    """A listening connection: waits on its socket, collects what the server sends."""

    __slots__ = ("_connection", "_pending")

    def __init__(self, connection: AnyioConnection) -> None:
        self._connection = connection
        self._pending: deque[Notification] = deque()
        connection.on_notification(self._pending.append)

    async def receive(self, timeout: float) -> Sequence[Notification]:  # noqa: ASYNC109
        pending = self._pending
        connection = self._connection
        connection.read_input()
        if not pending:
            # Reading happens right after each wait, with no await in between, so the
            # timeout can never drop notifications already taken off the socket.
            with anyio.move_on_after(timeout):
                while not pending:
                    await connection.wait_input()
        found = list(pending)
        pending.clear()
        return found

    async def ping(self) -> None:
        await self._connection.command(b"SELECT 1")

    async def close(self) -> None:
        self._connection.close()
