"""A driver over an application's SQLAlchemy engine, so that a worker borrows from its pool.

An application that already has an ``Engine`` or ``AsyncEngine`` hands it to the worker
(``WorkerOptions(driver=engine)``) instead of letting the worker open a second pool. Each
statement and each transaction checks a connection out of the engine's pool and gives it back
at once, through the executors of :mod:`graphile_worker.drivers.sqlalchemy` (``text()``,
decoded json columns, our exceptions). At most ``max_connections`` are borrowed at the same
time, so a busy worker waits for its own turn instead of draining the pool the application's
requests need. The engine belongs to the application: it is never disposed.

``LISTEN`` needs a session that stays open, so :meth:`SQLAlchemyEngineDriver.listen` checks
one connection out of the engine for as long as its block lasts (a worker's whole run), puts
it in autocommit mode and reads notifications from the DBAPI connection underneath; when the
block ends the connection is invalidated rather than handed back with ``LISTEN`` state on it.
That is preferred to a connection of our own opened from ``engine.url``: the engine's pool
then bounds every connection the application and its worker hold together, and whatever the
engine does to connect (``connect_args``, a ``creator``, a ``do_connect`` hook handing out
cloud IAM tokens, TLS contexts, ``connect`` events that set a search path) applies to the
listener too, which a URL cannot carry. ``LISTEN`` works over psycopg 3 (sync and async, with
``graphile-worker[psycopg]`` installed) and asyncpg; over other DBAPIs (psycopg2, pg8000)
``listen()`` returns ``None`` and a worker polls.

Runtimes: an ``AsyncEngine`` runs on asyncio only, as SQLAlchemy's asyncio extension does; a
sync ``Engine`` runs every call in a worker thread (``anyio.to_thread``), on asyncio and trio.

Dead connections: a pooled connection whose server session ended while it sat idle (a
restart, ``pg_terminate_backend``) is noticed at checkout without a round trip (psycopg: what
the socket holds; asyncpg: the connection's own closed flag), invalidated and replaced, so the
statement runs on a live connection, as with the bundled drivers; ``pool_pre_ping=True`` on
the engine adds a round trip per checkout and also catches sessions lost silently.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import anyio
import anyio.to_thread
import sqlalchemy.exc
from sqlalchemy.engine import Engine

from ..errors import (
    ConfigurationError,
    ConnectionLostError,
    DriverUnavailableError,
    GraphileWorkerError,
)
from ._common import DriverBase, check_commit_status
from ._errors import ErrorMap, map_exceptions, query_error, sqlstate_of, translate
from ._listener import ListenConnection, NotificationStream, listen_statement
from .sqlalchemy import _ERRORS, SQLAlchemyAsyncExecutor, SQLAlchemySyncExecutor

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from .base import AsyncExecutor, Notification, Params, Row

__all__ = ["SQLAlchemyEngineDriver"]

logger: logging.Logger = logging.getLogger("graphile_worker.drivers")

T = TypeVar("T")

DEFAULT_MAX_CONNECTIONS: Final = 10
"""Connections borrowed at once by default: ``WorkerOptions.max_pool_size``'s default."""

CANCEL_GRACE_SECONDS: Final = 5.0
"""How long a cancelled call on a sync ``Engine`` waits for its thread to let go."""

_DEAD_CHECKOUTS: Final = 64
"""Dead pooled connections skipped before giving up; far more than any pool holds idle."""

_FINISHED = "this transaction has ended; its executor cannot be used after the async with block"


# ---------------------------------------------------------------------------------- errors


def _pool_exhausted(error: sqlalchemy.exc.TimeoutError) -> ConnectionLostError:
    return ConnectionLostError(
        f"no connection became free in the SQLAlchemy engine's pool ({error}); raise the "
        f"engine's pool_size or max_overflow, or lower the worker's max_pool_size so that "
        f"the worker and the application fit in the pool together"
    )


def _statement_error(error: sqlalchemy.exc.StatementError) -> GraphileWorkerError:
    """SQLAlchemy refused the statement before the DBAPI saw it (a missing bind parameter)."""
    if isinstance(error.orig, sqlalchemy.exc.InvalidRequestError) and "bind parameter" in str(
        error.orig
    ):
        return ConfigurationError(f"query parameter is missing: {error.orig}")
    return query_error(error)


_STATEMENT_ERRORS: ErrorMap = {**_ERRORS, sqlalchemy.exc.StatementError: _statement_error}


def _checkout_errors(url: str) -> ErrorMap:
    """How a failed checkout becomes ours: no connection exists, whatever the reason."""

    def refused(error: BaseException) -> ConnectionLostError | None:
        ours = translate(error, _ERRORS)
        if ours is None and not isinstance(error, OSError):
            return None
        detail = str(ours or error).strip() or type(error).__name__
        sqlstate = getattr(ours, "sqlstate", None) or sqlstate_of(error)
        return ConnectionLostError(
            f"could not connect through the SQLAlchemy engine for {url}: {detail}",
            sqlstate=sqlstate,
        )

    return {sqlalchemy.exc.TimeoutError: _pool_exhausted, Exception: refused}


# ------------------------------------------------------------------------- dead connections


def _session_ended(driver_connection: Any) -> bool:
    """Whether a pooled connection is known to be dead, without a round trip."""
    package = type(driver_connection).__module__.split(".")[0]
    if package == "psycopg":
        from ._psycopg_common import server_ended

        return server_ended(driver_connection)
    if package == "asyncpg":
        return bool(driver_connection.is_closed())
    return False


def _backend_pid(driver_connection: Any) -> int | None:
    """The server process of a DBAPI connection (asyncpg or psycopg), if it can tell."""
    get_server_pid = getattr(driver_connection, "get_server_pid", None)  # asyncpg
    if callable(get_server_pid):
        pid = get_server_pid()
    else:
        pid = getattr(getattr(driver_connection, "info", None), "backend_pid", None)  # psycopg
    return pid if isinstance(pid, int) else None


# ------------------------------------------------------------------- sync calls in threads


class _ThreadCall:
    """One blocking call in a worker thread, which its async caller may stop waiting for.

    The thread registers the DBAPI connection it is using (:meth:`attach`), so a cancelled
    caller can ask the server to cancel the statement (:meth:`abandon`); the lock ensures that
    cancel is only sent while the thread still uses the connection, never after it went back
    to the pool. Whatever the thread produced for a caller that has gone (a checked-out
    connection) is cleaned up exactly once, by whichever side comes last.
    """

    __slots__ = ("_abandoned", "_after", "_dbapi", "_done", "_lock", "_undo")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        self._dbapi: Any = None
        self._undo: Callable[[], None] | None = None
        self._after: Callable[[], None] | None = None

    # ------------------------------------------------------------------- thread side

    def run(self, body: Callable[[_ThreadCall], T]) -> T:
        try:
            return body(self)
        finally:
            with self._lock:
                self._dbapi = None
                self._done.set()
                after, self._after = self._after, None
            if after is not None:
                after()

    def attach(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._dbapi = dbapi_connection

    def detach(self) -> None:
        with self._lock:
            self._dbapi = None

    def publish(self, undo: Callable[[], None]) -> bool:
        """Hand a resource to the caller; ``False`` if it left (then undo it yourself)."""
        with self._lock:
            if self._abandoned:
                return False
            self._undo = undo
            return True

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    # ------------------------------------------------------------------- caller side

    def abandon(self, grace: float) -> None:
        """Cancel the running statement on the server and wait up to ``grace`` seconds."""
        with self._lock:
            self._abandoned = True
            undo, self._undo = self._undo, None
            dbapi = self._dbapi
            if dbapi is not None:
                _cancel_statement(dbapi, grace)
        if undo is not None:
            undo()
        self._done.wait(grace)

    def then(self, cleanup: Callable[[], None]) -> bool:
        """Leave ``cleanup`` to the thread if it still runs; ``False`` if it has finished."""
        with self._lock:
            if self._done.is_set():
                return False
            self._after = cleanup
            return True


def _cancel_statement(dbapi_connection: Any, grace: float) -> None:
    cancel_safe = getattr(dbapi_connection, "cancel_safe", None)  # psycopg 3.2+
    try:
        if cancel_safe is not None:
            cancel_safe(timeout=grace)
        elif callable(cancel := getattr(dbapi_connection, "cancel", None)):
            cancel()
    except Exception as error:  # noqa: BLE001 - a failed cancel only means we wait longer
        logger.warning("could not cancel a query after cancellation: %s", error)


async def _in_thread(body: Callable[[_ThreadCall], T], grace: float) -> T:
    """Run ``body`` in a worker thread; a cancelled caller cancels its statement first."""
    call = _ThreadCall()
    try:
        result = await anyio.to_thread.run_sync(call.run, body, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(call.abandon, grace)
        raise
    return result


def _close_quietly(connection: Connection) -> None:
    try:
        connection.close()
    except Exception as error:  # noqa: BLE001 - cleanup must not hide the caller's outcome
        logger.debug("error returning a connection to the engine's pool: %s", error)


def _invalidate_quietly(connection: Connection) -> None:
    try:
        connection.invalidate()
    except Exception as error:  # noqa: BLE001 - cleanup must not hide the caller's outcome
        logger.debug("error invalidating a connection: %s", error)
    _close_quietly(connection)


def _check_out_sync(engine: Engine, errors: ErrorMap, *, autocommit: bool) -> Connection:
    """A live connection from a sync engine's pool (worker-thread side)."""
    for _ in range(_DEAD_CHECKOUTS):
        with map_exceptions(errors):
            connection = engine.connect()
        try:
            ended = _session_ended(connection.connection.driver_connection)
        except BaseException:
            _close_quietly(connection)
            raise
        if not ended:
            if autocommit:
                connection.execution_options(isolation_level="AUTOCOMMIT")
            return connection
        logger.debug("dropping a pooled connection the server has closed")
        _invalidate_quietly(connection)
    raise ConnectionLostError("every connection the engine's pool handed out was dead")


class _Forwarding:
    """The executor methods, each a call of ``_call`` with its name: the driver and both
    kinds of transaction differ only in how a call reaches a connection."""

    __slots__ = ()

    async def _call(self, method: str, *args: Any) -> Any:
        raise NotImplementedError

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; return the rows it affected (or -1)."""
        result: int = await self._call("execute", sql, params)
        return result

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one statement and return every row."""
        rows: list[Row] = await self._call("fetch", sql, params)
        return rows

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        """Run one statement and return its first row, or ``None``."""
        row: Row | None = await self._call("fetchrow", sql, params)
        return row

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        """Run one statement and return the first column of its first row, or ``None``."""
        return await self._call("fetchval", sql, params)

    async def execute_script(self, sql: str) -> None:
        """Run several ``;``-separated statements without parameters."""
        await self._call("execute_script", sql)


class _SyncTransaction(_Forwarding):
    """A transaction on one connection of a sync engine, one statement per thread hop."""

    __slots__ = ("_connection", "_failed", "_grace", "_last")

    def __init__(self, connection: Connection, grace: float) -> None:
        self._connection: Connection | None = connection
        self._grace = grace
        self._last: _ThreadCall | None = None
        self._failed = False

    async def _call(self, method: str, *args: Any) -> Any:
        connection = self._connection
        if connection is None:
            raise RuntimeError(_FINISHED)

        def body(call: _ThreadCall) -> Any:
            call.attach(connection.connection.driver_connection)
            with map_exceptions(_STATEMENT_ERRORS):
                return getattr(SQLAlchemySyncExecutor(connection), method)(*args)

        call = _ThreadCall()
        self._last = call
        try:
            return await anyio.to_thread.run_sync(call.run, body, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(call.abandon, self._grace)
            raise
        except Exception:
            self._failed = True
            raise

    async def finish(self, *, commit: bool) -> None:
        """Commit (or roll back) and return the connection; shielded, always returns it."""
        connection, last = self._connection, self._last
        if connection is None:
            return
        self._connection = None
        failed = self._failed

        def settle() -> None:
            try:
                if commit and not failed:
                    with map_exceptions(_STATEMENT_ERRORS):
                        connection.commit()
                else:
                    connection.rollback()
            finally:
                _close_quietly(connection)

        def discard() -> None:
            logger.warning("a cancelled query is still running; its connection will be dropped")
            _invalidate_quietly(connection)

        with anyio.CancelScope(shield=True):
            if last is not None and last.abandoned and last.then(discard):
                return
            await anyio.to_thread.run_sync(settle)
        if commit and failed:
            check_commit_status("ROLLBACK")


# ------------------------------------------------------------------------ async engines


async def _close_async_quietly(connection: AsyncConnection) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await connection.close()
        except Exception as error:  # noqa: BLE001 - cleanup must not hide the caller's outcome
            logger.debug("error returning a connection to the engine's pool: %s", error)


async def _invalidate_async_quietly(connection: AsyncConnection) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await connection.invalidate()
        except Exception as error:  # noqa: BLE001 - cleanup must not hide the caller's outcome
            logger.debug("error invalidating a connection: %s", error)
        await _close_async_quietly(connection)


class _AsyncTransaction(_Forwarding):
    """The executor of a transaction on an ``AsyncConnection``; remembers failed statements.

    PostgreSQL answers ``COMMIT`` after a failed statement with ``ROLLBACK`` and no error,
    which not every DBAPI reports; a failure seen here makes the commit raise instead.
    """

    __slots__ = ("_executor", "failed", "finished", "interrupted")

    def __init__(self, connection: AsyncConnection) -> None:
        self._executor = SQLAlchemyAsyncExecutor(connection)
        self.failed = False
        self.finished = False
        self.interrupted = False

    async def _call(self, method: str, *args: Any) -> Any:
        if self.finished:
            raise RuntimeError(_FINISHED)
        try:
            with map_exceptions(_STATEMENT_ERRORS):
                return await getattr(self._executor, method)(*args)
        except anyio.get_cancelled_exc_class():
            self.interrupted = True
            raise
        except Exception:
            self.failed = True
            raise


# ------------------------------------------------------------------------------- LISTEN


class _EngineListenConnection:
    """A listening connection borrowed from the engine; invalidated, not returned, at close."""

    __slots__ = ("_inner", "_release")

    def __init__(self, inner: ListenConnection, release: Callable[[], Any]) -> None:
        self._inner = inner
        self._release = release

    async def receive(self, timeout: float) -> Sequence[Notification]:  # noqa: ASYNC109
        return await self._inner.receive(timeout)

    async def ping(self) -> None:
        await self._inner.ping()

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._inner.close()
            finally:
                await self._release()


def _listener_support(engine: Engine | AsyncEngine) -> str | None:
    """Why ``engine`` cannot carry ``LISTEN`` here, or ``None`` when it can."""
    dbapi = engine.dialect.driver
    if dbapi == "asyncpg":
        return None
    if dbapi == "psycopg":
        if importlib.util.find_spec("psycopg_pool") is None:
            return "pip install 'graphile-worker[psycopg]' to LISTEN over a psycopg engine"
        return None
    return (
        f"LISTEN is supported over the psycopg and asyncpg dialects, not {dbapi!r}; use "
        f"postgresql+psycopg:// (or postgresql+asyncpg:// with an AsyncEngine)"
    )


async def _listen_async(connection: AsyncConnection, channels: Sequence[str]) -> ListenConnection:
    """LISTEN on the DBAPI connection under ``connection`` (asyncpg or async psycopg)."""
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    if type(driver).__module__.split(".")[0] == "asyncpg":
        from .asyncpg import _ERRORS as ASYNCPG_ERRORS
        from .asyncpg import _AsyncpgListenConnection

        listener = _AsyncpgListenConnection()
        driver.add_termination_listener(listener.on_termination)
        with map_exceptions(ASYNCPG_ERRORS):
            for channel in channels:  # one LISTEN round trip per channel
                await driver.add_listener(channel, listener.on_notification)
        listener.connection = driver
        return listener
    import psycopg

    from ._psycopg_common import needs_rollback, translate_psycopg_error
    from .psycopg import _PsycopgListenConnection

    try:
        if needs_rollback(driver):
            await driver.rollback()
        await driver.set_autocommit(True)
        await driver.execute(listen_statement(channels).encode("utf-8"))
    except psycopg.Error as error:
        raise translate_psycopg_error(error) from error
    return _PsycopgListenConnection(driver)


def _listen_sync(connection: Connection, channels: Sequence[str]) -> Any:
    """LISTEN on the psycopg connection under a sync ``connection`` (worker-thread side)."""
    import psycopg

    from ._psycopg_common import needs_rollback, translate_psycopg_error

    driver: Any = connection.connection.driver_connection
    try:
        if needs_rollback(driver):
            driver.rollback()
        driver.autocommit = True
        driver.execute(listen_statement(channels).encode("utf-8"))
    except psycopg.Error as error:
        raise translate_psycopg_error(error) from error
    return driver


# ------------------------------------------------------------------------------- driver


@final
class SQLAlchemyEngineDriver(_Forwarding, DriverBase):
    """A :class:`~graphile_worker.drivers.DatabaseDriver` that borrows from an application's engine.

    Pass it, or the engine itself, as ``WorkerOptions(driver=...)`` or to ``WorkerUtils``.
    Statements run in autocommit mode, each on a connection checked out for it alone;
    :meth:`transaction` holds one connection until the block ends. Nothing here opens a
    connection of its own or disposes the engine; :meth:`aclose` does nothing, so one
    driver serves any number of worker runs.

    Connections borrowed at once: at most ``max_connections`` for statements and
    transactions, plus one for each open :meth:`listen` block (one per running worker).
    Size the engine's ``pool_size + max_overflow`` for the application's own peak plus that.

    Args:
        engine: A PostgreSQL ``Engine`` (any runtime: calls run in worker threads) or
            ``AsyncEngine`` (asyncio only).
        max_connections: Most connections borrowed at the same time (``LISTEN`` aside);
            further calls wait for one of them. ``None``: only the engine's pool limits them.
        cancel_grace: Seconds a cancelled call on a sync ``Engine`` waits for its thread,
            after asking the server to cancel the statement, before leaving the connection
            to the thread (which returns it when the statement ends).

    Raises:
        ConfigurationError: not an engine, not PostgreSQL, or a bad ``max_connections``.
    """

    __module__ = "graphile_worker.drivers"
    __slots__ = ("_checkout_errors", "_engine", "_grace", "_is_async", "_slots", "_sync_engine")

    def __init__(
        self,
        engine: Engine | AsyncEngine,
        *,
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
        cancel_grace: float = CANCEL_GRACE_SECONDS,
    ) -> None:
        if isinstance(engine, Engine):
            self._is_async = False
        elif _is_async_engine(engine):
            self._is_async = True
        else:
            raise ConfigurationError(
                f"SQLAlchemyEngineDriver takes a SQLAlchemy Engine or AsyncEngine, not "
                f"{engine!r:.80}"
            )
        if engine.dialect.name != "postgresql":
            raise ConfigurationError(
                f"graphile-worker needs a PostgreSQL engine, not one for "
                f"{engine.dialect.name!r} ({engine.url!r})"
            )
        if max_connections is not None and (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ConfigurationError(
                f"max_connections must be None or an int of at least 1, not {max_connections!r}"
            )
        self._engine = engine
        self._sync_engine: Engine = engine if isinstance(engine, Engine) else engine.sync_engine
        self._grace = cancel_grace
        self._slots = None if max_connections is None else anyio.Semaphore(max_connections)
        self._checkout_errors = _checkout_errors(engine.url.render_as_string(hide_password=True))

    @property
    def engine(self) -> Engine | AsyncEngine:
        """The application's engine, as given."""
        return self._engine

    def __repr__(self) -> str:
        return f"<SQLAlchemyEngineDriver {self._engine.url!r}>"

    def _slot(self) -> AbstractAsyncContextManager[Any]:
        return nullcontext() if self._slots is None else self._slots

    def _require_runtime(self) -> None:
        if not self._is_async:
            return
        import sniffio

        try:
            runtime = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            runtime = "no event loop"
        if runtime != "asyncio":
            raise DriverUnavailableError(
                f"a SQLAlchemy AsyncEngine runs on asyncio only (SQLAlchemy's asyncio "
                f"extension), but this code runs on {runtime}; pass a sync Engine "
                f"(sqlalchemy.create_engine('postgresql+psycopg://...')), whose calls run in "
                f"worker threads on any runtime"
            )

    # ---------------------------------------------------------------------------- checkout

    async def _check_out(self, *, autocommit: bool) -> tuple[AsyncConnection, int | None]:
        """A live connection from an async engine's pool, and its server process id."""
        engine: Any = self._engine
        for _ in range(_DEAD_CHECKOUTS):
            with map_exceptions(self._checkout_errors):
                connection: AsyncConnection = await engine.connect()
            try:
                raw = await connection.get_raw_connection()
                ended = _session_ended(raw.driver_connection)
                pid = _backend_pid(raw.driver_connection)
                if not ended and autocommit:
                    await connection.execution_options(isolation_level="AUTOCOMMIT")
            except BaseException:
                await _close_async_quietly(connection)
                raise
            if not ended:
                return connection, pid
            logger.debug("dropping a pooled connection the server has closed")
            await _invalidate_async_quietly(connection)
        raise ConnectionLostError("every connection the engine's pool handed out was dead")

    async def _discard(self, connection: AsyncConnection, pid: int | None) -> None:
        """Drop a connection whose statement was cancelled, ending its server session too.

        SQLAlchemy invalidates a connection whose statement was interrupted, closing it on
        the client side only: the server does not notice until the statement ends, so a
        cancelled ``pg_sleep(30)`` (or a long claim) would run to its end on a session
        nobody reads. Its backend is terminated over another connection instead, without
        taking a ``max_connections`` slot (the caller still holds one). Shielded; never raises.
        """
        with anyio.CancelScope(shield=True):
            await _invalidate_async_quietly(connection)
            if pid is None:
                return
            try:
                other, _ = await self._check_out(autocommit=True)
            except Exception as error:  # noqa: BLE001 - the server ends it when it can
                logger.debug("could not stop a cancelled statement's session: %s", error)
                return
            try:
                await SQLAlchemyAsyncExecutor(other).execute(
                    "select pg_terminate_backend(:pid)", {"pid": pid}
                )
            except Exception as error:  # noqa: BLE001 - the server ends it when it can
                logger.debug("could not stop a cancelled statement's session: %s", error)
            finally:
                await _close_async_quietly(other)

    # -------------------------------------------------------------------------- statements

    async def _call(self, method: str, *args: Any) -> Any:
        self._require_runtime()
        async with self._slot():
            if self._is_async:
                connection, pid = await self._check_out(autocommit=True)
                try:
                    with map_exceptions(_STATEMENT_ERRORS):
                        return await getattr(SQLAlchemyAsyncExecutor(connection), method)(*args)
                except anyio.get_cancelled_exc_class():
                    await self._discard(connection, pid)
                    raise
                finally:
                    await _close_async_quietly(connection)
            return await _in_thread(
                lambda call: self._call_in_thread(call, method, args), self._grace
            )

    def _call_in_thread(self, call: _ThreadCall, method: str, args: tuple[Any, ...]) -> Any:
        connection = _check_out_sync(self._sync_engine, self._checkout_errors, autocommit=True)
        try:
            if call.abandoned:
                return None
            call.attach(connection.connection.driver_connection)
            with map_exceptions(_STATEMENT_ERRORS):
                return getattr(SQLAlchemySyncExecutor(connection), method)(*args)
        finally:
            call.detach()
            _close_quietly(connection)

    # ------------------------------------------------------------------------- transaction

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncExecutor]:
        """Hold one borrowed connection inside a transaction: commit on exit, roll back on error."""
        self._require_runtime()
        async with self._slot():
            if self._is_async:
                async with self._async_transaction() as executor:
                    yield executor
            else:
                async with self._sync_transaction() as executor:
                    yield executor

    @asynccontextmanager
    async def _async_transaction(self) -> AsyncIterator[AsyncExecutor]:
        connection, pid = await self._check_out(autocommit=False)
        executor = _AsyncTransaction(connection)
        try:
            try:
                yield executor
            except BaseException:
                executor.finished = True
                if executor.interrupted:
                    await self._discard(connection, pid)
                    raise
                with anyio.CancelScope(shield=True):
                    try:
                        await connection.rollback()
                    except Exception as error:  # noqa: BLE001 - the caller's error wins
                        logger.debug("rollback failed (%s); invalidating", error)
                        await _invalidate_async_quietly(connection)
                raise
            executor.finished = True
            with anyio.CancelScope(shield=True):
                if executor.failed:
                    await connection.rollback()
                    check_commit_status("ROLLBACK")
                with map_exceptions(_STATEMENT_ERRORS):
                    await connection.commit()
        finally:
            await _close_async_quietly(connection)

    @asynccontextmanager
    async def _sync_transaction(self) -> AsyncIterator[AsyncExecutor]:
        engine, errors = self._sync_engine, self._checkout_errors

        def check_out(call: _ThreadCall) -> Connection | None:
            connection = _check_out_sync(engine, errors, autocommit=False)
            if not call.publish(lambda: _close_quietly(connection)):
                _close_quietly(connection)
                return None
            return connection

        connection = await _in_thread(check_out, self._grace)
        assert connection is not None  # None only for a caller that was cancelled
        transaction = _SyncTransaction(connection, self._grace)
        try:
            yield transaction
        except BaseException:
            await transaction.finish(commit=False)
            raise
        await transaction.finish(commit=True)

    # ------------------------------------------------------------------------------ listen

    def listen(self, *channels: str) -> NotificationStream | None:  # type: ignore[override]
        """Listen on ``channels`` from one connection checked out of the engine.

        ``None`` when the engine's DBAPI cannot carry ``LISTEN`` here (a worker then polls;
        the reason is logged). See the module docstring for why the connection comes from
        the engine's pool rather than from a URL.
        """
        reason = _listener_support(self._engine)
        if reason is not None:
            logger.warning("cannot LISTEN through this SQLAlchemy engine: %s", reason)
            return None
        return super().listen(*channels)

    async def _open_listener(self, channels: Sequence[str]) -> ListenConnection:
        self._require_runtime()
        if self._is_async:
            connection, _ = await self._check_out(autocommit=False)
            try:
                inner = await _listen_async(connection, channels)
            except BaseException:
                await _invalidate_async_quietly(connection)
                raise
            return _EngineListenConnection(inner, lambda: _invalidate_async_quietly(connection))
        return await self._open_sync_listener(channels)

    async def _open_sync_listener(self, channels: Sequence[str]) -> ListenConnection:
        from .psycopg_threaded import _ThreadedListenConnection

        engine, errors = self._sync_engine, self._checkout_errors

        def check_out_and_listen(call: _ThreadCall) -> tuple[Connection, Any] | None:
            connection = _check_out_sync(engine, errors, autocommit=False)
            try:
                call.attach(connection.connection.driver_connection)
                driver = _listen_sync(connection, channels)
            except BaseException:
                _invalidate_quietly(connection)
                raise
            if not call.publish(lambda: _invalidate_quietly(connection)):
                _invalidate_quietly(connection)
                return None
            return connection, driver

        opened = await _in_thread(check_out_and_listen, self._grace)
        assert opened is not None  # None only for a caller that was cancelled
        connection, driver = opened
        inner = _ThreadedListenConnection(driver, self._grace)

        async def release() -> None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_invalidate_quietly, connection)

        return _EngineListenConnection(inner, release)

    # ------------------------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Nothing to close: the engine and its pool belong to the application."""


def _is_async_engine(value: object) -> bool:
    """Whether ``value`` is a SQLAlchemy ``AsyncEngine``, without importing the extension.

    The asyncio extension needs greenlet; when it was never imported, nothing can be one.
    """
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    cls = getattr(module, "AsyncEngine", None) if module is not None else None
    return isinstance(cls, type) and isinstance(value, cls)
