"""Driver exceptions become graphile-worker's at one boundary, the same way in every driver.

Each driver declares an :data:`ErrorMap`: its library's exception classes, each with the
function that builds our exception from one. :func:`translate` looks the exception's class
up, then its bases in MRO order, so the most specific entry wins and a class a new library
release adds falls back to its parent's meaning (SQLAlchemy's asyncpg dialect does the
same in ``_handle_exception_no_connection``). :func:`map_exceptions` applies a map around a
block, as httpcore's ``map_exceptions`` does; the result is always raised ``from`` the
driver's exception, which stays available as ``__cause__``. On the paths every statement
takes, drivers catch the map's classes in a plain ``try`` and call :func:`translate`, which
is the same translation without the cost of entering a context manager.

What a server error means is decided by its SQLSTATE alone, here and only here
(:func:`sqlstate_error`), and the SQLSTATE is kept on our exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeAlias

from ..errors import (
    ConfigurationError,
    ConnectionLostError,
    DatabaseError,
    GraphileWorkerError,
    QueryError,
    UniqueViolationError,
)

__all__ = [
    "ErrorMap",
    "Translator",
    "as_connection_error",
    "configuration_error",
    "connection_lost",
    "map_exceptions",
    "query_error",
    "sqlstate_error",
    "sqlstate_of",
    "translate",
]

Translator: TypeAlias = Callable[[Any], "GraphileWorkerError | None"]
"""Builds our exception from a driver's; ``None`` means "not a database error, let it be"."""

ErrorMap: TypeAlias = Mapping[type[BaseException], Translator]
"""A driver's exception classes and how each becomes ours; searched along the MRO."""

# SQLSTATEs meaning "this session is gone": class 08 (connection exception) and the class 57
# codes that end a session. 57014 (query_canceled) is class 57 too, but the session survives
# it, so it stays a QueryError.
_CONNECTION_EXCEPTION_CLASS = "08"
_SESSION_ENDING = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05"})
_UNIQUE_VIOLATION = "23505"
# duplicate_prepared_statement and invalid_sql_statement_name: what a pooler that hands one
# client several server connections (PgBouncer in transaction mode) causes.
_PREPARED_STATEMENT_MISMATCH = frozenset({"42P05", "26000"})
_POOLER_HINT = (
    "prepared statements do not work through PgBouncer in transaction mode; turn them off "
    "with --no-prepared-statements or prepared_statements=False"
)


def translate(error: BaseException, errors: ErrorMap) -> GraphileWorkerError | None:
    """Our exception for ``error``, from the entry for its nearest class in ``errors``.

    ``None`` when no class of ``error`` has an entry, or when its entry says that the
    error is not a database error.
    """
    for cls in type(error).__mro__:
        translator = errors.get(cls)
        if translator is not None:
            return translator(error)
    return None


@contextmanager
def map_exceptions(errors: ErrorMap, *, connecting: bool = False) -> Iterator[None]:
    """Raise our exception instead of any driver exception ``errors`` translates.

    Args:
        errors: the driver's map.
        connecting: the block opens a connection, so a refusal of any kind means that
            none exists (:func:`as_connection_error`).
    """
    try:
        yield
    except Exception as error:
        ours = translate(error, errors)
        if ours is None:
            raise
        raise (as_connection_error(ours) if connecting else ours) from error


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE a driver exception carries (``sqlstate``, or psycopg2's ``pgcode``)."""
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return sqlstate if isinstance(sqlstate, str) else None


def _message(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__


def sqlstate_error(error: BaseException) -> DatabaseError:
    """Our exception for an error the server reported, chosen by its SQLSTATE.

    Class 08 and the class 57 codes that end the session: :class:`ConnectionLostError`;
    23505: :class:`UniqueViolationError`; anything else (or no SQLSTATE):
    :class:`QueryError`, whose message names the fix when a prepared statement went missing
    or exists twice (42P05, 26000), which a transaction-mode pooler causes.
    """
    sqlstate = sqlstate_of(error)
    if sqlstate is not None and (
        sqlstate.startswith(_CONNECTION_EXCEPTION_CLASS) or sqlstate in _SESSION_ENDING
    ):
        return ConnectionLostError(_message(error), sqlstate=sqlstate)
    if sqlstate == _UNIQUE_VIOLATION:
        return UniqueViolationError(_message(error), sqlstate=sqlstate)
    if sqlstate in _PREPARED_STATEMENT_MISMATCH:
        first, newline, rest = _message(error).partition("\n")
        return QueryError(f"{first} ({_POOLER_HINT}){newline}{rest}", sqlstate=sqlstate)
    return QueryError(_message(error), sqlstate=sqlstate)


def connection_lost(error: BaseException) -> ConnectionLostError:
    """The connection broke or could not be opened, whatever the error's SQLSTATE says."""
    return ConnectionLostError(_message(error), sqlstate=sqlstate_of(error))


def query_error(error: BaseException) -> QueryError:
    """The statement failed and the connection is still usable."""
    return QueryError(_message(error), sqlstate=sqlstate_of(error))


def configuration_error(error: BaseException) -> ConfigurationError:
    """The driver refused the connection settings before reaching any server."""
    return ConfigurationError(f"invalid connection settings: {_message(error)}")


def as_connection_error(error: GraphileWorkerError) -> GraphileWorkerError:
    """Classify an error raised while *opening* a connection as :class:`ConnectionLostError`.

    The server may refuse a new session with any SQLSTATE (28P01 bad password, 3D000 no
    such database, 55000 database does not allow connections, 53300 too many clients);
    whatever the reason, no connection exists, which is what ConnectionLostError means.
    The SQLSTATE is kept. Configuration errors (a malformed URL) stay what they are.
    """
    if isinstance(error, DatabaseError) and not isinstance(error, ConnectionLostError):
        return ConnectionLostError(str(error), sqlstate=error.sqlstate)
    return error
