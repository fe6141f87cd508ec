"""SQL the cron scheduler runs against ``_private_known_crontabs``, and what the CLI reads.

The table (Node migration 000008, renamed in 000016) holds one row per cron identifier:
``known_since`` (when a scheduler first saw it) and ``last_execution`` (the latest minute
a job was scheduled for). It is the only coordination between schedulers, Node's and ours:

* a scheduler that starts registers the identifiers it has not seen before, with
  ``known_since`` = its start time; identifiers it already knew may be backfilled from
  ``last_execution`` (or ``known_since``), new ones never are;
* scheduling a minute is one statement that moves ``last_execution`` forward only where it
  is older than that minute, and adds a job only for the rows it moved. Two schedulers
  racing for the same minute serialise on the row: the second sees the new value and adds
  nothing. A scheduler catching up on a minute older than ``last_execution`` adds nothing
  either, so a minute is never scheduled twice.

The statement mirrors Node graphile-worker 0.18.0's ``scheduleCronJobs`` (``cron.ts``): the
same conflict clause and the same ``add_job`` call per job, so Node and Python schedulers
can share one table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..inspection import KnownCrontab
from ..spec import JSON
from . import render
from ._statement import Operation, Row, Statement

__all__ = [
    "CronJobSpec",
    "KnownCrontab",
    "bind_known_crontabs",
    "bind_register_crontabs",
    "bind_schedule_cron_jobs",
    "decode_known_crontabs",
    "decode_scheduled",
    "known_crontabs",
]

KNOWN_CRONTABS = """
select known.identifier, known.known_since, known.last_execution
from {schema}._private_known_crontabs as known
order by known.identifier
"""

# Node registers unknown identifiers with known_since = the scheduler's start time, and
# never overwrites a row another scheduler registered first.
REGISTER_CRONTABS = """
insert into {schema}._private_known_crontabs as known (identifier, known_since)
select entries.identifier, CAST(:start AS timestamptz)
from unnest(CAST(:identifiers AS text[])) as entries (identifier)
on conflict do nothing
"""

# Node's scheduleCronJobs. The "locks" CTE is the whole race protection: the upsert only
# touches a row whose last_execution is older than this minute, and a concurrent scheduler
# doing the same waits for our row lock, then re-checks the condition against our value.
# The job id is returned so the scheduler can say which jobs it added itself.
SCHEDULE_CRON_JOBS = """
with specs as (
  select
    entries.position,
    entries.spec ->> 'identifier' as identifier,
    entries.spec ->> 'task' as task,
    entries.spec -> 'payload' as payload,
    entries.spec ->> 'queue_name' as queue_name,
    CAST(entries.spec ->> 'run_at' AS timestamptz) as run_at,
    CAST(entries.spec ->> 'max_attempts' AS smallint) as max_attempts,
    CAST(entries.spec ->> 'priority' AS smallint) as priority,
    entries.spec ->> 'job_key' as job_key,
    entries.spec ->> 'job_key_mode' as job_key_mode
  from json_array_elements(CAST(CAST(:specs AS text) AS json))
    with ordinality as entries (spec, position)
),
locks as (
  insert into {schema}._private_known_crontabs as known
    (identifier, known_since, last_execution)
  select specs.identifier, CAST(:minute AS timestamptz), CAST(:minute AS timestamptz)
  from specs
  on conflict (identifier) do update
  set last_execution = excluded.last_execution
  where known.last_execution is null or known.last_execution < excluded.last_execution
  returning known.identifier
)
select
  specs.identifier,
  ({schema}.add_job(
    specs.task,
    specs.payload,
    specs.queue_name,
    specs.run_at,
    specs.max_attempts,
    specs.job_key,
    specs.priority,
    null,
    specs.job_key_mode
  )).id as job_id
from specs
join locks on locks.identifier = specs.identifier
order by specs.position
"""


@dataclass(frozen=True, slots=True)
class CronJobSpec:
    """One job a cron entry asks for at one minute; the identifier is the race key.

    Attributes:
        identifier: The cron entry's identifier (``?id=``, else its task identifier).
        task_identifier: The task the job runs.
        payload: The whole payload, ``_cron`` included.
        run_at: The minute, as Node's ``Date.toISOString()`` text.
    """

    identifier: str
    task_identifier: str
    payload: dict[str, JSON]
    run_at: str
    queue_name: str | None = None
    max_attempts: int | None = None
    priority: int | None = None
    job_key: str | None = None
    job_key_mode: str | None = None

    def to_json(self) -> dict[str, JSON]:
        """The spec as the statement's ``specs`` array element; ``None`` fields are dropped."""
        fields: dict[str, JSON] = {
            "identifier": self.identifier,
            "task": self.task_identifier,
            "payload": self.payload,
            "run_at": self.run_at,
            "queue_name": self.queue_name,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
            "job_key": self.job_key,
            "job_key_mode": self.job_key_mode,
        }
        return {key: value for key, value in fields.items() if value is not None}


def bind_known_crontabs(schema: str) -> Statement:
    """Every known cron identifier with ``known_since`` and ``last_execution``."""
    return Statement("fetch", render(KNOWN_CRONTABS, schema))


def known_crontabs(schema: str) -> Operation[list[KnownCrontab]]:
    """Every known cron identifier, by identifier (what ``WorkerUtils.known_crontabs`` runs)."""
    rows: list[Row] = yield bind_known_crontabs(schema)
    return list(decode_known_crontabs(rows).values())


def decode_known_crontabs(rows: Iterable[Row]) -> dict[str, KnownCrontab]:
    """Rows of :func:`bind_known_crontabs`, by identifier."""
    return {
        row["identifier"]: KnownCrontab(
            identifier=row["identifier"],
            known_since=row["known_since"],
            last_execution=row["last_execution"],
        )
        for row in rows
    }


def bind_register_crontabs(
    schema: str, *, identifiers: Sequence[str], start: datetime
) -> Statement:
    """Record ``identifiers`` as known since ``start``; rows that exist are left alone."""
    return Statement(
        "execute",
        render(REGISTER_CRONTABS, schema),
        {"identifiers": list(identifiers), "start": start},
    )


def bind_schedule_cron_jobs(
    schema: str, *, minute: datetime, jobs: Sequence[CronJobSpec]
) -> Statement:
    """Claim ``minute`` for each job's identifier and add the jobs whose claim succeeded.

    ``jobs`` must have distinct identifiers (a crontab guarantees it). Returns one row per
    job added: ``identifier`` and ``job_id``.
    """
    specs = json.dumps(
        [job.to_json() for job in jobs], ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )
    return Statement(
        "fetch", render(SCHEDULE_CRON_JOBS, schema), {"specs": specs, "minute": minute}
    )


def decode_scheduled(rows: Iterable[Row]) -> dict[str, int]:
    """Rows of :func:`bind_schedule_cron_jobs`: job id by cron identifier."""
    return {row["identifier"]: int(row["job_id"]) for row in rows}
