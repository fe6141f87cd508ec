"""SQLAlchemy Core ``Table`` objects describing the graphile-worker schema.

They mirror the catalog Node graphile-worker's migration 20 leaves behind (plus our own
extension ledger), column for column and type for type, so that typed queries can be
written against them::

    from sqlalchemy import select
    from graphile_worker.schema import tables_for_schema

    tables = tables_for_schema("my_jobs")
    statement = select(tables.jobs.c.id, tables.jobs.c.task_identifier).where(
        tables.jobs.c.locked_at.is_(None)
    )

The schema is owned by the migrator, never by these objects: do not pass
``tables.metadata`` to ``create_all()`` or to Alembic autogenerate (the ``jobs`` view would
come out as a table, and the functions, triggers and row-level security would be missing).
Use :mod:`graphile_worker.alembic_support` to keep your own autogenerate away from it.

Each schema name gets its own :class:`~sqlalchemy.MetaData`, built once and cached, so the
same name always yields the same objects. The module-level names (``jobs``,
``private_jobs``, ...) are those of the default schema ``graphile_worker``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import (
    BIGINT,
    BOOLEAN,
    INTEGER,
    SMALLINT,
    TEXT,
    TIMESTAMP,
    CheckConstraint,
    Column,
    Computed,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB

from .sql import DEFAULT_SCHEMA, validate_schema_name

__all__ = [
    "DEFAULT_TABLES",
    "VIEW_INFO_KEY",
    "WorkerTables",
    "jobs",
    "metadata",
    "migrations",
    "private_job_queues",
    "private_jobs",
    "private_known_crontabs",
    "private_tasks",
    "pyworker_migrations",
    "tables_for_schema",
]

VIEW_INFO_KEY = "is_view"
"""``Table.info`` key set to ``True`` on tables that are really views (Alembic's idiom)."""

_NOW = text("now()")


def _timestamptz() -> TIMESTAMP:
    return TIMESTAMP(timezone=True)


@dataclass(frozen=True, eq=False)
class WorkerTables:
    """The graphile-worker tables of one schema, all on one :class:`~sqlalchemy.MetaData`.

    ``jobs`` is Node's public, read-only view over ``_private_jobs`` joined with the task
    and queue tables (it has ``task_identifier`` and ``queue_name`` but no ``payload``);
    its ``info`` carries ``{"is_view": True}``. Write through the SQL functions
    (``add_job``, ``complete_jobs``, ...) rather than into the ``private_*`` tables.
    """

    schema: str
    metadata: MetaData
    private_jobs: Table
    """``_private_jobs``: every job, with ``task_id``/``job_queue_id`` foreign ids."""
    private_job_queues: Table
    """``_private_job_queues``: named queues and their locks."""
    private_tasks: Table
    """``_private_tasks``: task identifiers ever queued."""
    private_known_crontabs: Table
    """``_private_known_crontabs``: cron items and their last execution."""
    migrations: Table
    """``migrations``: the ledger Node and this library share."""
    pyworker_migrations: Table
    """``_pyworker_migrations``: the ledger of this library's own extension steps.

    It exists in the database only once an extension step has been applied.
    """
    jobs: Table
    """``jobs``: the read-only view of jobs (see the class docstring)."""

    @property
    def tables(self) -> tuple[Table, ...]:
        """Every real table (not the view), in dependency-free order."""
        return (
            self.private_jobs,
            self.private_job_queues,
            self.private_tasks,
            self.private_known_crontabs,
            self.migrations,
            self.pyworker_migrations,
        )


def _private_jobs(metadata: MetaData) -> Table:
    table = Table(
        "_private_jobs",
        metadata,
        Column("id", BIGINT, Identity(always=True), nullable=False),
        Column("job_queue_id", INTEGER, nullable=True),
        Column("task_id", INTEGER, nullable=False),
        Column("payload", JSON, nullable=False, server_default=text("'{}'::json")),
        Column("priority", SMALLINT, nullable=False, server_default=text("0")),
        Column("run_at", _timestamptz(), nullable=False, server_default=_NOW),
        Column("attempts", SMALLINT, nullable=False, server_default=text("0")),
        Column("max_attempts", SMALLINT, nullable=False, server_default=text("25")),
        Column("last_error", TEXT, nullable=True),
        Column("created_at", _timestamptz(), nullable=False, server_default=_NOW),
        Column("updated_at", _timestamptz(), nullable=False, server_default=_NOW),
        Column("key", TEXT, nullable=True),
        Column("locked_at", _timestamptz(), nullable=True),
        Column("locked_by", TEXT, nullable=True),
        Column("revision", INTEGER, nullable=False, server_default=text("0")),
        Column("flags", JSONB, nullable=True),
        Column(
            "is_available",
            BOOLEAN,
            Computed("locked_at IS NULL AND attempts < max_attempts", persisted=True),
            nullable=False,
        ),
        # The odd names are Node's: migration 11 created these while the legacy table still
        # held the plain ones, and migration 16 renamed the table but not its constraints.
        PrimaryKeyConstraint("id", name="jobs_pkey1"),
        UniqueConstraint("key", name="jobs_key_key1"),
        CheckConstraint("length(key) > 0 AND length(key) <= 512", name="jobs_key_check"),
        CheckConstraint("max_attempts >= 1", name="jobs_max_attempts_check"),
    )
    Index(
        "jobs_main_index",
        table.c.priority,
        table.c.run_at,
        postgresql_include=["id", "task_id", "job_queue_id"],
        postgresql_where=table.c.is_available == true(),
    )
    Index(
        "jobs_no_queue_index",
        table.c.priority,
        table.c.run_at,
        postgresql_include=["id", "task_id"],
        postgresql_where=(table.c.is_available == true()) & table.c.job_queue_id.is_(None),
    )
    return table


def _private_job_queues(metadata: MetaData) -> Table:
    return Table(
        "_private_job_queues",
        metadata,
        Column("id", INTEGER, Identity(always=True), nullable=False),
        Column("queue_name", TEXT, nullable=False),
        Column("locked_at", _timestamptz(), nullable=True),
        Column("locked_by", TEXT, nullable=True),
        Column(
            "is_available", BOOLEAN, Computed("locked_at IS NULL", persisted=True), nullable=False
        ),
        PrimaryKeyConstraint("id", name="job_queues_pkey1"),
        UniqueConstraint("queue_name", name="job_queues_queue_name_key"),
        CheckConstraint("length(queue_name) <= 128", name="job_queues_queue_name_check"),
    )


def _private_tasks(metadata: MetaData) -> Table:
    return Table(
        "_private_tasks",
        metadata,
        Column("id", INTEGER, Identity(always=True), nullable=False),
        Column("identifier", TEXT, nullable=False),
        PrimaryKeyConstraint("id", name="tasks_pkey"),
        UniqueConstraint("identifier", name="tasks_identifier_key"),
        CheckConstraint("length(identifier) <= 128", name="tasks_identifier_check"),
    )


def _private_known_crontabs(metadata: MetaData) -> Table:
    return Table(
        "_private_known_crontabs",
        metadata,
        Column("identifier", TEXT, nullable=False),
        Column("known_since", _timestamptz(), nullable=False),
        Column("last_execution", _timestamptz(), nullable=True),
        PrimaryKeyConstraint("identifier", name="known_crontabs_pkey"),
    )


def _migrations(metadata: MetaData) -> Table:
    return Table(
        "migrations",
        metadata,
        Column("id", INTEGER, nullable=False, autoincrement=False),
        Column("ts", _timestamptz(), nullable=False, server_default=_NOW),
        Column("breaking", BOOLEAN, nullable=False, server_default=text("false")),
        PrimaryKeyConstraint("id", name="migrations_pkey"),
    )


def _pyworker_migrations(metadata: MetaData) -> Table:
    return Table(
        "_pyworker_migrations",
        metadata,
        Column("id", TEXT, nullable=False),
        Column("ts", _timestamptz(), nullable=False, server_default=_NOW),
        PrimaryKeyConstraint("id", name="_pyworker_migrations_pkey"),
    )


def _jobs_view(metadata: MetaData) -> Table:
    # PostgreSQL reports every column of a view as nullable, and so do we.
    return Table(
        "jobs",
        metadata,
        Column("id", BIGINT),
        Column("queue_name", TEXT),
        Column("task_identifier", TEXT),
        Column("priority", SMALLINT),
        Column("run_at", _timestamptz()),
        Column("attempts", SMALLINT),
        Column("max_attempts", SMALLINT),
        Column("last_error", TEXT),
        Column("created_at", _timestamptz()),
        Column("updated_at", _timestamptz()),
        Column("key", TEXT),
        Column("locked_at", _timestamptz()),
        Column("locked_by", TEXT),
        Column("revision", INTEGER),
        Column("flags", JSONB),
        info={VIEW_INFO_KEY: True},
    )


@cache
def _build(schema: str) -> WorkerTables:
    metadata = MetaData(schema=schema)
    return WorkerTables(
        schema=schema,
        metadata=metadata,
        private_jobs=_private_jobs(metadata),
        private_job_queues=_private_job_queues(metadata),
        private_tasks=_private_tasks(metadata),
        private_known_crontabs=_private_known_crontabs(metadata),
        migrations=_migrations(metadata),
        pyworker_migrations=_pyworker_migrations(metadata),
        jobs=_jobs_view(metadata),
    )


def tables_for_schema(schema: str = DEFAULT_SCHEMA) -> WorkerTables:
    """The tables of the graphile-worker schema called ``schema``, built once per name.

    Raises:
        InvalidSchemaNameError: ``schema`` cannot be a PostgreSQL schema name.
    """
    return _build(validate_schema_name(schema))


DEFAULT_TABLES: WorkerTables = tables_for_schema()
"""The tables of the default schema, ``graphile_worker``."""

metadata: MetaData = DEFAULT_TABLES.metadata
private_jobs: Table = DEFAULT_TABLES.private_jobs
private_job_queues: Table = DEFAULT_TABLES.private_job_queues
private_tasks: Table = DEFAULT_TABLES.private_tasks
private_known_crontabs: Table = DEFAULT_TABLES.private_known_crontabs
migrations: Table = DEFAULT_TABLES.migrations
pyworker_migrations: Table = DEFAULT_TABLES.pyworker_migrations
jobs: Table = DEFAULT_TABLES.jobs
