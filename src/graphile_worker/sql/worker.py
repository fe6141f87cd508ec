"""SQL the worker runs: claim jobs, record how they ended, release them, find the next one due.

Each query works on many jobs at once (``get_jobs`` takes a ``limit``; completing, failing
and releasing take lists), so a local queue or a completion batcher can call the same
statements with bigger batches. Behaviour follows Node graphile-worker 0.18.0's
``getJobs``/``completeJobs``/``failJobs``/``returnJobs``/``resetLockedAt`` so that Node and
Python workers can share one queue:

* a claim takes available jobs whose ``run_at`` has come, lower ``priority`` first, then
  earlier ``run_at``, skipping rows other workers hold (``FOR UPDATE SKIP LOCKED``), by
  walking an index and stopping after the batch, so its cost does not grow with the
  backlog; a job in a named queue is claimable only while the queue is unlocked, claiming
  it locks the queue, at most one job per named queue is claimed at once (queues stay
  serial however large the batch), and it is always the queue's first job by
  ``(priority, run_at, id)``, so jobs added together run in the order they were added;
* claiming increments ``attempts``; completing deletes the job; failing records the error,
  pushes ``run_at`` back by ``exp(least(attempts, 10))`` seconds and keeps the job (it stops
  being available once ``attempts`` reaches ``max_attempts``); every path unlocks the queue.

Failing and releasing touch only rows this worker still locks (``locked_by``), so a job that
was force-unlocked and re-claimed elsewhere keeps the other worker's record. Completing
deletes the job whoever holds it, as Node does: its handler did succeed, and leaving it
behind would run its side effects again.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..spec import JSON, Job
from . import render
from ._job_reader import job_reader
from ._statement import Row, Statement

__all__ = [
    "CLAIM_COLUMNS",
    "FailureSpec",
    "Released",
    "bind_complete_jobs",
    "bind_fail_jobs",
    "bind_get_jobs",
    "bind_next_due",
    "bind_release_jobs",
    "bind_release_orphans",
    "bind_reset_locked",
    "decode_claimed",
    "decode_jobs",
    "decode_released",
    "get_jobs_sql",
    "next_due_sql",
]

_TABLE_COLUMNS = (
    "id",
    "job_queue_id",
    "task_id",
    "payload",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "last_error",
    "created_at",
    "updated_at",
    "key",
    "locked_at",
    "locked_by",
    "revision",
    "flags",
    "is_available",
)
_JOB_COLUMNS = ", ".join(f"jobs.{column}" for column in _TABLE_COLUMNS)

CLAIM_COLUMNS: tuple[str, ...] = (*_TABLE_COLUMNS, "task_identifier", "queue_name")
"""The columns of a claim's rows, in order: what :func:`decode_claimed` expects."""

# Task identifiers are resolved to ids inside each statement rather than cached: a cached id
# goes stale when the cleanup task GC_TASK_IDENTIFIERS deletes the row while no job uses it,
# and a job added afterwards gets a new id the worker would never claim. The lookup is one
# probe of a unique index per identifier.
_TASKS = """
known_tasks as (
  select tasks.id, tasks.identifier
  from {schema}._private_tasks as tasks
  where tasks.identifier = any(CAST(:task_identifiers AS text[]))
)"""

_FLAGS_CLAUSE = "and (jobs.flags ?| CAST(:forbidden_flags AS text[])) is not true"

# Node's queue strategy 2: lock the available queues up front (skipping those another
# claim is locking right now), then walk jobs_main_index in (priority, run_at) order and stop
# after ``limit`` rows. No sort of the runnable set: the walk's cost is the batch, whatever
# the backlog.
#
# The index meets rows with equal (priority, run_at) in heap order (PostgreSQL 12+ btrees
# break ties by heap position), which is not the order they were added once a row has been
# rewritten (a job claimed and handed back moves). Outside named queues that is harmless;
# inside one it would run jobs added together out of order. So for each queue the walk
# met, the job actually taken is the queue's first by (priority, run_at, id), found by one
# probe of our jobs_queue_order index (see migrations/catalog.py; without it the probe still
# answers correctly, only slower).
_CLAIM = """
with {tasks},
candidates as (
  select jobs.id, jobs.job_queue_id
  from {{schema}}._private_jobs as jobs
  where jobs.is_available = true
    and jobs.run_at <= {now}
    and jobs.task_id = any(array(select known_tasks.id from known_tasks))
    and (
      jobs.job_queue_id is null
      or jobs.job_queue_id in (
        select queues.id
        from {{schema}}._private_job_queues as queues
        where queues.is_available = true
        for update skip locked
      )
    )
    {flags}
  order by jobs.priority, jobs.run_at
  limit CAST(:limit AS integer)
  for update skip locked
),
-- Two jobs of one named queue must never run together, and the one that runs is the
-- queue's first. The other candidates stay unlocked and wait for their queue.
queue_heads as (
  select head.id
  from (
    select distinct candidates.job_queue_id
    from candidates
    where candidates.job_queue_id is not null
  ) as walked
  cross join lateral (
    select jobs.id
    from {{schema}}._private_jobs as jobs
    where jobs.job_queue_id = walked.job_queue_id
      and jobs.is_available = true
      and jobs.run_at <= {now}
      and jobs.task_id = any(array(select known_tasks.id from known_tasks))
      {flags}
    order by jobs.priority, jobs.run_at, jobs.id
    limit 1
  ) as head
),
-- A head some other statement holds (an add_job replacing it, say) is not waited for: its
-- queue simply sits this claim out.
locked_heads as (
  select jobs.id, jobs.job_queue_id
  from {{schema}}._private_jobs as jobs
  where jobs.id in (select queue_heads.id from queue_heads)
  for update skip locked
),
chosen as (
  select candidates.id, candidates.job_queue_id
  from candidates
  where candidates.job_queue_id is null
  union all
  select locked_heads.id, locked_heads.job_queue_id
  from locked_heads
),
locked_queues as (
  update {{schema}}._private_job_queues as queues
  set locked_by = CAST(:worker_id AS text), locked_at = {now}
  from chosen
  where queues.id = chosen.job_queue_id
  returning queues.id, queues.queue_name
),
claimed as (
  update {{schema}}._private_jobs as jobs
  set attempts = jobs.attempts + 1, locked_by = CAST(:worker_id AS text), locked_at = {now}
  from chosen
  where jobs.id = chosen.id
  returning {columns},
    (select known_tasks.identifier from known_tasks where known_tasks.id = jobs.task_id)
      as task_identifier,
    (select locked_queues.queue_name from locked_queues
      where locked_queues.id = jobs.job_queue_id) as queue_name
)
-- In the order they should run: a local queue hands them out in this order.
select * from claimed order by claimed.priority, claimed.run_at, claimed.id
"""

# Seconds (by the database's clock, or the worker's with use_local_time) until the earliest
# claimable job in the future. Jobs in locked queues count too: waking for one costs an
# empty claim, while ignoring them would mean polling for them.
#
# jobs_main_index leads with priority, so "the smallest run_at" is not its first entry: a
# plain min() would read every available job. Instead step through the distinct priorities
# (one index probe each, and a queue uses few) and take the first future run_at of each.
_NEXT_DUE = """
with recursive {tasks},
priorities as (
  (
    select jobs.priority
    from {{schema}}._private_jobs as jobs
    where jobs.is_available = true
    order by jobs.priority
    limit 1
  )
  union all
  select (
    select jobs.priority
    from {{schema}}._private_jobs as jobs
    where jobs.is_available = true and jobs.priority > priorities.priority
    order by jobs.priority
    limit 1
  )
  from priorities
  where priorities.priority is not null
)
select CAST(extract(epoch from min(next_jobs.run_at) - {now}) AS double precision) as seconds
from priorities
cross join lateral (
  select jobs.run_at
  from {{schema}}._private_jobs as jobs
  where jobs.is_available = true
    and jobs.priority = priorities.priority
    and jobs.run_at > {now}
    and jobs.task_id = any(array(select known_tasks.id from known_tasks))
    {flags}
  order by jobs.run_at
  limit 1
) as next_jobs
"""


def _unlock_queues(finished: str) -> str:
    """A CTE unlocking the queues of the jobs in CTE ``finished``, if this worker holds them."""
    return f"""
unlocked_queues as (
  update {{schema}}._private_job_queues as queues
  set locked_by = null, locked_at = null
  from {finished}
  where queues.id = {finished}.job_queue_id and queues.locked_by = CAST(:worker_id AS text)
)"""


COMPLETE_JOBS = f"""
with done as (
  delete from {{schema}}._private_jobs as jobs
  where jobs.id = any(CAST(:job_ids AS bigint[]))
  returning jobs.id, jobs.job_queue_id
),
{_unlock_queues("done")}
select done.id from done
"""

# Node's failJobs: the back-off counts from now or from a run_at still in the future, and a
# batch job that failed only in part keeps just the failed items as its payload. A spec
# without "payload" leaves the payload alone (el->'payload' is then SQL NULL).
FAIL_JOBS = f"""
with specs as (
  select
    CAST(spec ->> 'id' AS bigint) as id,
    spec ->> 'message' as message,
    spec -> 'payload' as payload,
    CAST(spec ->> 'delay' AS double precision) as delay,
    spec ->> 'permanent' = 'true' as permanent
  from json_array_elements(CAST(CAST(:specs AS text) AS json)) as specs(spec)
),
failed as (
  update {{schema}}._private_jobs as jobs
  set
    last_error = specs.message,
    attempts = case when specs.permanent
      then greatest(jobs.attempts, jobs.max_attempts) else jobs.attempts end,
    run_at = case when specs.permanent then jobs.run_at
      else greatest(now(), jobs.run_at) + least(
        coalesce(specs.delay, exp(least(jobs.attempts, 10))), 31536000
      ) * interval '1 second' end,
    locked_by = null,
    locked_at = null,
    payload = coalesce(specs.payload, jobs.payload)
  from specs
  where jobs.id = specs.id and jobs.locked_by = CAST(:worker_id AS text)
  returning jobs.id, jobs.job_queue_id, jobs.run_at, jobs.attempts, jobs.max_attempts
),
{_unlock_queues("failed")}
select failed.id, failed.run_at, failed.attempts, failed.max_attempts from failed
"""

# Node's returnJobs gives back the attempt a claim took and leaves run_at alone, which is
# what a delay of 0 does (jobs claimed but never started keep their place in line). A job
# cut short by a shutdown is also held back for a while, so that it does not restart at
# once on the next worker (which may be shutting down too, during a rolling deploy).
RELEASE_JOBS = f"""
with released as (
  update {{schema}}._private_jobs as jobs
  set
    attempts = greatest(0, jobs.attempts - 1),
    locked_by = null,
    locked_at = null,
    run_at = greatest(
      jobs.run_at,
      case when CAST(:delay AS double precision) > 0
        then now() + CAST(:delay AS double precision) * interval '1 second'
      end
    )
  where jobs.id = any(CAST(:job_ids AS bigint[]))
    and jobs.locked_by = CAST(:worker_id AS text)
  returning jobs.id, jobs.job_queue_id, jobs.run_at, jobs.attempts
),
{_unlock_queues("released")}
select released.id, released.run_at, released.attempts from released
"""

# A claim whose reply was lost (the connection broke after the server committed it) leaves
# jobs locked by a live worker that never saw them; no sweep would free them, since the
# worker heartbeats. After such a failure the worker hands back every job locked in its name
# except those it knows about. They never started, so their attempt is refunded.
RELEASE_ORPHANS = f"""
with orphans as (
  update {{schema}}._private_jobs as jobs
  set attempts = greatest(0, jobs.attempts - 1), locked_by = null, locked_at = null
  where jobs.locked_by = CAST(:worker_id AS text)
    and jobs.id <> all(CAST(:known AS bigint[]))
  returning jobs.id, jobs.job_queue_id
),
{_unlock_queues("orphans")}
select orphans.id from orphans
"""

# Node's resetLockedAt: locks older than four hours belong to workers that died; free them.
_RESET_LOCKED = """
with stale_jobs as (
  update {{schema}}._private_jobs as jobs
  set locked_at = null, locked_by = null, run_at = greatest(jobs.run_at, {now})
  where jobs.locked_at < {now} - interval '4 hours'
)
update {{schema}}._private_job_queues as queues
set locked_at = null, locked_by = null
where queues.locked_at < {now} - interval '4 hours'
"""

_DATABASE_NOW = "now()"
_LOCAL_NOW = "CAST(:now AS timestamptz)"


def _now(use_local_time: bool) -> str:
    return _LOCAL_NOW if use_local_time else _DATABASE_NOW


@lru_cache(maxsize=8)
def get_jobs_sql(has_flags: bool, use_local_time: bool) -> str:
    """The claim statement (still with ``{schema}``), one text per variant.

    Node also builds one text per variant rather than testing ``:forbidden_flags is null``
    in SQL: a prepared statement's generic plan then never carries a dead filter.
    """
    return _CLAIM.format(
        tasks=_TASKS,
        now=_now(use_local_time),
        flags=_FLAGS_CLAUSE if has_flags else "",
        columns=_JOB_COLUMNS,
    )


@lru_cache(maxsize=8)
def next_due_sql(has_flags: bool, use_local_time: bool) -> str:
    """The "seconds until the next claimable job" statement (still with ``{schema}``)."""
    return _NEXT_DUE.format(
        tasks=_TASKS, now=_now(use_local_time), flags=_FLAGS_CLAUSE if has_flags else ""
    )


def _claim_params(
    task_identifiers: Sequence[str],
    forbidden_flags: Collection[str],
    now: datetime | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"task_identifiers": list(task_identifiers)}
    if forbidden_flags:
        params["forbidden_flags"] = sorted(forbidden_flags)
    if now is not None:
        params["now"] = now
    return params


def bind_get_jobs(
    schema: str,
    *,
    worker_id: str,
    task_identifiers: Sequence[str],
    limit: int,
    forbidden_flags: Collection[str] = (),
    now: datetime | None = None,
) -> Statement:
    """Claim up to ``limit`` jobs for ``worker_id`` in one statement.

    Args:
        task_identifiers: Only jobs for these tasks are claimed; others stay untouched.
        forbidden_flags: Jobs carrying any of these flags are skipped.
        now: The worker's clock (``use_local_time``); ``None`` uses the database's ``now()``.
    """
    sql = render(get_jobs_sql(bool(forbidden_flags), now is not None), schema)
    params = _claim_params(task_identifiers, forbidden_flags, now)
    params["worker_id"] = worker_id
    params["limit"] = limit
    return Statement("fetch", sql, params)


def bind_next_due(
    schema: str,
    *,
    task_identifiers: Sequence[str],
    forbidden_flags: Collection[str] = (),
    now: datetime | None = None,
) -> Statement:
    """Seconds until the earliest future job this worker could claim (``None``: no such job)."""
    sql = render(next_due_sql(bool(forbidden_flags), now is not None), schema)
    return Statement("fetchval", sql, _claim_params(task_identifiers, forbidden_flags, now))


def bind_complete_jobs(schema: str, *, worker_id: str, job_ids: Iterable[int]) -> Statement:
    """Delete succeeded jobs and unlock the queues this worker holds; returns the ids deleted."""
    return Statement(
        "fetch",
        render(COMPLETE_JOBS, schema),
        {"job_ids": list(job_ids), "worker_id": worker_id},
    )


@dataclass(frozen=True, slots=True)
class FailureSpec:
    """One failed attempt to record.

    Attributes:
        job_id: The job, which this worker must hold.
        message: Becomes ``last_error``.
        replacement_payload: For a batch job that failed in part, the items to retry
            (Node's "replacement payload"); ``None`` keeps the payload.
        delay: Seconds before the next attempt (the task's back-off, at most a year);
            ``None`` is Node's ``exp(min(attempts, 10))``.
        permanent: Fail it for good (``attempts = max_attempts``, ``run_at`` kept),
            whatever is left.
    """

    job_id: int
    message: str
    replacement_payload: list[JSON] | None = None
    delay: float | None = None
    permanent: bool = False


def _failure_json(spec: FailureSpec) -> dict[str, object]:
    # PostgreSQL text cannot hold NUL; a message quoting binary data must still be stored.
    entry: dict[str, object] = {"id": spec.job_id, "message": spec.message.replace("\x00", "\\0")}
    if spec.replacement_payload is not None:
        entry["payload"] = spec.replacement_payload
    if spec.delay is not None:
        entry["delay"] = spec.delay
    if spec.permanent:
        entry["permanent"] = True
    return entry


def bind_fail_jobs(schema: str, *, worker_id: str, failures: Iterable[FailureSpec]) -> Statement:
    """Record failed attempts (error, back-off, payload) and unlock jobs and queues.

    Returns one row per job recorded: ``id``, the new ``run_at``, ``attempts`` and
    ``max_attempts`` (``attempts >= max_attempts`` means it failed for good).
    """
    specs = json.dumps([_failure_json(spec) for spec in failures], separators=(",", ":"))
    return Statement("fetch", render(FAIL_JOBS, schema), {"specs": specs, "worker_id": worker_id})


def bind_release_jobs(
    schema: str, *, worker_id: str, job_ids: Iterable[int], delay: float
) -> Statement:
    """Give back jobs whose run was interrupted, refunding the attempt, runnable after ``delay``."""
    return Statement(
        "fetch",
        render(RELEASE_JOBS, schema),
        {"job_ids": list(job_ids), "worker_id": worker_id, "delay": float(delay)},
    )


def bind_release_orphans(schema: str, *, worker_id: str, known: Iterable[int]) -> Statement:
    """Hand back jobs locked by this worker other than ``known``; returns their ids."""
    return Statement(
        "fetch",
        render(RELEASE_ORPHANS, schema),
        {"worker_id": worker_id, "known": sorted(known)},
    )


def bind_reset_locked(schema: str, *, now: datetime | None = None) -> Statement:
    """Unlock jobs and queues whose lock is more than four hours old (dead workers)."""
    sql = render(_RESET_LOCKED.format(now=_now(now is not None)), schema)
    return Statement("execute", sql, {} if now is None else {"now": now})


def decode_jobs(rows: Iterable[Row]) -> list[Job]:
    """Claimed rows as :class:`~graphile_worker.spec.Job` values, in claim order (the claim
    statement sorts them, in C, rather than us in Python for every batch)."""
    return [Job.from_row(row) for row in rows]


_read_claimed = job_reader(CLAIM_COLUMNS)


def decode_claimed(rows: Iterable[Sequence[Any]]) -> list[Job]:
    """Like :func:`decode_jobs`, for rows of bare values in :data:`CLAIM_COLUMNS` order
    (what :func:`~graphile_worker.sql._statement.fetch_values` returns); the worker's path,
    since it skips a dict per row and the dataclass ``__init__`` per job."""
    return [_read_claimed(row) for row in rows]


@dataclass(frozen=True, slots=True)
class Released:
    """A job handed back by :func:`bind_release_jobs` or recorded by :func:`bind_fail_jobs`."""

    job_id: int
    run_at: datetime
    attempts: int
    max_attempts: int | None = None


def decode_released(rows: Iterable[Row]) -> dict[int, Released]:
    """Rows of a release or fail statement, by job id."""
    return {
        row["id"]: Released(
            job_id=row["id"],
            run_at=row["run_at"],
            attempts=row["attempts"],
            max_attempts=row.get("max_attempts"),
        )
        for row in rows
    }
