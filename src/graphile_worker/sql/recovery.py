"""SQL for dead-worker recovery: the registry of live workers, and the sweep of dead ones.

A worker with recovery on keeps a row in ``_pyworker_workers`` (an extension step, see
:mod:`graphile_worker.migrations.catalog`): written when it starts, refreshed by every
heartbeat, deleted when it stops cleanly. A sweep finds rows whose heartbeat is older than
the worker's own ``stale_after`` and hands back the jobs and queues that worker still locks.
Only jobs whose ``locked_by`` names a registered worker are ever touched, so jobs held by
Node workers (which never register) are left to Node's four-hour lock expiry.

The sweep runs in one transaction, under a transaction-scoped advisory lock (so that it also
works through PgBouncer in transaction mode, and so that two sweepers never recover the
same worker twice), in these steps: take the lock, lock the stale workers' rows, lock their
jobs, decide each job (in Python: hooks may ask), write the decisions, unlock the queues
left without a locked job, forget the workers left without one. Finding a dead worker's
jobs reads ``_private_jobs`` by ``locked_by``, which no index covers; that scan only happens
when a stale worker exists.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from . import render
from ._statement import Statement

__all__ = [
    "LONG_RUNNING_FLAG",
    "WORKER_REGISTRY_TABLE",
    "bind_forget_workers",
    "bind_heartbeat",
    "bind_list_workers",
    "bind_recover_jobs",
    "bind_stale_jobs",
    "bind_stale_workers",
    "bind_sweep_lock",
    "bind_unlock_queues",
    "bind_unregister",
]

LONG_RUNNING_FLAG = "long-running"
"""A job carrying this flag is recovered only after its worker has been silent for the
worker's ``long_running_stale_after`` rather than ``stale_after``."""

WORKER_REGISTRY_TABLE = "_pyworker_workers"
"""Our table of running workers and their heartbeats (created by an extension step)."""

_WORKERS = "{schema}." + WORKER_REGISTRY_TABLE

# One statement registers a worker and refreshes its heartbeat: the upsert says whether the
# row had to be created, which on a later beat means a sweeper had given the worker up.
_HEARTBEAT = f"""
insert into {_WORKERS} as workers (
  worker_id, hostname, pid, library_version, heartbeat_interval, stale_after,
  long_running_stale_after, recovery_delay, running_job_ids
)
values (
  CAST(:worker_id AS text), CAST(:hostname AS text), CAST(:pid AS integer),
  CAST(:library_version AS text),
  CAST(:heartbeat_interval AS double precision) * interval '1 second',
  CAST(:stale_after AS double precision) * interval '1 second',
  CAST(:long_running_stale_after AS double precision) * interval '1 second',
  CAST(:recovery_delay AS double precision) * interval '1 second',
  CAST(:running_job_ids AS bigint[])
)
on conflict (worker_id) do update
  set last_heartbeat_at = now(), running_job_ids = excluded.running_job_ids
returning (workers.xmax = 0) as inserted
"""

# A worker that could not hand everything back (the database went away as it stopped) keeps
# its row, so that a sweep recovers what it still locks once its heartbeat is stale.
_UNREGISTER = f"""
delete from {_WORKERS} as workers
where workers.worker_id = CAST(:worker_id AS text)
  and not exists (
    select 1 from {{schema}}._private_jobs as jobs where jobs.locked_by = workers.worker_id
  )
  and not exists (
    select 1 from {{schema}}._private_job_queues as queues
    where queues.locked_by = workers.worker_id
  )
"""

_LIST_WORKERS = f"""
select
  workers.worker_id, workers.hostname, workers.pid, workers.library_version,
  workers.started_at, workers.last_heartbeat_at,
  extract(epoch from workers.heartbeat_interval)::float8 as heartbeat_interval,
  extract(epoch from workers.stale_after)::float8 as stale_after,
  extract(epoch from workers.long_running_stale_after)::float8 as long_running_stale_after,
  extract(epoch from workers.recovery_delay)::float8 as recovery_delay,
  cardinality(workers.running_job_ids) as running_jobs,
  coalesce(held.locked_jobs, 0) as locked_jobs,
  workers.last_heartbeat_at < now() - workers.stale_after as stale,
  now() as checked_at
from {_WORKERS} as workers
left join (
  select jobs.locked_by, count(*) as locked_jobs
  from {{schema}}._private_jobs as jobs
  where jobs.locked_by is not null
  group by jobs.locked_by
) as held on held.locked_by = workers.worker_id
order by workers.started_at, workers.worker_id
"""

_SWEEP_LOCK = "select pg_try_advisory_xact_lock(hashtextextended(:lock_name, 0))"

# Workers given up: silent for longer than they said they could be, or named by the caller
# (a supervisor that saw the process die needs no heartbeat to know it).
_STALE_WORKERS = f"""
select
  workers.worker_id, workers.last_heartbeat_at, workers.running_job_ids,
  workers.last_heartbeat_at < now() - workers.long_running_stale_after
    or workers.worker_id = any(CAST(:dead AS text[])) as past_long_threshold,
  extract(epoch from workers.recovery_delay)::float8 as recovery_delay
from {_WORKERS} as workers
where workers.last_heartbeat_at < now() - workers.stale_after
  or workers.worker_id = any(CAST(:dead AS text[]))
order by workers.worker_id
{{lock}}
"""

_STALE_JOBS = f"""
select
  jobs.id, jobs.locked_by, jobs.locked_at, tasks.identifier as task_identifier,
  queues.queue_name, jobs.attempts, jobs.max_attempts, jobs.last_error,
  coalesce(jobs.flags ? '{LONG_RUNNING_FLAG}', false) as long_running
from {{schema}}._private_jobs as jobs
join {{schema}}._private_tasks as tasks on tasks.id = jobs.task_id
left join {{schema}}._private_job_queues as queues on queues.id = jobs.job_queue_id
where jobs.locked_by = any(CAST(:worker_ids AS text[]))
order by jobs.id
{{lock}}
"""

# A recovered job keeps its place (run_at only moves forward, by the recovery delay); a
# failed one gets attempts = max_attempts, which is how Node marks a job failed for good.
_RECOVER_JOBS = """
with specs as (
  select
    CAST(spec ->> 'id' AS bigint) as id,
    spec ->> 'worker_id' as worker_id,
    spec ->> 'action' as action,
    CAST(spec ->> 'spend' AS boolean) as spend,
    CAST(spec ->> 'delay' AS double precision) as delay,
    spec ->> 'message' as message
  from json_array_elements(CAST(CAST(:specs AS text) AS json)) as specs(spec)
)
update {schema}._private_jobs as jobs
set
  locked_by = null,
  locked_at = null,
  attempts = case
    when specs.action = 'fail' then greatest(jobs.attempts, jobs.max_attempts)
    when specs.spend then jobs.attempts
    else greatest(0, jobs.attempts - 1)
  end,
  run_at = greatest(jobs.run_at, now() + specs.delay * interval '1 second'),
  last_error = specs.message
from specs
where jobs.id = specs.id and jobs.locked_by = specs.worker_id
returning jobs.id, jobs.run_at, jobs.attempts, jobs.max_attempts
"""

# A queue stays locked while its dead holder still locks one of its jobs (a long-running job
# not yet given up): the queue is serial, and that job may still be running somewhere.
_UNLOCK_QUEUES = """
update {schema}._private_job_queues as queues
set locked_by = null, locked_at = null
where queues.locked_by = any(CAST(:worker_ids AS text[]))
  and not exists (
    select 1 from {schema}._private_jobs as jobs
    where jobs.job_queue_id = queues.id and jobs.locked_by = queues.locked_by
  )
returning queues.queue_name
"""

_FORGET_WORKERS = f"""
delete from {_WORKERS} as workers
where workers.worker_id = any(CAST(:worker_ids AS text[]))
  and not exists (
    select 1 from {{schema}}._private_jobs as jobs where jobs.locked_by = workers.worker_id
  )
  and not exists (
    select 1 from {{schema}}._private_job_queues as queues
    where queues.locked_by = workers.worker_id
  )
returning workers.worker_id
"""


def bind_heartbeat(
    schema: str,
    *,
    worker_id: str,
    hostname: str,
    pid: int,
    library_version: str,
    heartbeat_interval: float,
    stale_after: float,
    long_running_stale_after: float,
    recovery_delay: float,
    running_job_ids: Iterable[int],
) -> Statement:
    """Register the worker or refresh its heartbeat; the value says whether it was created."""
    return Statement(
        "fetchval",
        render(_HEARTBEAT, schema),
        {
            "worker_id": worker_id,
            "hostname": hostname,
            "pid": pid,
            "library_version": library_version,
            "heartbeat_interval": float(heartbeat_interval),
            "stale_after": float(stale_after),
            "long_running_stale_after": float(long_running_stale_after),
            "recovery_delay": float(recovery_delay),
            "running_job_ids": list(running_job_ids),
        },
    )


def bind_unregister(schema: str, *, worker_id: str) -> Statement:
    """Forget a worker that stopped cleanly, unless it still locks a job or a queue."""
    return Statement("execute", render(_UNREGISTER, schema), {"worker_id": worker_id})


def bind_list_workers(schema: str) -> Statement:
    """Every registered worker, with how many jobs it locks and whether it is stale."""
    return Statement("fetch", render(_LIST_WORKERS, schema))


def bind_sweep_lock(schema: str) -> Statement:
    """Try the sweep's transaction-scoped advisory lock; the value is whether it was taken."""
    return Statement(
        "fetchval", _SWEEP_LOCK, {"lock_name": f"graphile_worker.recovery-sweep:{schema}"}
    )


def bind_stale_workers(schema: str, *, dead: Collection[str], lock: bool) -> Statement:
    """Workers to give up: stale ones and those in ``dead``; ``lock`` takes their rows."""
    sql = render(_STALE_WORKERS.replace("{lock}", "for update skip locked" if lock else ""), schema)
    return Statement("fetch", sql, {"dead": list(dead)})


def bind_stale_jobs(schema: str, *, worker_ids: Collection[str], lock: bool) -> Statement:
    """The jobs the given workers still lock; ``lock`` takes their rows."""
    sql = render(_STALE_JOBS.replace("{lock}", "for update of jobs" if lock else ""), schema)
    return Statement("fetch", sql, {"worker_ids": list(worker_ids)})


def bind_recover_jobs(schema: str, specs: Iterable[dict[str, Any]]) -> Statement:
    """Hand back or fail jobs; each spec has id, worker_id, action, spend, delay, message."""
    text = json.dumps(list(specs), separators=(",", ":"))
    return Statement("fetch", render(_RECOVER_JOBS, schema), {"specs": text})


def bind_unlock_queues(schema: str, *, worker_ids: Collection[str]) -> Statement:
    """Unlock the given workers' queues that no longer hold one of their jobs."""
    return Statement("fetch", render(_UNLOCK_QUEUES, schema), {"worker_ids": list(worker_ids)})


def bind_forget_workers(schema: str, *, worker_ids: Collection[str]) -> Statement:
    """Delete the given workers' rows once they lock nothing; returns the ids deleted."""
    return Statement("fetch", render(_FORGET_WORKERS, schema), {"worker_ids": list(worker_ids)})
