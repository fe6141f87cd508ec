"""The list of schema migrations: Node's numbered ones and our own extension steps.

Numbered migrations carry the ids and ``breaking`` flags of Node graphile-worker 0.18.0 so that
both libraries read one ledger (``<schema>.migrations``). Their SQL lives in ``sql/NNNNNN.sql``
next to this module, with ``{schema}`` where the quoted schema name goes.

Extension steps are objects only this library has. They are recorded in a ledger of their own
(``<schema>._pyworker_migrations``), keyed by name, and never take a Node id, so Node's
migrator keeps working on a database we migrated. The table is created only when there is a
step to apply, which keeps a database migrated by us identical to one migrated by Node while
the list is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..sql import render
from ..sql.recovery import WORKER_REGISTRY_TABLE

__all__ = [
    "BREAKING_MIGRATION_IDS",
    "EXTENSION_STEPS",
    "LATEST_MIGRATION",
    "MIGRATIONS",
    "QUEUE_ORDER_INDEX",
    "WORKER_REGISTRY_TABLE",
    "ExtensionStep",
    "Migration",
]

LATEST_MIGRATION = 20
"""The newest Node migration id this library can apply (graphile-worker 0.18.0)."""

BREAKING_MIGRATION_IDS = frozenset({1, 3, 11, 13, 14, 16, 19})
"""Ids Node marks ``--! breaking-change``: older workers must not run against them."""


@cache
def _sql_file(name: str) -> str:
    return resources.files(__package__).joinpath("sql").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Migration:
    """One of Node's numbered migrations, as this library writes it."""

    id: int
    breaking: bool

    @property
    def filename(self) -> str:
        return f"{self.id:06d}.sql"

    def sql(self, schema: str) -> str:
        """The migration's SQL with ``schema`` filled in (quoted)."""
        return render(_sql_file(self.filename), schema)


@dataclass(frozen=True, slots=True)
class ExtensionStep:
    """An object of our own, applied once per schema after the numbered migrations.

    ``sql`` is a template with ``{schema}``; ``requires`` is the numbered migration the step
    builds on, so that ``migrate(up_to=N)`` leaves out steps that need a newer schema. It is
    given explicitly for each step: a default of "the latest" would silently move existing
    steps onto a newer Node migration once one is added.
    """

    id: str
    sql: str
    requires: int

    def render(self, schema: str) -> str:
        return render(self.sql, schema)


MIGRATIONS: tuple[Migration, ...] = tuple(
    Migration(id=number, breaking=number in BREAKING_MIGRATION_IDS)
    for number in range(1, LATEST_MIGRATION + 1)
)

QUEUE_ORDER_INDEX = "_pyworker_jobs_queue_order"
"""Name of our index on each named queue's waiting jobs (see :data:`EXTENSION_STEPS`)."""

# Why an index Node does not have. A claim walks jobs_main_index, keyed (priority, run_at),
# so it meets jobs with equal keys in heap order; a job that was claimed and handed back
# moves in the heap, and a named queue would then run jobs added together out of order.
# Finding each queue's true first job needs that queue's jobs in (priority, run_at, id)
# order. Node's indexes cannot give it: jobs_main_index only carries job_queue_id as an
# included column, so every lookup would read the whole group of tied jobs (an add_jobs
# batch shares one run_at), which is what made the old claim's cost grow with the backlog.
# The index is partial: jobs outside named queues (and locked or failed ones) never enter
# it, so they pay nothing; jobs in named queues pay one index entry, Node's workers
# included. Dropping it is safe (the claim keeps its order, only slower); the ledger row
# keeps it from coming back.
_QUEUE_ORDER_STEP = ExtensionStep(
    id="0001_jobs_queue_order_index",
    requires=20,
    sql=f"""
create index if not exists {QUEUE_ORDER_INDEX}
  on {{schema}}._private_jobs using btree (job_queue_id, priority, run_at, id)
  where is_available = true and job_queue_id is not null;
""",
)


# Why a table Node does not have. Node's only cure for a worker that died holding jobs is
# the four-hour lock expiry. Our workers write a row here when they start, refresh it while
# they live and delete it when they stop cleanly, so a row whose heartbeat is too old names
# a dead worker, and its jobs can be handed back within minutes. It lives beside Node's
# tables, in the same schema, so that the schema's grants and lifetime cover it; Node's
# workers and migrations never look at it, and the sweeper only touches jobs locked by a
# worker with a row here, so jobs locked by Node workers are never recovered by us. Each row
# carries the worker's own thresholds: a sweep from the CLI, which has no options, judges
# each worker by what it declared. Row-level security is on, as on Node's private tables.
_WORKER_REGISTRY_STEP = ExtensionStep(
    id="0002_worker_registry",
    requires=20,
    sql=f"""
create table if not exists {{schema}}.{WORKER_REGISTRY_TABLE} (
  worker_id text primary key,
  hostname text not null,
  pid integer not null,
  library_version text not null,
  started_at timestamptz not null default now(),
  last_heartbeat_at timestamptz not null default now(),
  heartbeat_interval interval not null,
  stale_after interval not null,
  long_running_stale_after interval not null,
  recovery_delay interval not null,
  running_job_ids bigint[] not null default '{{}}'
);
alter table {{schema}}.{WORKER_REGISTRY_TABLE} enable row level security;
""",
)

EXTENSION_STEPS: tuple[ExtensionStep, ...] = (_QUEUE_ORDER_STEP, _WORKER_REGISTRY_STEP)
"""Our own schema objects, in the order they are applied."""
