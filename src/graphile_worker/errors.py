"""Every exception graphile-worker raises, in one place.

The tree, so that callers can pick how broadly to catch:

* ``GraphileWorkerError`` - root of everything below
    * ``ConfigurationError`` (also ``ValueError``) - bad options or arguments, raised before
      any SQL runs
        * ``InvalidSchemaNameError`` - a schema name that is not a plain identifier
        * ``InvalidJobSpecError`` - a job spec or payload that cannot be queued
        * ``DriverUnavailableError`` - the requested driver's package is not installed, or the
          driver cannot run on the current async runtime
    * ``DatabaseError`` - PostgreSQL or the driver reported a failure
        * ``ConnectionLostError`` - the connection broke or could not be opened
        * ``QueryError`` - the server rejected a statement; ``sqlstate`` says why
            * ``UniqueViolationError`` - SQLSTATE 23505
    * ``MigrationError`` - the schema could not be brought up to date
        * ``UnsupportedPostgresVersionError`` - the server is older than PostgreSQL 12
        * ``IncompatibleSchemaError`` - the database holds a breaking migration newer than
          this library knows
        * ``LockedJobsError`` - migration 11 refused to run because jobs are still locked

Driver exceptions never leak: each driver translates its own errors into this tree at the
I/O boundary (see ``graphile_worker.drivers``), keeping the original as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseError",
    "DriverUnavailableError",
    "GraphileWorkerError",
    "IncompatibleSchemaError",
    "InvalidJobSpecError",
    "InvalidSchemaNameError",
    "LockedJobsError",
    "MigrationError",
    "QueryError",
    "UniqueViolationError",
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
