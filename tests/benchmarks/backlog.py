"""A worker draining a backlog it was kept from until it was ready: the depth and serial figures.

The drain figures start a worker on a full queue and time from its first job, which leaves
its start-up inside any CPU count taken from the outside. Here the backlog is queued
first, then :func:`claim_gate` takes an ``EXCLUSIVE`` lock on the jobs table, which lets
everything read it but no claim lock a row. The worker starts, says it is ready, and its
first claim waits on the lock; after :data:`SETTLE` seconds the gate opens and the claim
proceeds. CPU is counted from that moment to the table seen empty, so start-up is not in
it (the stale-lock sweep both workers send at start waits at the gate too, and is), and
the rate, as in the drain figures, from the first job's start to the table seen empty.
Node and Python are treated exactly alike: both their first claims wait at the same lock,
both are timed by the same clock.

Each run records the start of every tenth of the jobs, which gives the rate and the CPU
cost per job of each tenth of the drain: whether a claim gets dearer as the backlog grows
is then visible as the difference between the first tenth (deepest) and the last.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .cpu import CpuSampler, CpuSamples, PostgresCpu
from .environment import Features
from .processes import (
    RECORD_FLUSH_WAIT,
    WorkerConfig,
    WorkerProcess,
    check_count,
    count_jobs,
    wait_until_empty,
)
from .workload import CHUNK, TASK, payload

if TYPE_CHECKING:
    import psycopg

SETTLE = 0.5
"""Seconds between the worker's "ready" line and opening the gate: its start-up work done,
its first claim waiting at the lock."""
SLICES = 10
"""The drain is cut into this many slices of equal job count (tenths)."""


@contextmanager
def claim_gate(url: str) -> Iterator[Gate]:
    """Hold every claim back until :meth:`Gate.open` (or the end of the block)."""
    import psycopg

    with psycopg.connect(url) as connection:
        connection.execute("lock table graphile_worker._private_jobs in exclusive mode")
        yield Gate(connection)
        connection.rollback()


class Gate:
    """The open transaction holding the lock; :meth:`open` ends it."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection
        self.opened_at: float | None = None

    def open(self) -> float:
        """Release the lock; returns the wall-clock time it was released."""
        self._connection.rollback()
        self.opened_at = time.time()
        return self.opened_at


# ------------------------------------------------------------------------------ queueing


async def _enqueue_mix(url: str, count: int, queues: int) -> None:
    from graphile_worker import JobSpec, WorkerUtils

    specs = [JobSpec(queue_name=f"bench_queue_{number}") for number in range(queues)]
    async with await WorkerUtils.connect(url, driver="asyncpg") as utils:
        for start in range(0, count, CHUNK):
            batch: list[Any] = []
            for number in range(start, min(start + CHUNK, count)):
                if queues and number % 2 == 0:
                    batch.append((TASK, payload(number), specs[(number // 2) % queues]))
                else:
                    batch.append((TASK, payload(number)))
            await utils.add_jobs(batch)


def enqueue_mix(url: str, count: int, *, queues: int) -> None:
    """Queue ``count`` jobs, every other one in one of ``queues`` named queues in turn."""
    anyio.run(_enqueue_mix, url, count, queues, backend="asyncio")


# -------------------------------------------------------------------------------- a run


@dataclass(frozen=True)
class BacklogRun:
    """One worker draining one backlog: when things happened, and the CPU it took."""

    label: str
    jobs: int
    """Jobs done by ``empty_at``: all that were queued, unless the run hit its time limit."""
    queued: int
    opened_at: float
    first_start: float
    empty_at: float
    """When the table was seen empty, or when the time limit ended the run."""
    marks: dict[int, float]
    samples: CpuSamples
    boundaries: list[tuple[int, float]] = field(default_factory=list)
    """(jobs started, time) at the edges of the slices, first to last."""

    @property
    def finished(self) -> bool:
        return self.jobs == self.queued

    @property
    def seconds(self) -> float:
        return self.empty_at - self.first_start

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    def worker_us(self) -> float:
        """Worker CPU microseconds per job, gate opened -> table empty."""
        return self.samples.worker_between(self.opened_at, self.empty_at) / self.jobs * 1e6

    def server_us(self) -> float | None:
        """PostgreSQL CPU microseconds per job, or ``None`` when not measured."""
        used = self.samples.server_between(self.opened_at, self.empty_at)
        return None if used is None else used / self.jobs * 1e6

    def slices(self) -> list[dict[str, float | None]]:
        """Rate and CPU per job of each slice of the drain, first (deepest) to last.

        A slice runs from the start of its first job to the start of the next slice's
        first (the last one to the table seen empty); its CPU is counted over the same
        span, except that the first slice's starts when the gate opened, as the total does.
        """
        result: list[dict[str, float | None]] = []
        for (started, begin), (finished, end) in zip(
            self.boundaries, self.boundaries[1:], strict=False
        ):
            jobs = finished - started
            cpu_begin = self.opened_at if started == 0 else begin
            server = self.samples.server_between(cpu_begin, end)
            result.append(
                {
                    "jobs": jobs,
                    "rate": jobs / (end - begin) if end > begin else None,
                    "worker_us": self.samples.worker_between(cpu_begin, end) / jobs * 1e6,
                    "server_us": None if server is None else server / jobs * 1e6,
                }
            )
        return result


def mark_interval(jobs: int) -> int:
    """Record every this many starts to cut ``jobs`` into :data:`SLICES` slices."""
    return max(1, jobs // SLICES)


def _boundaries(
    jobs: int, first_start: float, empty_at: float, marks: dict[int, float]
) -> list[tuple[int, float]]:
    step = mark_interval(jobs)
    inner = [step * number for number in range(1, SLICES) if step * number < jobs]
    if any(count not in marks for count in inner):
        inner = []  # a worker that recorded no marks: one slice, the whole drain
    return [(0, first_start), *((count, marks[count]) for count in inner), (jobs, empty_at)]


def _wait_within(url: str, worker: WorkerProcess, limit: float) -> tuple[float, int]:
    """Poll until the table is empty or ``limit`` seconds have passed: (when, jobs left)."""
    import psycopg

    deadline = time.monotonic() + limit
    with psycopg.connect(url, autocommit=True) as connection:
        probe = "select id from graphile_worker._private_jobs order by id limit 1"
        while connection.execute(probe).fetchone() is not None:
            worker.check_alive()
            if time.monotonic() > deadline:
                moment = time.time()
                row = connection.execute(
                    "select count(*) from graphile_worker._private_jobs"
                ).fetchone()
                assert row is not None
                return moment, int(row[0])
            time.sleep(0.005)
    return time.time(), 0


def drain_backlog(
    url: str,
    features: Features,
    config: WorkerConfig,
    jobs: int,
    *,
    server: PostgresCpu | None,
    sleep_ms: float = 0.0,
    time_limit: float | None = None,
) -> BacklogRun:
    """Start a worker behind a closed gate, open it, time the drain of the ``jobs`` queued.

    Args:
        time_limit: Stop the run this many seconds after the gate opened even if jobs are
            left; the run then counts the jobs done by that moment (``finished`` is false).
            ``None``: wait for the table to empty, and fail after a generous timeout.

    Raises:
        BenchError: the worker crashed, timed out, or ran a job other than exactly once.
    """
    timeout = max(120.0, jobs / 200 + jobs * sleep_ms / 1000)
    step = mark_interval(jobs)
    with (
        claim_gate(url) as gate,
        WorkerProcess(config, features, url, mark_every=step, sleep_ms=sleep_ms) as worker,
    ):
        worker.wait_ready()
        time.sleep(SETTLE)
        with CpuSampler(worker.pid, server) as sampler:
            opened_at = gate.open()
            if time_limit is None:
                ended_at, left = wait_until_empty(url, worker, timeout=timeout), 0
            else:
                ended_at, left = _wait_within(url, worker, time_limit)
        time.sleep(RECORD_FLUSH_WAIT)
        worker.stop()
        records = worker.records()
        remaining = count_jobs(url)
        # Jobs still queued after a cut-short run are handed back by the stopping worker;
        # every other job must have run exactly once.
        check_count(worker, records, jobs - remaining)
        if left == 0 and remaining != 0:
            raise worker.failure("jobs reappeared in the table after it was empty")
        if records.first_start is None:
            raise worker.failure("the task recorded no start")
    done = jobs - left
    return BacklogRun(
        label=config.label,
        jobs=done,
        queued=jobs,
        opened_at=opened_at,
        first_start=records.first_start,
        empty_at=ended_at,
        marks=records.marks,
        samples=sampler.samples,
        boundaries=(
            _boundaries(jobs, records.first_start, ended_at, records.marks)
            if left == 0
            else [(0, records.first_start), (done, ended_at)]
        ),
    )
