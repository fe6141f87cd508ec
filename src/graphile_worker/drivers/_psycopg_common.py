"""Pieces shared by the psycopg drivers: error translation, statements and the sync executor.

The three psycopg users (:class:`PsycopgSyncExecutor` over a caller's connection, the
threaded driver and the asyncio driver) run the same few statements the same way; the
functions here hold that once, so each driver module only decides *where* a call runs (a
worker thread, the event loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import set_json_loads

from .._json import FAST_JSON
from .._json import loads as json_loads
from ..errors import (
    ConfigurationError,
    ConnectionLostError,
    GraphileWorkerError,
    QueryError,
    UniqueViolationError,
)
from ..sql import to_pyformat
from .base import Notification, Params, Row

if TYPE_CHECKING:
    from psycopg import AsyncConnection, Connection

__all__ = [
    "PsycopgSyncExecutor",
    "connection_kwargs",
    "translate_psycopg_error",
    "translate_psycopg_errors",
    "use_fast_json",
]

# SQLSTATEs meaning "this session is gone": class 08 (connection exception) and the
# class 57 codes that end a session. 57014 (query_canceled) is class 57 too, but the session
# survives it, so it stays a QueryError.
_CONNECTION_SQLSTATE_CLASS = "08"
_SESSION_ENDING_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05"})
_MISSING_PARAMETER = "query parameter missing: "

EMPTY_PARAMS: Params = {}
"""Passed when a call has no parameters, so that psycopg still turns ``%%`` back into ``%``."""


@contextmanager
def translate_psycopg_errors() -> Iterator[None]:
    """Re-raise psycopg's exceptions as graphile-worker's, keeping the original as cause."""
    try:
        yield
    except psycopg.Error as error:
        raise translate_psycopg_error(error) from error


def translate_psycopg_error(error: psycopg.Error) -> GraphileWorkerError:
    """Map one psycopg (or psycopg_pool) exception onto graphile-worker's tree."""
    sqlstate = error.sqlstate
    message = str(error).strip() or type(error).__name__
    if isinstance(error, psycopg.InterfaceError) or (
        isinstance(error, psycopg.OperationalError) and sqlstate is None
    ):
        # Raised by libpq or psycopg itself: the connection is closed, broken or could not
        # be opened (psycopg_pool's PoolTimeout and PoolClosed are OperationalErrors too).
        return ConnectionLostError(message, sqlstate=sqlstate)
    if sqlstate is not None and (
        sqlstate.startswith(_CONNECTION_SQLSTATE_CLASS) or sqlstate in _SESSION_ENDING_SQLSTATES
    ):
        return ConnectionLostError(message, sqlstate=sqlstate)
    if sqlstate == "23505":
        return UniqueViolationError(message, sqlstate=sqlstate)
    if sqlstate is None and message.startswith(_MISSING_PARAMETER):
        name = message[len(_MISSING_PARAMETER) :]
        return ConfigurationError(
            f"query parameter {name!r} is missing: the statement uses :{name} but the "
            f"params mapping has no such key"
        )
    return QueryError(message, sqlstate=sqlstate)


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
    """Decode this connection's json/jsonb columns with :func:`graphile_worker._json.loads`.

    Called as each pooled connection opens; psycopg's own loader is :func:`json.loads`,
    which :mod:`graphile_worker._json` matches value for value, faster when orjson is
    installed (nothing changes without it).
    """
    if FAST_JSON:
        set_json_loads(json_loads, connection)


def to_notification(notify: psycopg.Notify) -> Notification:
    """Our :class:`Notification` from psycopg's."""
    return Notification(notify.channel, notify.payload)


def rowcount(cursor: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> int:
    """Rows affected by the last statement, or -1 for statements that report none."""
    return cursor.rowcount if cursor.rowcount is not None else -1


def first_value(row: Row | None) -> Any:
    """The first column of ``row`` (``None`` for no row), for ``fetchval``."""
    return None if row is None else next(iter(row.values()), None)


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
        with translate_psycopg_errors():
            return execute_sync(self._connection, sql, params)

    def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        with translate_psycopg_errors():
            return fetch_sync(self._connection, sql, params)

    def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        with translate_psycopg_errors():
            return fetchrow_sync(self._connection, sql, params)

    def fetchval(self, sql: str, params: Params | None = None) -> Any:
        with translate_psycopg_errors():
            return fetchval_sync(self._connection, sql, params)

    def execute_script(self, sql: str) -> None:
        with translate_psycopg_errors():
            execute_script_sync(self._connection, sql, None)
