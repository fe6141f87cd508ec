"""Pieces shared by the psycopg drivers: error translation, statements and the sync executor.

The three psycopg users (:class:`PsycopgSyncExecutor` over a caller's connection, the
threaded driver and the asyncio driver) run the same few statements the same way; the
functions here hold that once, so each driver module only decides *where* a call runs (a
worker thread, the event loop). So does the check a pooled connection passes before it is
lent out (:func:`server_ended`), and the pool settings that go with it.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import set_json_loads

from .._json import decode_column
from ..errors import ConfigurationError, GraphileWorkerError
from ..sql import to_pyformat
from ._errors import ErrorMap, connection_lost, map_exceptions, sqlstate_error, translate
from .base import Notification, Params, Row

if TYPE_CHECKING:
    from psycopg import AsyncConnection, Connection
    from psycopg.errors import Diagnostic
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

__all__ = [
    "CHECKOUT_WAIT_SLICE",
    "EMPTY_PARAMS",
    "IDLE_OR_GONE",
    "POOL_RECONNECT_TIMEOUT",
    "PROBE_CONNECT_TIMEOUT",
    "PSYCOPG_ERRORS",
    "SESSION_ENDED_SEVERITIES",
    "PsycopgSyncExecutor",
    "connection_kwargs",
    "execute_script_sync",
    "execute_sync",
    "failed_connects",
    "fetch_sync",
    "fetch_tuples_sync",
    "fetchrow_sync",
    "fetchval_sync",
    "needs_rollback",
    "rollback_quietly",
    "rowcount",
    "server_ended",
    "to_notification",
    "translate_psycopg_error",
    "use_fast_json",
]

logger: logging.Logger = logging.getLogger("graphile_worker.drivers")

_MISSING_PARAMETER = "query parameter missing: "

EMPTY_PARAMS: Params = {}
"""Passed when a call has no parameters, so that psycopg still turns ``%%`` back into ``%``."""

IDLE_OR_GONE = (TransactionStatus.IDLE, TransactionStatus.UNKNOWN)
"""Transaction states in which a connection has no transaction to roll back."""


def _operational_error(error: psycopg.OperationalError) -> GraphileWorkerError:
    # Without a SQLSTATE, libpq or psycopg itself raised it: the connection is closed,
    # broken or could not be opened (psycopg_pool's PoolTimeout and PoolClosed too).
    return connection_lost(error) if error.sqlstate is None else sqlstate_error(error)


def _error(error: psycopg.Error) -> GraphileWorkerError:
    message = str(error).strip()
    if error.sqlstate is None and message.startswith(_MISSING_PARAMETER):
        name = message[len(_MISSING_PARAMETER) :]
        return ConfigurationError(
            f"query parameter {name!r} is missing: the statement uses :{name} but the "
            f"params mapping has no such key"
        )
    return sqlstate_error(error)


PSYCOPG_ERRORS: ErrorMap = {
    psycopg.InterfaceError: connection_lost,
    psycopg.OperationalError: _operational_error,
    psycopg.Error: _error,
}
"""How psycopg's (and psycopg_pool's) exceptions become ours."""


def translate_psycopg_error(error: psycopg.Error) -> GraphileWorkerError:
    """Map one psycopg (or psycopg_pool) exception onto graphile-worker's tree."""
    return translate(error, PSYCOPG_ERRORS) or sqlstate_error(error)


def needs_rollback(connection: Connection[Any] | AsyncConnection[Any]) -> bool:
    """Whether a connection going back to its pool after an error is inside a transaction.

    A closed connection is left for the pool to drop; one that is idle, or whose state
    libpq no longer knows, has nothing to roll back.
    """
    return not connection.closed and connection.pgconn.transaction_status not in IDLE_OR_GONE


# ------------------------------------------------------------------ pooled connection health

SESSION_ENDED_SEVERITIES = frozenset({"FATAL", "PANIC"})
"""Severities of a server message that ends the session (``pg_terminate_backend``, a
restart, ``idle_session_timeout``); sent between statements, libpq reports it as a notice."""

POOL_RECONNECT_TIMEOUT = 2.0
"""Seconds psycopg_pool keeps retrying, in the background, to replace a connection it lost.

Its retries back off from 1 s and double (up to five minutes by default), so after a long
outage the next attempt may be a minute or more away while callers wait. Giving up early
costs nothing: a caller who needs a connection makes the pool start a fresh attempt at
once, so connections come back as soon as the server accepts them, as asyncpg's do."""

CHECKOUT_WAIT_SLICE = 1.0
"""Longest single wait for a pooled connection; the pool's ``timeout`` is the total.

psycopg_pool starts a new connection attempt only when a caller starts waiting; waiting
in slices lets a caller who waited through an outage start one as soon as the background
attempts have given up (:data:`POOL_RECONNECT_TIMEOUT`), instead of at its own timeout."""

PROBE_CONNECT_TIMEOUT = 5
"""Seconds (libpq wants a whole number) a probe connection may take; see
:func:`failed_connects`."""


def failed_connects(pool: ConnectionPool[Any] | AsyncConnectionPool[Any]) -> int:
    """How many connection attempts ``pool`` has seen fail so far.

    A caller waiting for a connection while this number grows is not waiting for a busy
    connection to come back but for a server that refuses or cannot be reached: the
    drivers then connect once themselves, to fail with the server's own reason at once
    rather than after the pool's 30-second timeout (which, repeated for every statement,
    would also keep a stopping worker waiting for minutes during an outage).
    """
    return pool.get_stats().get("connections_errors", 0)


_watched: weakref.WeakSet[Any] = weakref.WeakSet()
_ended: weakref.WeakSet[Any] = weakref.WeakSet()


def _watch(connection: Connection[Any] | AsyncConnection[Any]) -> None:
    """Remember it when the server announces the end of this connection's session."""
    ref = weakref.ref(connection)  # the handler must not keep the connection alive

    def on_notice(diagnostic: Diagnostic) -> None:
        if diagnostic.severity_nonlocalized in SESSION_ENDED_SEVERITIES:
            ended = ref()
            if ended is not None:
                _ended.add(ended)

    connection.add_notice_handler(on_notice)
    _watched.add(connection)


def server_ended(connection: Connection[Any] | AsyncConnection[Any]) -> bool:
    """Whether a connection that sat idle in the pool is known to be dead, without a round trip.

    A server ending a session sends a FATAL message and closes the socket; neither is read
    until the connection is used, so a pool would lend out a corpse and the statement sent
    on it would fail. Reading what arrived (a non-blocking ``recv``) and letting libpq parse
    it notices either, for about a microsecond; psycopg_pool's own ``check_connection``
    costs a round trip (0.1 to 0.2 ms) per checkout. A session lost silently (a cable
    pulled, no FIN) is not noticed here; its statement fails and the caller retries.
    """
    if connection.closed:
        return True
    if connection not in _watched:
        _watch(connection)
    pgconn = connection.pgconn
    try:
        pgconn.consume_input()
        pgconn.is_busy()  # parses what arrived, so a FATAL message reaches on_notice
    except psycopg.OperationalError:
        return True
    return connection in _ended or pgconn.status != ConnStatus.OK


def rollback_quietly(connection: Connection[Any]) -> None:
    """Roll back after an error; a connection that cannot is closed, so the pool drops it."""
    if not needs_rollback(connection):
        return
    try:
        connection.execute(b"ROLLBACK")
    except psycopg.Error as error:
        logger.warning("rollback failed (%s); dropping the connection", error)
        connection.close()


def connection_kwargs(
    *, prepared_statements: bool, prepare_threshold: int | None
) -> dict[str, Any]:
    """Keyword arguments for every pooled psycopg connection a driver opens.

    Autocommit, because a call made directly on a driver is a transaction of its own and
    :meth:`transaction` sends ``BEGIN`` itself; dict rows, as the executor protocol promises;
    ``prepare_threshold=None`` disables server-side prepared statements, which PgBouncer in
    transaction mode cannot share between clients.
    """
    return {
        "autocommit": True,
        "row_factory": dict_row,
        "prepare_threshold": prepare_threshold if prepared_statements else None,
    }


def use_fast_json(connection: Connection[Any] | AsyncConnection[Any]) -> None:
    """Decode this connection's json/jsonb columns with :func:`graphile_worker._json.decode_column`.

    Called as each pooled connection opens. psycopg's own loader is :func:`json.loads`,
    which ours matches value for value, faster when orjson is installed; unlike it, ours
    never raises (a value it cannot decode becomes an ``UndecodableJson``), so one bad row
    cannot lose a whole claim.
    """
    set_json_loads(decode_column, connection)


def to_notification(notify: psycopg.Notify) -> Notification:
    """Our :class:`Notification` from psycopg's."""
    return Notification(notify.channel, notify.payload)


def rowcount(cursor: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> int:
    """Rows affected by the last statement, or -1 for statements that report none."""
    return cursor.rowcount if cursor.rowcount is not None else -1


# ------------------------------------------------------------ statements on a sync connection
# Used by PsycopgSyncExecutor and, inside worker threads, by the threaded driver.


def execute_sync(connection: Connection[Any], sql: str, params: Params | None) -> int:
    """Run one statement; return the rows it affected."""
    cursor = connection.execute(to_pyformat(sql), params or EMPTY_PARAMS)
    return rowcount(cursor)


def fetch_sync(connection: Connection[Any], sql: str, params: Params | None) -> list[Row]:
    """Run one statement; return every row as a dict."""
    cursor = connection.cursor(row_factory=dict_row)
    cursor.execute(to_pyformat(sql), params or EMPTY_PARAMS)
    return cast("list[Row]", cursor.fetchall())


def fetch_tuples_sync(
    connection: Connection[Any], sql: str, params: Params | None
) -> list[tuple[Any, ...]]:
    """Run one statement; return every row as a tuple (the claim's fast path)."""
    cursor = connection.cursor(row_factory=tuple_row)
    cursor.execute(to_pyformat(sql), params or EMPTY_PARAMS)
    return cursor.fetchall()


def fetchrow_sync(connection: Connection[Any], sql: str, params: Params | None) -> Row | None:
    """Run one statement; return its first row as a dict, or ``None``."""
    cursor = connection.cursor(row_factory=dict_row)
    cursor.execute(to_pyformat(sql), params or EMPTY_PARAMS)
    return cursor.fetchone()


def fetchval_sync(connection: Connection[Any], sql: str, params: Params | None) -> Any:
    """Run one statement; return the first column of its first row, or ``None``."""
    cursor = connection.cursor(row_factory=tuple_row)
    cursor.execute(to_pyformat(sql), params or EMPTY_PARAMS)
    row = cursor.fetchone()
    return None if row is None or not row else row[0]


def execute_script_sync(connection: Connection[Any], sql: str, params: Params | None) -> None:
    """Run several statements; ``params`` must be empty (it exists for a uniform signature).

    Without parameters psycopg uses the simple query protocol, which accepts several
    statements in one string; bytes keep psycopg from looking for placeholders at all.
    """
    connection.execute(sql.encode("utf-8"))


class PsycopgSyncExecutor:
    """A :class:`~graphile_worker.drivers.SyncExecutor` over a caller's psycopg connection.

    It never commits: statements join whatever transaction the connection is in, so the
    caller decides when work becomes visible. Rows are dicts whatever the connection's own
    row factory is.
    """

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection[Any]) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Params | None = None) -> int:
        with map_exceptions(PSYCOPG_ERRORS):
            return execute_sync(self._connection, sql, params)

    def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        with map_exceptions(PSYCOPG_ERRORS):
            return fetch_sync(self._connection, sql, params)

    def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        with map_exceptions(PSYCOPG_ERRORS):
            return fetchrow_sync(self._connection, sql, params)

    def fetchval(self, sql: str, params: Params | None = None) -> Any:
        with map_exceptions(PSYCOPG_ERRORS):
            return fetchval_sync(self._connection, sql, params)

    def execute_script(self, sql: str) -> None:
        with map_exceptions(PSYCOPG_ERRORS):
            execute_script_sync(self._connection, sql, None)
