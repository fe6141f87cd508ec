"""graphile-worker for Python: a PostgreSQL job queue compatible with Node graphile-worker.

The names below are the supported public API: declare tasks with :func:`task`, add jobs with
:class:`WorkerUtils`, run them with :class:`Worker`. Integrations live in their own modules so that
importing the package pulls in no database driver: ``graphile_worker.sqlalchemy`` (add jobs
inside a caller's session), ``graphile_worker.alembic_support`` (Alembic environments),
``graphile_worker.embedded`` (a throwaway PostgreSQL for tests and demos).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._job_defaults import TaskReference
from ._json import UndecodableJson
from .crontab import CronBuilder, CronItem, cron, load_crontab, parse_crontab
from .drivers import (
    DRIVER_NAMES,
    AsyncExecutor,
    DatabaseDriver,
    Notification,
    SyncExecutor,
    create_driver,
)
from .errors import (
    BatchFailedError,
    ConfigurationError,
    ConnectionLostError,
    CrontabError,
    DatabaseError,
    DriverUnavailableError,
    GraphileWorkerError,
    HookError,
    IncompatibleSchemaError,
    InsufficientPrivilegeError,
    InvalidJobSpecError,
    InvalidSchemaNameError,
    JobAbortedError,
    JobError,
    LockedJobsError,
    MigrationError,
    PayloadDecodeError,
    PermanentJobError,
    QueryError,
    TaskDefinitionError,
    UniqueViolationError,
    UnknownTaskError,
    UnsupportedPostgresVersionError,
)
from .hooks import Observer, Plugin
from .inspection import (
    JobActivity,
    JobCounts,
    JobPage,
    JobState,
    KnownCrontab,
    LockHolder,
    QueueInfo,
    QueueStats,
)
from .migrations import LATEST_MIGRATION, MigrationReport, migrate, migrate_sync
from .recovery import RecoveryOptions, SweepReport, WorkerInfo
from .spec import JSON, CleanupTask, Job, JobKeyMode, JobSpec, TypedPayload
from .sql.grants import GrantReport
from .task import Backoff, BatchResult, Task, TaskRegistry, load_tasks, task
from .utils import JobInput, SyncWorkerUtils, WorkerUtils
from .worker import (
    LocalQueueOptions,
    RefetchDelay,
    RunOnceSummary,
    Worker,
    WorkerContext,
    WorkerOptions,
)

if TYPE_CHECKING:
    from .schema import WorkerTables, tables_for_schema

# SQLAlchemy costs more than the rest of the package together at import time, and a worker
# never needs it, so the table definitions load on first use.
_LAZY_FROM_SCHEMA = frozenset({"WorkerTables", "tables_for_schema"})


def __getattr__(name: str) -> object:
    value: object
    if name in _LAZY_FROM_SCHEMA:
        from . import schema

        value = getattr(schema, name)
    elif name == "__version__":
        # The version is written once, in pyproject.toml; the installed metadata carries it.
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("graphile-worker")
        except PackageNotFoundError:  # imported from a source tree that was never installed
            value = "0+unknown"
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_FROM_SCHEMA | {"__version__"})


if TYPE_CHECKING:
    __version__: str

__all__ = [
    "DRIVER_NAMES",
    "JSON",
    "LATEST_MIGRATION",
    "AsyncExecutor",
    "Backoff",
    "BatchFailedError",
    "BatchResult",
    "CleanupTask",
    "ConfigurationError",
    "ConnectionLostError",
    "CronBuilder",
    "CronItem",
    "CrontabError",
    "DatabaseDriver",
    "DatabaseError",
    "DriverUnavailableError",
    "GrantReport",
    "GraphileWorkerError",
    "HookError",
    "IncompatibleSchemaError",
    "InsufficientPrivilegeError",
    "InvalidJobSpecError",
    "InvalidSchemaNameError",
    "Job",
    "JobAbortedError",
    "JobActivity",
    "JobCounts",
    "JobError",
    "JobInput",
    "JobKeyMode",
    "JobPage",
    "JobSpec",
    "JobState",
    "KnownCrontab",
    "LocalQueueOptions",
    "LockHolder",
    "LockedJobsError",
    "MigrationError",
    "MigrationReport",
    "Notification",
    "Observer",
    "PayloadDecodeError",
    "PermanentJobError",
    "Plugin",
    "QueryError",
    "QueueInfo",
    "QueueStats",
    "RecoveryOptions",
    "RefetchDelay",
    "RunOnceSummary",
    "SweepReport",
    "SyncExecutor",
    "SyncWorkerUtils",
    "Task",
    "TaskDefinitionError",
    "TaskReference",
    "TaskRegistry",
    "TypedPayload",
    "UndecodableJson",
    "UniqueViolationError",
    "UnknownTaskError",
    "UnsupportedPostgresVersionError",
    "Worker",
    "WorkerContext",
    "WorkerInfo",
    "WorkerOptions",
    "WorkerTables",
    "WorkerUtils",
    "__version__",
    "create_driver",
    "cron",
    "load_crontab",
    "load_tasks",
    "migrate",
    "migrate_sync",
    "parse_crontab",
    "tables_for_schema",
    "task",
]
