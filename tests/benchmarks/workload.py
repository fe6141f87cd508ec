"""The workload every figure shares: no-op jobs for one task, and how they are queued."""

from __future__ import annotations

import anyio

TASK = "bench_noop"
"""The task identifier of every benchmark job (``worker_tasks.bench_noop``)."""
CHUNK = 1000
"""Jobs per ``add_jobs`` call when queueing a workload: what an application queueing many
jobs would do, keeping each statement (one JSON document) to a modest size."""


def payload(number: int) -> dict[str, int]:
    """A small, distinct payload, as real jobs carry an id or two."""
    return {"n": number}


async def _enqueue(url: str, count: int, chunk: int) -> None:
    from graphile_worker import WorkerUtils

    async with await WorkerUtils.connect(url, driver="asyncpg") as utils:
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            await utils.add_jobs([(TASK, payload(number)) for number in range(start, stop)])


def enqueue(url: str, count: int, chunk: int = CHUNK) -> None:
    """Queue ``count`` no-op jobs (untimed set-up for the drain figures)."""
    anyio.run(_enqueue, url, count, chunk, backend="asyncio")
