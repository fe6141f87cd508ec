"""graphile-worker for Python: a PostgreSQL job queue compatible with Node graphile-worker.

The names below are the supported public API. Integrations live in their own modules so that
importing the package pulls in no database driver: ``graphile_worker.sqlalchemy`` (add jobs
inside a caller's session), ``graphile_worker.alembic_support`` (Alembic environments),
``graphile_worker.embedded`` (a throwaway PostgreSQL for tests and demos).
"""

from __future__ import annotations

from .drivers import (
    DRIVER_NAMES,
    AsyncExecutor,
    DatabaseDriver,
    Notification,
    SyncExecutor,
    create_driver,
)
from .errors import (
    ConfigurationError,
    ConnectionLostError,
    DatabaseError,
    DriverUnavailableError,
    GraphileWorkerError,
    IncompatibleSchemaError,
    InvalidJobSpecError,
    InvalidSchemaNameError,
    LockedJobsError,
    MigrationError,
    QueryError,
    UniqueViolationError,
    UnsupportedPostgresVersionError,
)
from .migrations import LATEST_MIGRATION, MigrationReport, migrate, migrate_sync
from .schema import WorkerTables, tables_for_schema
from .spec import JSON, CleanupTask, Job, JobKeyMode, JobSpec, TypedPayload
from .utils import JobInput, SyncWorkerUtils, WorkerUtils

__version__ = "0.1.0.dev0"

__all__ = [
    "DRIVER_NAMES",
    "JSON",
    "LATEST_MIGRATION",
    "AsyncExecutor",
    "CleanupTask",
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseDriver",
    "DatabaseError",
    "DriverUnavailableError",
    "GraphileWorkerError",
    "IncompatibleSchemaError",
    "InvalidJobSpecError",
    "InvalidSchemaNameError",
    "Job",
    "JobInput",
    "JobKeyMode",
    "JobSpec",
    "LockedJobsError",
    "MigrationError",
    "MigrationReport",
    "Notification",
    "QueryError",
    "SyncExecutor",
    "SyncWorkerUtils",
    "TypedPayload",
    "UniqueViolationError",
    "UnsupportedPostgresVersionError",
    "WorkerTables",
    "WorkerUtils",
    "__version__",
    "create_driver",
    "migrate",
    "migrate_sync",
    "tables_for_schema",
]
