"""Every exception graphile-worker raises, in one place.

The tree, so that callers can pick how broadly to catch:

* ``GraphileWorkerError`` - root of everything below
    * ``ConfigurationError`` (also ``ValueError``) - bad options or arguments, raised before
      any SQL runs
        * ``InvalidSchemaNameError`` - a schema name that is not a plain identifier
        * ``InvalidJobSpecError`` - a job spec or payload that cannot be queued
        * ``DriverUnavailableError`` - the requested driver's package is not installed, or the
          driver cannot run on the current async runtime
        * ``TaskDefinitionError`` - a task handler or task module that cannot be registered
        * ``CrontabError`` - a crontab line or cron item that cannot be scheduled; names the
          line, column and offending text
        * ``InsufficientPrivilegeError`` - the database role lacks a grant, or row-level
          security hides the rows, that the worker needs; names the role and the fix
    * ``DatabaseError`` - PostgreSQL or the driver reported a failure
        * ``ConnectionLostError`` - the connection broke or could not be opened
        * ``QueryError`` - the server rejected a statement; ``sqlstate`` says why
            * ``UniqueViolationError`` - SQLSTATE 23505
    * ``MigrationError`` - the schema could not be brought up to date
        * ``UnsupportedPostgresVersionError`` - the server is older than PostgreSQL 12
        * ``IncompatibleSchemaError`` - the database holds a breaking migration newer than
          this library knows
        * ``LockedJobsError`` - migration 11 refused to run because jobs are still locked
    * ``EmbeddedPostgresError`` (also ``RuntimeError``) - a throwaway PostgreSQL server
      (:mod:`graphile_worker.embedded`) could not be found, initialised, started or stopped
        * ``PostgresNotFoundError`` - no usable PostgreSQL binaries; lists where we looked
    * ``JobError`` - why one job did not succeed (recorded in its ``last_error``)
        * ``PayloadDecodeError`` - the payload does not fit the handler's payload type
        * ``UnknownTaskError`` - no handler for the job's task identifier
        * ``BatchFailedError`` - items of a batch job failed
        * ``HookError`` - an interceptor failed the job, or raised
        * ``JobAbortedError`` - the job was cancelled because the worker shut down
        * ``PermanentJobError`` - raised by a handler: fail the job now, without retries

Driver exceptions never leak: each driver translates its own errors into this tree at the
I/O boundary (see ``graphile_worker.drivers``), keeping the original as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._error_text import error_text

__all__ = [
    "BatchFailedError",
    "ConfigurationError",
    "ConnectionLostError",
    "CrontabError",
    "DatabaseError",
    "DriverUnavailableError",
    "EmbeddedPostgresError",
    "GraphileWorkerError",
    "HookError",
    "IncompatibleSchemaError",
    "InsufficientPrivilegeError",
    "InvalidJobSpecError",
    "InvalidSchemaNameError",
    "JobAbortedError",
    "JobError",
    "LockedJobsError",
    "MigrationError",
    "PayloadDecodeError",
    "PermanentJobError",
    "PostgresNotFoundError",
    "QueryError",
    "TaskDefinitionError",
    "UniqueViolationError",
    "UnknownTaskError",
    "UnsupportedPostgresVersionError",
]


class GraphileWorkerError(Exception):
    """Root of every error raised by graphile-worker."""


class ConfigurationError(GraphileWorkerError, ValueError):
    """An option or argument is invalid; nothing was sent to the database."""


class InvalidSchemaNameError(ConfigurationError):
    """The schema name cannot be used as a PostgreSQL identifier."""


class InvalidJobSpecError(ConfigurationError):
    """A job, its payload or its options cannot be queued as given."""


class DriverUnavailableError(ConfigurationError):
    """The requested database driver is not installed or cannot run on this async runtime."""


class InsufficientPrivilegeError(ConfigurationError):
    """The connected role cannot do what the worker needs in the schema; found at start-up.

    Raised before the first job is claimed, because the most common cause fails silently:
    row-level security, which Node's migrations enable on the job tables, hides every row
    from a role that neither owns them nor has a policy, so the worker would run nothing.
    ``role`` and ``schema`` name what was checked; ``problems`` lists each missing grant or
    policy. ``graphile-worker grant <role>`` (run as the schema's owner) fixes all of them.
    """

    def __init__(self, message: str, *, role: str, schema: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.role = role
        self.schema = schema
        self.problems: tuple[str, ...] = tuple(problems)


class DatabaseError(GraphileWorkerError):
    """PostgreSQL or the database driver reported a failure.

    ``sqlstate`` carries the five-character SQLSTATE code when the server sent one.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class ConnectionLostError(DatabaseError):
    """The connection to PostgreSQL broke, or could not be opened at all."""


class QueryError(DatabaseError):
    """The server rejected a statement; see ``sqlstate``."""


class UniqueViolationError(QueryError):
    """A statement would have violated a unique constraint (SQLSTATE 23505)."""


class MigrationError(GraphileWorkerError):
    """The graphile-worker schema could not be installed or upgraded."""


class UnsupportedPostgresVersionError(MigrationError):
    """graphile-worker needs PostgreSQL 12 or newer."""


class IncompatibleSchemaError(MigrationError):
    """The database holds a breaking migration newer than this library understands.

    Running against it could corrupt jobs, so the worker refuses to start. Upgrade this
    library (or the other workers sharing the database) until both agree.
    """

    def __init__(self, message: str, *, database_version: int, library_version: int) -> None:
        super().__init__(message)
        self.database_version = database_version
        self.library_version = library_version


class LockedJobsError(MigrationError):
    """Migration 11 cannot reshape the jobs table while jobs or queues are locked."""


class EmbeddedPostgresError(GraphileWorkerError, RuntimeError):
    """A temporary PostgreSQL server could not be found, initialised, started or stopped."""


class PostgresNotFoundError(EmbeddedPostgresError):
    """No usable PostgreSQL binaries were found; the message lists where we looked."""


class TaskDefinitionError(ConfigurationError):
    """A task handler, handler class or task module that cannot be registered."""


class CrontabError(ConfigurationError):
    """A crontab line or cron item is invalid, so nothing from it may be scheduled.

    ``line`` and ``column`` are 1-based and ``None`` for items built in code; ``text`` is
    the offending part of the line and ``message`` the reason without the location. When
    a crontab has several problems, one error is raised whose ``errors`` holds them all
    (each a ``CrontabError``) and whose own attributes describe the first; its text has
    one line per problem, so a user can fix every bad line in one pass.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        text: str | None = None,
        path: str | None = None,
        errors: Sequence[CrontabError] = (),
    ) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.text = text
        self.path = path
        self.errors: tuple[CrontabError, ...] = tuple(errors) or (self,)
        if len(self.errors) > 1:
            super().__init__("\n".join(str(error) for error in self.errors))
        else:
            super().__init__(_crontab_location(path, line, column) + message)


def _crontab_location(path: str | None, line: int | None, column: int | None) -> str:
    if line is None:
        return f"crontab {path!r}: " if path is not None else ""
    where = f"crontab {path!r} line {line}" if path is not None else f"crontab line {line}"
    return f"{where}, column {column}: " if column is not None else f"{where}: "


class JobError(GraphileWorkerError):
    """Why one job did not succeed; its message becomes the job's ``last_error``."""


class PayloadDecodeError(JobError):
    """The job's JSON payload does not fit the payload type its handler declares."""


class UnknownTaskError(JobError):
    """The worker holds no handler for the job's task identifier."""


class HookError(JobError):
    """An interceptor failed the job, or raised while deciding about it."""


class JobAbortedError(JobError):
    """The job was cancelled because the worker shut down before it finished."""


class PermanentJobError(JobError):
    """Raise it in a handler to fail the job for good, skipping the attempts it has left.

    For failures no retry can fix (the account was deleted, the input is invalid): the job
    is recorded with this message as ``last_error`` and ``attempts = max_attempts``, as
    ``WorkerUtils.permanently_fail_jobs`` does, so it stays in the table for inspection
    and :meth:`~graphile_worker.WorkerUtils.reschedule_jobs` can still revive it. In a
    batch task, returning it for every failed item fails the job for good with those
    items as its payload; if any failed item has another error, the job is retried.
    """


class BatchFailedError(JobError):
    """Every item of a batch job failed (or, from ``BatchResult.as_error``, some did).

    The message uses Node's wording (``"Batch failures:"`` and one line per error), so
    ``last_error`` reads the same whichever worker ran the batch. ``errors`` holds the item
    errors in payload order; the first is also the ``__cause__``, so a logged traceback shows
    where it came from.
    """

    def __init__(self, errors: Sequence[BaseException]) -> None:
        super().__init__("Batch failures:\n" + "\n".join(error_text(e) for e in errors))
        self.errors: tuple[BaseException, ...] = tuple(errors)
        if self.errors:
            _chain(self, self.errors[0])


def _chain(error: BaseException, cause: BaseException) -> None:
    # Set outside the class body so that the attribute keeps BaseException's declaration.
    error.__cause__ = cause
