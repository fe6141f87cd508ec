"""Pieces shared by the psycopg drivers: error translation and the blocking executor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from ..errors import ConnectionLostError, DatabaseError, QueryError, UniqueViolationError
from ..sql import to_pyformat
from .base import Params, Row

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["PsycopgSyncExecutor", "translate_psycopg_errors"]

_CONNECTION_SQLSTATE_CLASSES = ("08", "57")


@contextmanager
def translate_psycopg_errors() -> Iterator[None]:
    """Re-raise psycopg's exceptions as graphile-worker's, keeping the original as cause."""
    try:
        yield
    except psycopg.Error as error:
        raise _translate(error) from error


def _translate(error: psycopg.Error) -> DatabaseError:
    sqlstate = error.sqlstate
    message = str(error).strip() or type(error).__name__
    if isinstance(error, psycopg.OperationalError) and (
        sqlstate is None or sqlstate[:2] in _CONNECTION_SQLSTATE_CLASSES
    ):
        return ConnectionLostError(message, sqlstate=sqlstate)
    if isinstance(error, psycopg.InterfaceError):
        return ConnectionLostError(message, sqlstate=sqlstate)
    if sqlstate == "23505":
        return UniqueViolationError(message, sqlstate=sqlstate)
    return QueryError(message, sqlstate=sqlstate)


class PsycopgSyncExecutor:
    """A :class:`~graphile_worker.drivers.SyncExecutor` over a caller's psycopg connection.

    It never commits: statements join whatever transaction the connection is in, so the
    caller decides when work becomes visible.
    """

    def __init__(self, connection: Connection[Any]) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Params | None = None) -> int:
        with translate_psycopg_errors(), self._connection.cursor() as cursor:
            cursor.execute(to_pyformat(sql), params or {}, prepare=False)
            return cursor.rowcount

    def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        with translate_psycopg_errors(), self._connection.cursor(row_factory=dict_row) as cursor:
            cursor.execute(to_pyformat(sql), params or {})
            rows: list[Row] = list(cursor.fetchall())
            return rows

    def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        with translate_psycopg_errors(), self._connection.cursor(row_factory=dict_row) as cursor:
            cursor.execute(to_pyformat(sql), params or {})
            return cursor.fetchone()

    def fetchval(self, sql: str, params: Params | None = None) -> Any:
        row = self.fetchrow(sql, params)
        return None if row is None else next(iter(row.values()), None)

    def execute_script(self, sql: str) -> None:
        with translate_psycopg_errors(), self._connection.cursor() as cursor:
            # No parameters: psycopg then uses the simple query protocol, which accepts
            # several statements in one string.
            cursor.execute(sql.encode("utf-8"))
