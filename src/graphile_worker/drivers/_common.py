"""Small decisions every driver makes the same way, kept in one place."""

from __future__ import annotations

from ..errors import ConnectionLostError, DatabaseError, GraphileWorkerError, QueryError

__all__ = ["as_connection_error", "check_commit_status"]

# SQLSTATE in_failed_sql_transaction: what PostgreSQL reports for statements sent after a
# failed one in the same transaction.
_IN_FAILED_TRANSACTION = "25P02"


def check_commit_status(status: str | None) -> None:
    """Raise if ``COMMIT`` actually rolled back.

    PostgreSQL answers ``COMMIT`` in a transaction where a statement failed with the tag
    ``ROLLBACK`` and no error. A caller that caught the failure inside ``transaction()`` and
    carried on would otherwise believe its work was saved.

    Raises:
        QueryError: with SQLSTATE 25P02 when the transaction was rolled back.
    """
    if status == "ROLLBACK":
        raise QueryError(
            "the transaction was rolled back instead of committed, because a statement in it "
            "failed; nothing it wrote was saved",
            sqlstate=_IN_FAILED_TRANSACTION,
        )


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
