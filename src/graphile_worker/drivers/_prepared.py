"""Which statements one connection has prepared on the server, and when to prepare more.

Pure bookkeeping, no I/O: :class:`AnyioConnection <._anyio_connection.AnyioConnection>`
asks :class:`PreparedStatements` before each statement and does the sending. A
statement is keyed by its text and its parameter types, as in psycopg, because the server
fixes the types when it prepares; the same text with other types is another statement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from ..errors import QueryError

__all__ = ["MAX_PREPARED_STATEMENTS", "PreparedStatements", "StatementKey", "went_stale"]

MAX_PREPARED_STATEMENTS = 256
"""Statements prepared per connection at most; further ones run unprepared."""

StatementKey = tuple[bytes, "tuple[int, ...] | None"]
"""A statement's SQL text (with ``$n`` placeholders) and its parameter type oids."""

# invalid_sql_statement_name: our prepared statement is gone (DEALLOCATE, DISCARD ALL).
_NO_SUCH_STATEMENT = "26000"
# The server function that refuses a prepared statement whose result type DDL changed
# ("cached plan must not change result type", SQLSTATE 0A000, which other errors share).
_REVALIDATE_FUNCTION = "RevalidateCachedQuery"


class PreparedStatements:
    """The prepared statements of one connection, and the runs of those not prepared yet.

    ``threshold``: runs of a statement before it is prepared (``0``: at once; ``None``:
    never, for PgBouncer in transaction mode).
    """

    __slots__ = ("_counts", "_names", "_next_number", "_threshold")

    def __init__(self, threshold: int | None) -> None:
        self._threshold = threshold
        self._names: dict[StatementKey, bytes] = {}
        self._counts: dict[StatementKey, int] = {}
        self._next_number = 1

    def lookup(self, key: StatementKey) -> bytes | None:
        """The name ``key`` is prepared under, or ``None``."""
        return self._names.get(key)

    def name_to_prepare(self, key: StatementKey) -> bytes | None:
        """Count one more run of the unprepared ``key``; a new name to prepare it under when
        it has run often enough, else ``None`` (run it unprepared this time)."""
        threshold = self._threshold
        if threshold is None or len(self._names) >= MAX_PREPARED_STATEMENTS:
            return None
        runs = self._counts.get(key, 0) + 1
        if runs <= threshold:
            if len(self._counts) >= MAX_PREPARED_STATEMENTS * 4:
                self._counts.clear()  # one-off statements must not grow this for ever
            self._counts[key] = runs
            return None
        self._counts.pop(key, None)
        name = b"_graphile_worker_%d" % self._next_number
        self._next_number += 1  # never reused: the server may still hold a forgotten one
        return name

    def prepared(self, key: StatementKey, name: bytes) -> None:
        """Record that the server prepared ``key`` as ``name``."""
        self._names[key] = name

    def forget(self) -> None:
        """Forget every statement (see :func:`went_stale`); each is prepared again later."""
        self._names.clear()
        self._counts.clear()


def went_stale(error: QueryError) -> bool:
    """Whether ``error`` says a prepared statement no longer exists or no longer fits."""
    cause = error.__cause__
    if not isinstance(cause, psycopg.Error):
        return False
    return cause.sqlstate == _NO_SUCH_STATEMENT or (
        cause.diag.source_function == _REVALIDATE_FUNCTION
    )
