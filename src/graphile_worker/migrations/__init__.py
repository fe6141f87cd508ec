"""Install and upgrade the graphile-worker schema, compatibly with Node graphile-worker.

See :mod:`graphile_worker.migrations.migrator` for the rules and
:mod:`graphile_worker.migrations.catalog` for the list of migrations.
"""

from __future__ import annotations

from .catalog import (
    BREAKING_MIGRATION_IDS,
    EXTENSION_STEPS,
    LATEST_MIGRATION,
    MIGRATIONS,
    ExtensionStep,
    Migration,
)
from .migrator import (
    MigrationReport,
    MigrationStatus,
    migrate,
    migrate_sync,
    migration_status,
    migration_status_sync,
    require_migrated,
)

__all__ = [
    "BREAKING_MIGRATION_IDS",
    "EXTENSION_STEPS",
    "LATEST_MIGRATION",
    "MIGRATIONS",
    "ExtensionStep",
    "Migration",
    "MigrationReport",
    "MigrationStatus",
    "migrate",
    "migrate_sync",
    "migration_status",
    "migration_status_sync",
    "require_migrated",
]
