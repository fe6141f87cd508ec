"""Figure 3: the raw-SQL limit, a bare asyncpg client draining the queue with no worker code.

Each loop claims up to 500 jobs with a statement of the same shape as the worker's claim
(``sql/worker.py``: the task lookup, the named-queue conditions with their
``FOR UPDATE SKIP LOCKED``, the one-job-per-queue pick, the queue locking update, and the
update that locks the jobs and returns their columns), then deletes the claimed ids with
the worker's completion statement. Nothing else: no payload decoding, no task call, no
bookkeeping. The SQL is written out here on purpose, as a fixed reference that does not
move when the library's statements do.

Two connections loop side by side (:data:`CONNECTIONS`): a worker with a local queue keeps
one claim and one completion in flight at once, so one serial loop would understate what
the database allows it, while more loops only add lock contention on a two-core machine
(measured: see BENCHMARKS.md). The figure is jobs divided by the time from the first
claim to the last delete.
"""

from __future__ import annotations

import time

import anyio

from .workload import TASK

CONNECTIONS = 2
BATCH = 500

CLAIM = """
with known_tasks as (
  select tasks.id, tasks.identifier
  from graphile_worker._private_tasks as tasks
  where tasks.identifier = any($1::text[])
),
candidates as (
  select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at
  from graphile_worker._private_jobs as jobs
  where jobs.is_available = true
    and jobs.run_at <= now()
    and jobs.task_id in (select known_tasks.id from known_tasks)
    and (
      jobs.job_queue_id is null
      or jobs.job_queue_id in (
        select queues.id from graphile_worker._private_job_queues as queues
        where queues.is_available = true
        for update skip locked
      )
    )
  order by jobs.priority, jobs.run_at, jobs.id
  limit $2
  for update skip locked
),
chosen as (
  select distinct on (
      candidates.job_queue_id,
      case when candidates.job_queue_id is null then candidates.id end
    )
    candidates.id, candidates.job_queue_id
  from candidates
  order by
    candidates.job_queue_id,
    case when candidates.job_queue_id is null then candidates.id end,
    candidates.priority, candidates.run_at, candidates.id
),
locked_queues as (
  update graphile_worker._private_job_queues as queues
  set locked_by = $3, locked_at = now()
  from chosen
  where queues.id = chosen.job_queue_id
  returning queues.id, queues.queue_name
)
update graphile_worker._private_jobs as jobs
set attempts = jobs.attempts + 1, locked_by = $3, locked_at = now()
from chosen
where jobs.id = chosen.id
returning jobs.*,
  (select known_tasks.identifier from known_tasks where known_tasks.id = jobs.task_id)
    as task_identifier,
  (select locked_queues.queue_name from locked_queues where locked_queues.id = jobs.job_queue_id)
    as queue_name
"""

DELETE = """
with done as (
  delete from graphile_worker._private_jobs as jobs
  where jobs.id = any($1::bigint[])
  returning jobs.id, jobs.job_queue_id
),
unlocked_queues as (
  update graphile_worker._private_job_queues as queues
  set locked_by = null, locked_at = null
  from done
  where queues.id = done.job_queue_id and queues.locked_by = $2
)
select done.id from done
"""


async def _loop(url: str, worker_id: str, counts: list[int], index: int) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        claim = await connection.prepare(CLAIM)
        delete = await connection.prepare(DELETE)
        while True:
            rows = await claim.fetch([TASK], BATCH, worker_id)
            if not rows:
                return
            deleted = await delete.fetch([row["id"] for row in rows], worker_id)
            counts[index] += len(deleted)
    finally:
        await connection.close()


async def _drain(url: str, connections: int) -> tuple[int, float]:
    counts = [0] * connections
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for index in range(connections):
            group.start_soon(_loop, url, f"raw_{index}", counts, index)
    return sum(counts), time.perf_counter() - started


def raw_drain(url: str, connections: int = CONNECTIONS) -> tuple[int, float]:
    """Drain the queue with ``connections`` bare loops; returns (jobs deleted, seconds).

    The seconds include opening the connections and preparing the two statements (a
    few milliseconds), the only set-up a bare client has.
    """
    return anyio.run(_drain, url, connections, backend="asyncio")
