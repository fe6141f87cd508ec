"""Executors over a caller's SQLAlchemy connection or session, for work inside their transaction.

:class:`SQLAlchemySyncExecutor` wraps a ``Connection`` or ``Session``;
:class:`SQLAlchemyAsyncExecutor` wraps an ``AsyncConnection`` or ``AsyncSession``. Both run
our ``:name`` SQL through ``text()`` on the connection bound to the caller's current
transaction (``session.connection()``), so a job added through them commits or rolls back
with the caller's own work, and no second connection is ever opened. They never commit,
roll back or close anything.

Rows come back as mappings with ``json``/``jsonb`` columns decoded, whatever the dialect:
the psycopg dialects always decode them, while asyncpg decodes them only when SQLAlchemy
installs its codecs (it does in 2.1). Each dialect is asked once, with a tiny probe query,
whether it hands back decoded values, and the columns are decoded here when it does not.
SQLAlchemy's exceptions are translated into :mod:`graphile_worker.errors`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.orm import Session

from .._json import decode_column
from ..errors import DatabaseError, QueryError
from ._errors import ErrorMap, connection_lost, map_exceptions, sqlstate_error, sqlstate_of
from .base import Params, Row

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, CursorResult, Dialect
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.sql.elements import TextClause

__all__ = ["SQLAlchemyAsyncExecutor", "SQLAlchemySyncExecutor"]

_JSON_TYPE_OIDS = frozenset({114, 3802})  # json, jsonb
_PROBE = "select CAST('\"probe\"' AS json) as value"
_BEGIN = "select 1"

# Whether a dialect instance returns json columns of text() queries already decoded.
_dialect_decodes_json: weakref.WeakKeyDictionary[Dialect, bool] = weakref.WeakKeyDictionary()


@lru_cache(maxsize=512)
def _text(sql: str) -> TextClause:
    return sqlalchemy.text(sql)


# -------------------------------------------------------------------------------- errors


def _wrapped_error(error: sqlalchemy.exc.DBAPIError) -> DatabaseError:
    """Our exception for SQLAlchemy's wrapper around a driver exception (``orig``)."""
    orig = error.orig if error.orig is not None else error
    if (
        error.connection_invalidated
        or isinstance(error, sqlalchemy.exc.InterfaceError)
        or (isinstance(error, sqlalchemy.exc.OperationalError) and sqlstate_of(orig) is None)
    ):
        return connection_lost(orig)
    return sqlstate_error(orig)


def _raw_driver_error(error: BaseException) -> DatabaseError | None:
    """Our exception for one the driver raised itself (scripts bypass SQLAlchemy), else None."""
    if type(error).__module__.split(".")[0] not in _DRIVER_PACKAGES:
        return None
    name = type(error).__name__
    if sqlstate_of(error) is None and any(word in name for word in _CONNECTION_CLASS_WORDS):
        return connection_lost(error)
    return sqlstate_error(error)


_DRIVER_PACKAGES = frozenset({"asyncpg", "psycopg", "psycopg2"})
# Without a SQLSTATE, a driver's InterfaceError, OperationalError or ConnectionError (in
# any driver's naming) came from the client library: the connection is gone.
_CONNECTION_CLASS_WORDS = ("Interface", "Operational", "Connection")

_ERRORS: ErrorMap = {
    sqlalchemy.exc.DBAPIError: _wrapped_error,
    Exception: _raw_driver_error,
}


# ------------------------------------------------------------------------------- decoding


def _json_columns(result: CursorResult[Any]) -> list[str]:
    cursor = result.cursor
    description: Sequence[Sequence[Any]] | None = cursor.description if cursor is not None else None
    if not description:
        return []
    return [str(column[0]) for column in description if column[1] in _JSON_TYPE_OIDS]


def _rows(result: CursorResult[Any], decode_json: bool) -> list[Row]:
    """Every row as a mapping, decoding json columns the dialect left as text."""
    columns = _json_columns(result) if decode_json else []
    # RowMapping is keyed by str for text() results; SQLAlchemy types it more loosely.
    mappings = cast("Sequence[Row]", result.mappings().all())
    if not columns:
        return list(mappings)
    decoded: list[Row] = []
    for mapping in mappings:
        row = dict(mapping)
        for column in columns:
            value = row.get(column)
            if isinstance(value, (str, bytes)):
                row[column] = decode_column(value)
        decoded.append(row)
    return decoded


def _record_probe(dialect: Dialect, value: Any) -> bool:
    decodes = value == "probe"
    _dialect_decodes_json[dialect] = decodes
    return not decodes


# ------------------------------------------------------------------------------ executors


class SQLAlchemySyncExecutor:
    """A :class:`~graphile_worker.drivers.SyncExecutor` over a caller's ``Connection``/``Session``.

    Statements join the caller's transaction (beginning one as SQLAlchemy always does);
    committing is the caller's business.
    """

    def __init__(self, bind: Connection | Session) -> None:
        self._bind = bind

    def _connection(self) -> Connection:
        if isinstance(self._bind, Session):
            return self._bind.connection()
        return self._bind

    def _needs_json_decoding(self, connection: Connection) -> bool:
        dialect = connection.dialect
        decodes = _dialect_decodes_json.get(dialect)
        if decodes is not None:
            return not decodes
        return _record_probe(dialect, connection.execute(_text(_PROBE)).scalar())

    def _run(self, sql: str, params: Params | None) -> tuple[CursorResult[Any], bool]:
        connection = self._connection()
        decode = self._needs_json_decoding(connection)
        return connection.execute(_text(sql), dict(params or {})), decode

    def execute(self, sql: str, params: Params | None = None) -> int:
        with map_exceptions(_ERRORS):
            result, _ = self._run(sql, params)
            return result.rowcount

    def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        with map_exceptions(_ERRORS):
            result, decode = self._run(sql, params)
            return _rows(result, decode)

    def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        rows = self.fetch(sql, params)
        return rows[0] if rows else None

    def fetchval(self, sql: str, params: Params | None = None) -> Any:
        row = self.fetchrow(sql, params)
        return None if row is None else next(iter(row.values()), None)

    def execute_script(self, sql: str) -> None:
        with map_exceptions(_ERRORS):
            connection = self._connection()
            # Make SQLAlchemy begin its transaction first, so the script (sent on the DBAPI
            # connection, bypassing the bind-parameter parser) lands inside it.
            connection.execute(_text(_BEGIN))
            driver: Any = connection.connection.driver_connection
            if type(driver).__module__.split(".")[0] == "asyncpg":
                # A sync facade over the asyncpg dialect (Alembic's async env runs migrations
                # through run_sync): its cursor prepares statements, which refuses a script
                # of several commands, so send the script on the asyncpg connection itself
                # from the greenlet SQLAlchemy runs us in.
                from sqlalchemy.util import await_only

                await_only(driver.execute(sql))
                return
            cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                # No parameters: psycopg and psycopg2 then send the text as it is, which
                # allows several statements and literal '%' signs.
                cursor.execute(sql)
            finally:
                cursor.close()


class SQLAlchemyAsyncExecutor:
    """An :class:`~graphile_worker.drivers.AsyncExecutor` over an ``AsyncConnection``/``AsyncSession``.

    asyncio only, as SQLAlchemy's asyncio extension is. Never commits.
    """

    def __init__(self, bind: AsyncConnection | AsyncSession) -> None:
        self._bind = bind

    async def _connection(self) -> AsyncConnection:
        # AsyncSession has .sync_session and AsyncConnection .sync_connection; telling them
        # apart this way avoids importing the asyncio extension (it needs greenlet).
        if hasattr(self._bind, "sync_session"):
            return await self._bind.connection()
        return self._bind

    async def _needs_json_decoding(self, connection: AsyncConnection) -> bool:
        dialect = connection.dialect
        decodes = _dialect_decodes_json.get(dialect)
        if decodes is not None:
            return not decodes
        return _record_probe(dialect, (await connection.execute(_text(_PROBE))).scalar())

    async def _run(self, sql: str, params: Params | None) -> tuple[CursorResult[Any], bool]:
        connection = await self._connection()
        decode = await self._needs_json_decoding(connection)
        return await connection.execute(_text(sql), dict(params or {})), decode

    async def execute(self, sql: str, params: Params | None = None) -> int:
        with map_exceptions(_ERRORS):
            result, _ = await self._run(sql, params)
            return result.rowcount

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        with map_exceptions(_ERRORS):
            result, decode = await self._run(sql, params)
            return _rows(result, decode)

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        row = await self.fetchrow(sql, params)
        return None if row is None else next(iter(row.values()), None)

    async def execute_script(self, sql: str) -> None:
        with map_exceptions(_ERRORS):
            connection = await self._connection()
            # Begin SQLAlchemy's transaction on the driver connection first (see the sync
            # executor), then send the script on the driver connection itself: the asyncpg
            # dialect prepares every statement, which refuses several commands at once.
            await connection.execute(_text(_BEGIN))
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            module = type(driver).__module__.split(".")[0]
            if module == "asyncpg":
                await driver.execute(sql)
            elif module == "psycopg":
                await driver.execute(sql.encode("utf-8"))
            else:
                raise QueryError(
                    f"cannot run a multi-statement script on a {type(driver).__qualname__} "
                    "connection; use the asyncpg or psycopg dialect"
                )
