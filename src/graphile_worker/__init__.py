"""graphile-worker for Python: a PostgreSQL job queue compatible with Node graphile-worker."""

from __future__ import annotations

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

__version__ = "0.1.0.dev0"

__all__ = [
    "LATEST_MIGRATION",
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
    "MigrationReport",
    "QueryError",
    "UniqueViolationError",
    "UnsupportedPostgresVersionError",
    "__version__",
    "migrate",
    "migrate_sync",
]
