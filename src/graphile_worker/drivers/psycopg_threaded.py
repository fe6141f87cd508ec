"""The driver that runs everywhere: sync psycopg in worker threads, for asyncio and trio.

asyncpg and psycopg's async API only run on asyncio, so trio users (and anyone without
asyncpg) get this driver. Every statement runs in ``anyio.to_thread.run_sync`` on a
connection from a sync :class:`psycopg_pool.ConnectionPool`. ``LISTEN`` needs no thread: the
listening connection's socket is watched with ``anyio.wait_readable`` and its notifications
are read with the non-blocking ``notifies(timeout=0)``.

Cancellation. A worker thread cannot be interrupted, so a cancelled caller stops waiting at
once (``abandon_on_cancel``) and then, shielded, asks the server to cancel the running query
and waits a few seconds for the thread to let go of the connection. The connection always
goes back to the pool (or is closed) by whichever side finishes last, so cancelling never
leaks a connection and never blocks shutdown for longer than :data:`CANCEL_GRACE_SECONDS`.

Dead connections. A connection is checked as it leaves the pool (:func:`_checkout`, no
round trip); one the server closed meanwhile is dropped and the next one tried, so killing
every pooled backend costs the next statement a fresh connect, not a failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import ConnectionLostError
from ._common import DriverBase, check_commit_status
from ._errors import as_connection_error
from ._listener import ListenConnection, listen_statement
from ._psycopg_common import (
    CHECKOUT_WAIT_SLICE,
    POOL_RECONNECT_TIMEOUT,
    PROBE_CONNECT_TIMEOUT,
    connection_kwargs,
    execute_script_sync,
    execute_sync,
    failed_connects,
    fetch_sync,
    fetch_tuples_sync,
    fetchrow_sync,
    fetchval_sync,
    needs_rollback,
    rollback_quietly,
    server_ended,
    to_notification,
    translate_psycopg_error,
    use_fast_json,
)
from ._url import normalize_url, resolve_url
from .base import AsyncExecutor, Notification, Params, Row

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg import Connection

__all__ = ["CANCEL_GRACE_SECONDS", "PsycopgThreadedDriver"]

logger: logging.Logger = logging.getLogger("graphile_worker.drivers")

T = TypeVar("T")
SyncCall = Callable[["Connection[Any]", str, "Params | None"], T]
"""A statement run in a worker thread: (connection, sql, params) -> result."""

CANCEL_GRACE_SECONDS = 5.0
"""How long a cancelled call waits for its worker thread to stop using the connection."""

_FINISHED = "this transaction has ended; its executor cannot be used after the async with block"


class _Guard:
    """Coordinates one worker-thread call with the task that may abandon it.

    The worker thread brackets its work with :meth:`enter` / :meth:`exit` and registers
    the connection it uses with :meth:`attach`. A cancelled task calls :meth:`interrupt`
    from another thread: it sends a server-side cancel for the attached connection and
    waits a little for the worker to finish. The lock makes sure a cancel request is only
    ever sent while the worker still owns the connection (never after it went back to the
    pool and to somebody else), and that a connection handed over with :meth:`hand_over`
    is cleaned up exactly once, by whichever side finishes last.
    """

    __slots__ = ("_after", "_busy", "_cancelled", "_connection", "_lock", "_undo")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = threading.Lock()
        self._connection: Connection[Any] | None = None
        self._cancelled = False
        self._after: Callable[[], None] | None = None
        self._undo: Callable[[], None] | None = None

    # ---------------------------------------------------------------- worker thread side

    def enter(self) -> None:
        self._busy.acquire()

    def attach(self, connection: Connection[Any]) -> bool:
        """Claim ``connection`` for this call; ``False`` if the caller already gave up."""
        with self._lock:
            if self._cancelled:
                return False
            self._connection = connection
            return True

    def publish(self, undo: Callable[[], None]) -> bool:
        """Hand a resource to the caller, or ``False`` if it is gone (then undo it yourself).

        Until the caller receives the result, a cancellation can still strike; ``undo``
        (return the connection, close it) is then run by :meth:`interrupt` instead.
        """
        with self._lock:
            if self._cancelled:
                return False
            self._undo = undo
            return True

    def exit(self) -> None:
        with self._lock:
            self._connection = None
            after, self._after = self._after, None
            self._busy.release()
        if after is not None:
            after()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    # ----------------------------------------------------------------- other thread side

    def interrupt(self, grace: float) -> None:
        """Stop the call: cancel its query on the server and wait up to ``grace`` seconds."""
        with self._lock:
            self._cancelled = True
            undo, self._undo = self._undo, None
            connection = self._connection
            if connection is not None:
                try:
                    connection.cancel_safe(timeout=grace)
                except psycopg.Error as error:
                    logger.warning("could not cancel a query after cancellation: %s", error)
        if undo is not None:
            undo()
        if connection is not None and self._busy.acquire(timeout=grace):
            self._busy.release()

    def hand_over(self, cleanup: Callable[[], None]) -> bool:
        """Leave ``cleanup`` to the worker if it is still running; ``False`` if it is not."""
        with self._lock:
            self._cancelled = True
            if self._busy.acquire(blocking=False):
                self._busy.release()
                return False
            self._after = cleanup
            return True


async def _interrupt(guard: _Guard, grace: float) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(guard.interrupt, grace)


def _run_on(
    guard: _Guard, connection: Connection[Any], operation: SyncCall[T], sql: str, params: Any
) -> T | None:
    """Worker-thread body for a statement on a connection the caller already holds."""
    guard.enter()
    try:
        if not guard.attach(connection):
            return None
        try:
            return operation(connection, sql, params)
        except psycopg.Error as error:
            raise translate_psycopg_error(error) from error
    finally:
        guard.exit()


class _BorrowedConnection:
    """A sync connection used from async code one statement at a time.

    It backs a transaction (released to the pool) and a listener (closed). Statements on it
    must not run concurrently; the transaction's user awaits them one after another.
    """

    __slots__ = ("_connection", "_grace", "_last", "_release")

    def __init__(
        self,
        connection: Connection[Any],
        release: Callable[[Connection[Any]], None],
        grace: float,
    ) -> None:
        self._connection: Connection[Any] | None = connection
        self._release = release
        self._grace = grace
        self._last: _Guard | None = None

    async def _call(self, operation: SyncCall[T], sql: str, params: Params | None) -> T:
        connection = self._connection
        if connection is None:
            raise RuntimeError(_FINISHED)
        self._last = guard = _Guard()
        try:
            result = await anyio.to_thread.run_sync(
                _run_on, guard, connection, operation, sql, params, abandon_on_cancel=True
            )
        except BaseException as error:
            if isinstance(error, anyio.get_cancelled_exc_class()):
                await _interrupt(guard, self._grace)
            raise
        return result  # type: ignore[return-value] # None only when abandoned

    async def execute(self, sql: str, params: Params | None = None) -> int:
        return await self._call(execute_sync, sql, params)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        return await self._call(fetch_sync, sql, params)

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        return await self._call(fetchrow_sync, sql, params)

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        return await self._call(fetchval_sync, sql, params)

    async def execute_script(self, sql: str) -> None:
        await self._call(execute_script_sync, sql, None)

    async def release(self, finish: Callable[[Connection[Any]], None] | None = None) -> None:
        """Run ``finish`` (COMMIT, ROLLBACK...) then release the connection; shielded.

        Errors from ``finish`` are raised after the connection has been released. If a
        cancelled statement still runs on the connection after the grace period, its
        worker thread releases the connection when it ends; ``finish`` is then skipped
        (an unfinished transaction is rolled back by the pool or dies with the connection).
        """
        connection, last = self._connection, self._last
        if connection is None:
            return
        self._connection, self._last = None, None
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._finish_and_release, connection, last, finish)

    def _finish_and_release(
        self,
        connection: Connection[Any],
        last: _Guard | None,
        finish: Callable[[Connection[Any]], None] | None,
    ) -> None:
        if (
            last is not None
            and last.cancelled
            and last.hand_over(partial(self._discard, connection))
        ):
            logger.warning("a cancelled query is still running; its connection will be dropped")
            return
        try:
            if finish is not None:
                try:
                    finish(connection)
                except psycopg.Error as error:
                    raise translate_psycopg_error(error) from error
        finally:
            self._release(connection)

    def _discard(self, connection: Connection[Any]) -> None:
        """Release a connection whose state is unknown after an abandoned query."""
        try:
            if needs_rollback(connection):
                connection.close()  # the pool drops closed connections on return
        finally:
            self._release(connection)


def _commit(connection: Connection[Any]) -> None:
    check_commit_status(connection.execute(b"COMMIT").statusmessage)


class _ThreadedListenConnection:
    """A listening autocommit connection watched with ``anyio.wait_readable``."""

    __slots__ = ("_borrowed", "_connection", "_encoding", "_fileno")

    def __init__(self, connection: Connection[Any], grace: float) -> None:
        self._connection = connection
        self._fileno = connection.fileno()
        self._encoding = connection.info.encoding
        self._borrowed = _BorrowedConnection(connection, _close_quietly, grace)

    def _collect(self) -> list[Notification]:
        """Read what is available without blocking (called on the event loop thread).

        ``notifies(timeout=0)`` returns what psycopg kept while other statements ran and
        what the socket holds now; ``pgconn.notifies()`` then parses anything libpq read
        into its buffer together with an earlier reply, which the socket no longer shows.
        """
        connection = self._connection
        try:
            found = [to_notification(notify) for notify in connection.notifies(timeout=0)]
            pgconn = connection.pgconn
            while (raw := pgconn.notifies()) is not None:
                found.append(
                    Notification(
                        raw.relname.decode(self._encoding), raw.extra.decode(self._encoding)
                    )
                )
        except psycopg.Error as error:
            raise translate_psycopg_error(error) from error
        if connection.broken or connection.closed:
            raise ConnectionLostError("the LISTEN connection was closed by the server")
        return found

    async def receive(self, timeout: float) -> Sequence[Notification]:  # noqa: ASYNC109
        found = self._collect()
        if found:
            return found
        with anyio.move_on_after(timeout):
            while True:
                await anyio.wait_readable(self._fileno)
                found = self._collect()
                if found:
                    return found
        return found

    async def ping(self) -> None:
        await self._borrowed.execute("select 1")

    async def close(self) -> None:
        await self._borrowed.release()


def _close_quietly(connection: Connection[Any]) -> None:
    try:
        connection.close()
    except psycopg.Error as error:  # pragma: no cover - close() rarely fails
        logger.debug("error closing a connection: %s", error)


def _checkout(pool: ConnectionPool[Any], conninfo: str, guard: _Guard) -> Connection[Any]:
    """A live connection from ``pool`` (worker-thread side), within the pool's timeout.

    Connections the server closed while they sat idle are closed and handed back, which
    makes the pool open a replacement; the next one is tried at once. psycopg_pool's own
    ``check`` would instead sleep a second, then two, then four... between dead connections,
    and a pool whose every backend was terminated would take a minute to recover. While
    the pool fails to connect, one direct attempt reports why (see :func:`failed_connects`).

    Raises:
        psycopg.Error: no live connection within the pool's ``timeout``
            (``PoolTimeout``), or the server refused a new connection.
    """
    deadline = time.monotonic() + pool.timeout
    failed = failed_connects(pool)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or guard.cancelled:
            raise PoolTimeout(f"no database connection became available within {pool.timeout:g} s")
        try:
            connection: Connection[Any] = pool.getconn(timeout=min(remaining, CHECKOUT_WAIT_SLICE))
        except PoolTimeout:
            if failed_connects(pool) != failed:
                _close_quietly(
                    psycopg.Connection.connect(conninfo, connect_timeout=PROBE_CONNECT_TIMEOUT)
                )
                failed = failed_connects(pool)  # the server is back: wait for the pool
            continue
        if not server_ended(connection):
            return connection
        logger.debug("dropping a pooled connection the server has closed")
        _close_quietly(connection)
        pool.putconn(connection)  # a closed connection is replaced, not kept


class PsycopgThreadedDriver(DriverBase):
    """A :class:`~graphile_worker.drivers.DatabaseDriver` over sync psycopg, for any runtime.

    Open it with :func:`graphile_worker.drivers.create_driver` (``driver="psycopg-threaded"``)
    or :meth:`open`; close it with :meth:`aclose` or ``async with``.
    """

    def __init__(
        self,
        pool: ConnectionPool[Any],
        url: str,
        *,
        cancel_grace: float = CANCEL_GRACE_SECONDS,
        listen_url: str | None = None,
    ) -> None:
        """Wrap an already opened pool; most code should call :meth:`open` instead."""
        self._pool = pool
        self._url = url
        self._grace = cancel_grace
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
        cancel_grace: float = CANCEL_GRACE_SECONDS,
        listen_url: str | None = None,
    ) -> PsycopgThreadedDriver:
        """Connect to ``url`` and fill the pool.

        The arguments are those of :func:`~graphile_worker.drivers.create_driver`, plus
        ``prepare_threshold`` (as for :meth:`PsycopgDriver.open
        <graphile_worker.drivers.psycopg.PsycopgDriver.open>`) and ``cancel_grace``, the
        seconds a cancelled call waits for its thread to stop.

        Raises:
            ConnectionLostError: the server cannot be reached or refused the connection.
        """
        conninfo = resolve_url(url)
        listen_conninfo = None if listen_url is None else normalize_url(listen_url)
        pool: ConnectionPool[Any] = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=connection_kwargs(
                prepared_statements=prepared_statements, prepare_threshold=prepare_threshold
            ),
            configure=use_fast_json,
            reconnect_timeout=POOL_RECONNECT_TIMEOUT,
            open=False,
            name="graphile_worker",
        )
        await anyio.to_thread.run_sync(_open_pool, pool, conninfo)
        return cls(pool, conninfo, cancel_grace=cancel_grace, listen_url=listen_conninfo)

    # ------------------------------------------------------------------------ statements

    def _run_pooled(self, guard: _Guard, operation: SyncCall[T], sql: str, params: Any) -> T | None:
        """Worker-thread body: borrow a connection, run one statement, give it back."""
        guard.enter()
        try:
            try:
                connection = _checkout(self._pool, self._url, guard)
            except psycopg.Error as error:
                raise as_connection_error(translate_psycopg_error(error)) from error
            try:
                if not guard.attach(connection):
                    return None
                return operation(connection, sql, params)
            except psycopg.Error as error:
                raise translate_psycopg_error(error) from error
            finally:
                self._pool.putconn(connection)
        finally:
            guard.exit()

    async def _call(self, operation: SyncCall[T], sql: str, params: Params | None) -> T:
        guard = _Guard()
        try:
            result = await anyio.to_thread.run_sync(
                self._run_pooled, guard, operation, sql, params, abandon_on_cancel=True
            )
        except BaseException as error:
            if isinstance(error, anyio.get_cancelled_exc_class()):
                await _interrupt(guard, self._grace)
            raise
        return result  # type: ignore[return-value] # None only when abandoned

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement in autocommit mode; return the rows it affected (or -1)."""
        return await self._call(execute_sync, sql, params)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one statement in autocommit mode and return every row as a dict."""
        return await self._call(fetch_sync, sql, params)

    async def _fetch_values(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        """Every row as a tuple (see :func:`~graphile_worker.sql._statement.fetch_values`)."""
        return await self._call(fetch_tuples_sync, sql, params)

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        """Run one statement in autocommit mode and return its first row, or ``None``."""
        return await self._call(fetchrow_sync, sql, params)

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        """Run one statement and return the first column of its first row, or ``None``."""
        return await self._call(fetchval_sync, sql, params)

    async def execute_script(self, sql: str) -> None:
        """Run several ``;``-separated statements without parameters."""
        await self._call(execute_script_sync, sql, None)

    # ----------------------------------------------------------------------- transaction

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncExecutor]:
        """Hold one pooled connection inside ``BEGIN`` ... ``COMMIT`` (``ROLLBACK`` on error)."""
        borrowed = await self._begin()
        try:
            yield borrowed
        except BaseException:
            await borrowed.release(rollback_quietly)
            raise
        await borrowed.release(_commit)

    async def _begin(self) -> _BorrowedConnection:
        """Check a connection out and send ``BEGIN``, in one worker-thread hop."""
        guard = _Guard()
        try:
            connection = await anyio.to_thread.run_sync(
                self._checkout_and_begin, guard, abandon_on_cancel=True
            )
        except BaseException as error:
            if isinstance(error, anyio.get_cancelled_exc_class()):
                await _interrupt(guard, self._grace)
            raise
        return _BorrowedConnection(connection, self._pool.putconn, self._grace)

    def _checkout_and_begin(self, guard: _Guard) -> Connection[Any]:
        guard.enter()
        try:
            try:
                connection = _checkout(self._pool, self._url, guard)
            except psycopg.Error as error:
                raise as_connection_error(translate_psycopg_error(error)) from error
            try:
                if not guard.attach(connection):
                    raise _Abandoned
                connection.execute(b"BEGIN")
                if not guard.publish(partial(self._return_unused, connection)):
                    raise _Abandoned
            except BaseException:
                self._return_unused(connection)
                raise
        except psycopg.Error as error:
            raise translate_psycopg_error(error) from error
        finally:
            guard.exit()
        return connection

    def _return_unused(self, connection: Connection[Any]) -> None:
        """Give back a connection checked out for a caller that was cancelled meanwhile."""
        rollback_quietly(connection)
        self._pool.putconn(connection)

    # ---------------------------------------------------------------------------- listen

    async def _open_listener(self, channels: Sequence[str]) -> ListenConnection:
        guard = _Guard()
        try:
            connection = await anyio.to_thread.run_sync(
                self._connect_and_listen, guard, listen_statement(channels), abandon_on_cancel=True
            )
        except BaseException as error:
            if isinstance(error, anyio.get_cancelled_exc_class()):
                await _interrupt(guard, self._grace)
            raise
        return _ThreadedListenConnection(connection, self._grace)

    def _connect_and_listen(self, guard: _Guard, statement: str) -> Connection[Any]:
        guard.enter()
        try:
            try:
                connection = psycopg.Connection.connect(self._listen_url, autocommit=True)
            except psycopg.Error as error:
                raise as_connection_error(translate_psycopg_error(error)) from error
            try:
                if not guard.attach(connection):
                    raise _Abandoned
                connection.execute(statement.encode("utf-8"))
                if not guard.publish(partial(_close_quietly, connection)):
                    raise _Abandoned
            except BaseException:
                connection.close()
                raise
        except psycopg.Error as error:
            raise translate_psycopg_error(error) from error
        finally:
            guard.exit()
        return connection

    # ----------------------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Close the pool; connections still checked out are closed when they come back."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._pool.close)


class _Abandoned(Exception):
    """Raised in a worker thread whose caller was cancelled; nobody sees it."""


def _open_pool(pool: ConnectionPool[Any], conninfo: str) -> None:
    """Connect once to report a bad URL or server clearly, then fill the pool.

    psycopg_pool retries failed connections in the background until its timeout and then
    reports only that the pool is incomplete; a direct first connection gives libpq's
    own message ("connection refused", "password authentication failed").
    """
    try:
        psycopg.Connection.connect(conninfo).close()
        pool.open(wait=True)
    except psycopg.Error as error:
        pool.close()
        raise as_connection_error(translate_psycopg_error(error)) from error
