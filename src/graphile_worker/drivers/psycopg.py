"""psycopg 3's asyncio API: an ``AsyncConnectionPool`` of autocommit connections.

For asyncio users who prefer psycopg (or need libpq features asyncpg lacks, such as
``service=`` files or GSSAPI). It fails under trio, like every asyncio-only library; trio
users get :mod:`graphile_worker.drivers.psycopg_threaded`.

psycopg prepares a statement on the server after it ran ``prepare_threshold`` times on one
connection; ``prepared_statements=False`` turns that off for PgBouncer in transaction mode.
Cancellation. anyio re-delivers a cancellation at every ``await`` inside a cancelled scope.
Returning a connection to the pool is therefore shielded (an interrupted ``putconn`` would
leak it). And when psycopg, cancelled mid-query, asks the server to cancel the query, that
request is itself interrupted, so psycopg closes the socket and gives up; the backend would
run the query to its end. A cancel handle taken when each connection is made lets us stop
such an orphaned query on the server (:func:`_stop_orphaned_query`).

Dead connections. A connection is checked as it leaves the pool (:meth:`PsycopgDriver._checkout`,
no round trip); one the server closed meanwhile is dropped and the next one tried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast
from weakref import WeakKeyDictionary

import anyio
import anyio.to_thread
import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..errors import ConnectionLostError
from ..sql import to_pyformat
from ._common import DriverBase, check_commit_status
from ._errors import as_connection_error
from ._listener import ListenConnection, listen_statement
from ._psycopg_common import (
    CHECKOUT_WAIT_SLICE,
    EMPTY_PARAMS,
    POOL_RECONNECT_TIMEOUT,
    PROBE_CONNECT_TIMEOUT,
    connection_kwargs,
    failed_connects,
    needs_rollback,
    rowcount,
    server_ended,
    to_notification,
    translate_psycopg_error,
    use_fast_json,
)
from ._url import normalize_url, resolve_url
from .base import AsyncExecutor, Notification, Params, Row

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.pq.abc import PGcancel

__all__ = ["PsycopgDriver"]

logger: logging.Logger = logging.getLogger("graphile_worker.drivers")

T = TypeVar("T")
AsyncCall = Callable[["AsyncConnection[Any]", str, "Params | None"], Awaitable[T]]
"""A statement on one connection: (connection, sql, params) -> awaitable result."""


# ------------------------------------------------------------- statements on one connection
# The awaited twins of the sync statements in _psycopg_common: psycopg's Cursor and
# AsyncCursor share no method body to call. What the statements decide (placeholders,
# EMPTY_PARAMS, row factories, rowcount) is shared; only the awaits differ.


async def _execute(connection: AsyncConnection[Any], sql: str, params: Params | None) -> int:
    cursor = await connection.execute(to_pyformat(sql), params or EMPTY_PARAMS)
    return rowcount(cursor)


async def _fetch(connection: AsyncConnection[Any], sql: str, params: Params | None) -> list[Row]:
    cursor = connection.cursor(row_factory=dict_row)
    await cursor.execute(to_pyformat(sql), params or EMPTY_PARAMS)
    return cast("list[Row]", await cursor.fetchall())


async def _fetch_tuples(
    connection: AsyncConnection[Any], sql: str, params: Params | None
) -> list[tuple[Any, ...]]:
    cursor = connection.cursor(row_factory=tuple_row)
    await cursor.execute(to_pyformat(sql), params or EMPTY_PARAMS)
    return await cursor.fetchall()


async def _fetchrow(
    connection: AsyncConnection[Any], sql: str, params: Params | None
) -> Row | None:
    cursor = connection.cursor(row_factory=dict_row)
    await cursor.execute(to_pyformat(sql), params or EMPTY_PARAMS)
    return await cursor.fetchone()


async def _fetchval(connection: AsyncConnection[Any], sql: str, params: Params | None) -> Any:
    cursor = connection.cursor(row_factory=tuple_row)
    await cursor.execute(to_pyformat(sql), params or EMPTY_PARAMS)
    row = await cursor.fetchone()
    return None if row is None or not row else row[0]


async def _execute_script(
    connection: AsyncConnection[Any], sql: str, params: Params | None
) -> None:
    # No parameters and bytes: the simple query protocol, which allows several statements.
    await connection.execute(sql.encode("utf-8"))


_cancel_handles: WeakKeyDictionary[AsyncConnection[Any], PGcancel] = WeakKeyDictionary()


async def _remember_cancel_handle(connection: AsyncConnection[Any]) -> None:
    """Pool ``configure`` hook: keep what is needed to cancel this backend's queries later
    (and decode JSON with the library's decoder)."""
    _cancel_handles[connection] = connection.pgconn.get_cancel()
    use_fast_json(connection)


async def _stop_orphaned_query(connection: AsyncConnection[Any]) -> None:
    """Cancel on the server a query whose connection psycopg closed while it ran.

    Only a closed connection qualifies: on an open one the cancel could hit whatever query
    the next borrower of the connection runs.
    """
    handle = _cancel_handles.pop(connection, None)
    if handle is None:
        return
    with anyio.CancelScope(shield=True):
        try:
            await anyio.to_thread.run_sync(handle.cancel)
        except psycopg.Error as error:
            logger.warning("could not cancel an abandoned query on the server: %s", error)


async def _run(
    connection: AsyncConnection[Any], operation: AsyncCall[T], sql: str, params: Params | None
) -> T:
    """Run one statement, translating errors and cleaning up after a cancellation."""
    try:
        return await operation(connection, sql, params)
    except psycopg.Error as error:
        raise translate_psycopg_error(error) from error
    except BaseException:
        if connection.closed:
            await _stop_orphaned_query(connection)
        raise


class _ConnectionExecutor:
    """The five calls on one connection, for the body of :meth:`PsycopgDriver.transaction`."""

    __slots__ = ("_connection",)

    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self._connection: AsyncConnection[Any] | None = connection

    async def _call(self, operation: AsyncCall[T], sql: str, params: Params | None) -> T:
        connection = self._connection
        if connection is None:
            raise RuntimeError(
                "this transaction has ended; its executor cannot be used after the async with block"
            )
        return await _run(connection, operation, sql, params)

    def detach(self) -> None:
        """Forget the connection, which goes back to the pool and to other callers."""
        self._connection = None

    async def execute(self, sql: str, params: Params | None = None) -> int:
        return await self._call(_execute, sql, params)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        return await self._call(_fetch, sql, params)

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        return await self._call(_fetchrow, sql, params)

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        return await self._call(_fetchval, sql, params)

    async def execute_script(self, sql: str) -> None:
        await self._call(_execute_script, sql, None)


class PsycopgDriver(DriverBase):
    """A :class:`~graphile_worker.drivers.DatabaseDriver` over psycopg's asyncio pool.

    Open it with :func:`graphile_worker.drivers.create_driver` (``driver="psycopg"``) or
    :meth:`open`; close it with :meth:`aclose` or ``async with``.
    """

    def __init__(
        self, pool: AsyncConnectionPool[Any], url: str, *, listen_url: str | None = None
    ) -> None:
        """Wrap an already opened pool; most code should call :meth:`open` instead."""
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
        prepare_threshold: int | None = 5,
        listen_url: str | None = None,
    ) -> PsycopgDriver:
        """Connect to ``url`` and fill the pool.

        The arguments are those of :func:`~graphile_worker.drivers.create_driver`, plus
        ``prepare_threshold``: runs of one statement on one connection before psycopg
        prepares it on the server (``0``: at once; ``None``: never;
        ``prepared_statements=False`` means never too).

        Raises:
            ConnectionLostError: the server cannot be reached or refused the connection.
        """
        conninfo = resolve_url(url)
        listen_conninfo = None if listen_url is None else normalize_url(listen_url)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=connection_kwargs(
                prepared_statements=prepared_statements, prepare_threshold=prepare_threshold
            ),
            configure=_remember_cancel_handle,
            reconnect_timeout=POOL_RECONNECT_TIMEOUT,
            open=False,
            name="graphile_worker",
        )
        try:
            # A direct first connection reports libpq's own reason ("connection refused")
            # instead of the pool's "initialization incomplete" after a 30 s timeout.
            probe = await psycopg.AsyncConnection.connect(conninfo)
            await probe.close()
            await pool.open(wait=True)
        except psycopg.Error as error:
            with anyio.CancelScope(shield=True):
                await pool.close()
            raise as_connection_error(translate_psycopg_error(error)) from error
        return cls(pool, conninfo, listen_url=listen_conninfo)

    # ------------------------------------------------------------------------ statements

    async def _checkout(self) -> AsyncConnection[Any]:
        """A live connection from the pool, within the pool's timeout.

        Connections the server closed while they sat idle are closed and handed back, which
        makes the pool open a replacement; the next one is tried at once. psycopg_pool's own
        ``check`` would instead sleep a second, then two, then four... between dead
        connections, and a pool whose every backend was terminated would take a minute to
        recover. While the pool fails to connect, one direct attempt reports why (see
        :func:`~graphile_worker.drivers._psycopg_common.failed_connects`).

        Raises:
            ConnectionLostError: no live connection within the pool's ``timeout``, or the
                server refused a new connection.
        """
        pool = self._pool
        deadline = time.monotonic() + pool.timeout
        failed = failed_connects(pool)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionLostError(
                    f"no database connection became available within {pool.timeout:g} s"
                )
            try:
                connection: AsyncConnection[Any] = await pool.getconn(
                    timeout=min(remaining, CHECKOUT_WAIT_SLICE)
                )
            except PoolTimeout:
                if failed_connects(pool) != failed:
                    await self._probe()
                    failed = failed_connects(pool)  # the server is back: wait for the pool
                continue
            except psycopg.Error as error:
                raise translate_psycopg_error(error) from error
            if not server_ended(connection):
                return connection
            logger.debug("dropping a pooled connection the server has closed")
            with anyio.CancelScope(shield=True):
                await connection.close()
                await pool.putconn(connection)  # a closed connection is replaced, not kept

    async def _probe(self) -> None:
        """Connect once outside the pool, to raise the server's reason for refusing."""
        try:
            probe = await psycopg.AsyncConnection.connect(
                self._url, connect_timeout=PROBE_CONNECT_TIMEOUT
            )
        except psycopg.Error as error:
            raise as_connection_error(translate_psycopg_error(error)) from error
        with anyio.CancelScope(shield=True):
            await probe.close()

    async def _call(self, operation: AsyncCall[T], sql: str, params: Params | None) -> T:
        connection = await self._checkout()
        try:
            return await _run(connection, operation, sql, params)
        finally:
            with anyio.CancelScope(shield=True):
                await self._pool.putconn(connection)

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement in autocommit mode; return the rows it affected (or -1)."""
        return await self._call(_execute, sql, params)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one statement in autocommit mode and return every row as a dict."""
        return await self._call(_fetch, sql, params)

    async def _fetch_values(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        """Every row as a tuple (see :func:`~graphile_worker.sql._statement.fetch_values`)."""
        return await self._call(_fetch_tuples, sql, params)

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        """Run one statement in autocommit mode and return its first row, or ``None``."""
        return await self._call(_fetchrow, sql, params)

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        """Run one statement and return the first column of its first row, or ``None``."""
        return await self._call(_fetchval, sql, params)

    async def execute_script(self, sql: str) -> None:
        """Run several ``;``-separated statements without parameters."""
        await self._call(_execute_script, sql, None)

    # ----------------------------------------------------------------------- transaction

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncExecutor]:
        """Hold one pooled connection inside ``BEGIN`` ... ``COMMIT`` (``ROLLBACK`` on error)."""
        connection = await self._checkout()
        executor = _ConnectionExecutor(connection)
        try:
            await executor.execute("BEGIN")
            try:
                yield executor
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _rollback_quietly(connection)
                raise
            try:
                cursor = await connection.execute(b"COMMIT")
            except psycopg.Error as error:
                raise translate_psycopg_error(error) from error
            check_commit_status(cursor.statusmessage)
        finally:
            executor.detach()
            with anyio.CancelScope(shield=True):
                await self._pool.putconn(connection)

    # ---------------------------------------------------------------------------- listen

    async def _open_listener(self, channels: Sequence[str]) -> ListenConnection:
        try:
            connection = await psycopg.AsyncConnection.connect(self._listen_url, autocommit=True)
        except psycopg.Error as error:
            raise as_connection_error(translate_psycopg_error(error)) from error
        try:
            await connection.execute(listen_statement(channels).encode("utf-8"))
        except BaseException as error:
            with anyio.CancelScope(shield=True):
                await connection.close()
            if isinstance(error, psycopg.Error):
                raise translate_psycopg_error(error) from error
            raise
        return _PsycopgListenConnection(connection)

    # ----------------------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Close the pool; connections still checked out are closed when they come back."""
        with anyio.CancelScope(shield=True):
            await self._pool.close()


async def _rollback_quietly(connection: AsyncConnection[Any]) -> None:
    """Roll back after an error; a connection that cannot is closed, so the pool drops it."""
    if not needs_rollback(connection):
        return
    try:
        await connection.execute(b"ROLLBACK")
    except psycopg.Error as error:
        logger.warning("rollback failed (%s); dropping the connection", error)
        await connection.close()


class _PsycopgListenConnection:
    """A listening autocommit ``AsyncConnection`` read with ``notifies()``."""

    __slots__ = ("_connection",)

    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self._connection = connection

    async def receive(self, timeout: float) -> Sequence[Notification]:  # noqa: ASYNC109
        # stop_after=1 still returns every notification of the packet that carried it.
        # aclosing() matters: notifies() holds the connection's lock until it is closed.
        try:
            async with aclosing(
                self._connection.notifies(timeout=timeout, stop_after=1)
            ) as notifies:
                found = [to_notification(notify) async for notify in notifies]
        except psycopg.Error as error:
            raise translate_psycopg_error(error) from error
        if not found and (self._connection.closed or self._connection.broken):
            raise ConnectionLostError("the LISTEN connection was closed")
        return found

    async def ping(self) -> None:
        try:
            await self._connection.execute(b"SELECT 1")
        except psycopg.Error as error:
            raise translate_psycopg_error(error) from error

    async def close(self) -> None:
        try:
            await self._connection.close()
        except psycopg.Error as error:  # pragma: no cover - close() rarely fails
            logger.debug("error closing the LISTEN connection: %s", error)
