"""Operator queries at depth: list_jobs and stats over a million jobs, on default settings.

Run ``python -m tests.benchmarks.ops_queries [--jobs N]``. It starts a throwaway PostgreSQL
(:mod:`graphile_worker.embedded`, stock settings), queues ``N`` jobs with ``add_jobs`` in
batches, puts some in each state with plain SQL (locked, permanently failed, retrying,
scheduled), vacuums and analyses once (what autovacuum does on its own sooner or later),
and prints the median and the worst of several timed calls of each read. Figures only: it
never fails on a slow result.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import anyio
import psycopg

from graphile_worker import JobSpec, WorkerUtils
from graphile_worker.embedded import TemporaryCluster

TASKS = tuple(f"task_{number}" for number in range(10))
QUEUES = tuple(f"queue_{number}" for number in range(100))
BATCH = 5_000
RUNS = 7


def _spec(number: int) -> JobSpec | None:
    """A tenth of the jobs in a named queue, a tenth in the future, the rest plain."""
    if number % 10 == 1:
        return JobSpec(queue_name=QUEUES[number % len(QUEUES)])
    if number % 10 == 2:
        return JobSpec(run_at=datetime.now(timezone.utc) + timedelta(days=1))
    return None


async def _fill(utils: WorkerUtils, jobs: int) -> None:
    started = time.perf_counter()
    for first in range(0, jobs, BATCH):
        await utils.add_jobs(
            [
                (TASKS[number % len(TASKS)], {"n": number}, _spec(number))
                for number in range(first, min(first + BATCH, jobs))
            ]
        )
    elapsed = time.perf_counter() - started
    print(f"queued {jobs:,} jobs in {elapsed:.1f} s ({jobs / elapsed:,.0f} jobs/s)")


def _shape(url: str) -> None:
    """Put a few jobs in each state, as a busy queue would have them, then vacuum."""
    with psycopg.connect(url, autocommit=True) as connection:
        jobs = "graphile_worker._private_jobs"
        connection.execute(
            f"update {jobs} set locked_at = now(), locked_by = 'worker-' || (id % 4),"
            " attempts = 1 where id % 1000 = 3"
        )
        connection.execute(
            f"update {jobs} set attempts = max_attempts, last_error = 'boom' where id % 200 = 7"
        )
        connection.execute(
            f"update {jobs} set attempts = 2, last_error = 'oops' where id % 200 = 9"
        )
        started = time.perf_counter()
        connection.execute("vacuum analyze graphile_worker._private_jobs")
        print(f"vacuum analyze: {time.perf_counter() - started:.1f} s")


async def _time(label: str, call: Callable[[], Awaitable[object]]) -> None:
    await call()  # warm the cache and the prepared statement
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        await call()
        timings.append((time.perf_counter() - started) * 1000)
    print(f"{label:<44} median {statistics.median(timings):7.1f} ms   max {max(timings):7.1f} ms")


async def _measure(url: str, jobs: int) -> None:
    async with await WorkerUtils.connect(url, driver="asyncpg") as utils:
        await utils.migrate()
        await _fill(utils, jobs)
        _shape(url)
        first = await utils.list_jobs()
        assert first.next_after is not None
        deep_after = first.jobs[-1].id - jobs + jobs // 100  # near the oldest end
        await _time("list_jobs() first page (100)", utils.list_jobs)
        await _time("list_jobs(state=ready, task=...) first page", _ready_page(utils))
        await _time("list_jobs(state=failed) first page", _failed_page(utils))
        await _time("list_jobs(queue=..., state=locked)", _locked_queue_page(utils))
        await _time(f"list_jobs(after={deep_after}) deep page", _deep_page(utils, deep_after))
        await _time("stats()", utils.stats)
        await _time("queues()", utils.queues)
        await _time("lock_holders()", utils.lock_holders)
        stats = await utils.stats()
        print(f"totals: {stats.total}")


def _ready_page(utils: WorkerUtils) -> Callable[[], Awaitable[object]]:
    return lambda: utils.list_jobs(state="ready", task=TASKS[3])


def _failed_page(utils: WorkerUtils) -> Callable[[], Awaitable[object]]:
    return lambda: utils.list_jobs(state="failed")


def _locked_queue_page(utils: WorkerUtils) -> Callable[[], Awaitable[object]]:
    return lambda: utils.list_jobs(queue=QUEUES[1], state="locked")


def _deep_page(utils: WorkerUtils, after: int) -> Callable[[], Awaitable[object]]:
    return lambda: utils.list_jobs(after=after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    arguments = parser.parse_args()
    with TemporaryCluster() as cluster:
        url = cluster.create_database("ops_queries")
        anyio.run(_measure, url, arguments.jobs)


if __name__ == "__main__":
    main()
