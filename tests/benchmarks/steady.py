"""Steady-state figure: jobs arriving one at a time at a fixed rate while one worker keeps up.

The worker (concurrency 24, local queue 500, batch delays 0, as in the drain figures) starts
on an empty queue. Then :data:`PRODUCERS` tasks of the benchmark process, each with an
asyncpg connection of its own, add jobs one per statement and transaction on a fixed
schedule: job *n* is due *n / rate* seconds after the start, and a producer that falls
behind calls again at once, so the offered rate is kept wherever the machine allows it and
the rate achieved is reported next to it; offering stops after the given seconds either
way, so a slow machine gets fewer jobs rather than a longer run. Each producer records the
wall-clock time just before its call and just after it returns; the task records when the
job started, by id. Add-to-start latency is start minus call (the insert's commit
included, as in the latency figure); latency from commit is start minus return, the
worker's share. A separate connection counts the jobs in the table every few seconds: a
backlog that grows means the worker does not keep up.

The producers are the load, not the subject, so they take the cheapest path: the schema's
``add_job`` function as a prepared statement. ``WorkerUtils.add_job`` over a pool costs
about 2.5 times the client CPU per job (260 to 290 µs against 100 to 130 µs, measured on
the two-core development machine; the pool also resets each connection it takes back, a
second round trip), CPU that the worker and the server under test would otherwise have.

How many single adds a second a server takes has a ceiling that has nothing to do with the
worker: ``add_job`` sends ``NOTIFY jobs:insert`` in the transaction that inserts the job,
and PostgreSQL lets only one notifying transaction commit at a time (``PreCommit_Notify``
in its ``async.c`` takes a lock that is held until the commit is flushed, to keep
notifications in commit order). So single adds run at most at one per WAL flush, however
many producers there are: about 1,000 a second on the development machine, where 16
connections inserting without a notification commit 7,500 a second. Near that ceiling
every add waits its turn, and add-to-start latency is mostly that wait.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from .backlog import SETTLE
from .cpu import CpuSampler, PostgresCpu
from .drain import node_config
from .environment import BenchServer, Features
from .pairs import Pair, python_configs
from .processes import (
    RECORD_FLUSH_WAIT,
    WorkerConfig,
    WorkerProcess,
    check_count,
    wait_until_empty,
)
from .results import Figure, Report, percentile, progress
from .workload import TASK, payload

STEADY_RATES = (1_000, 5_000)
FULL_SECONDS = 60
QUICK_SECONDS = 5
PRODUCERS = 16
"""Producer tasks, a connection each: enough to offer 5,000 single-job commits a second."""
ADD_JOB = "select id from graphile_worker.add_job($1, CAST($2 AS json))"
"""The schema's own ``add_job`` function, which ``WorkerUtils.add_job`` and Node's
``addJob`` call too; the producers call it directly, prepared, one round trip a job, so
that the load generator costs as little CPU as it can (see the module docstring)."""
BACKLOG_SAMPLES = 12
"""Rows of the backlog table of one run."""
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


@dataclass
class Produced:
    """What the producers did: (job id, called, returned) per job, and the backlog."""

    started: float = 0.0
    added: list[tuple[int, float, float]] = field(default_factory=list)
    backlog: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since the start, jobs in the table)."""

    @property
    def achieved_rate(self) -> float:
        finished = max(returned for _, _, returned in self.added)
        return len(self.added) / (finished - self.started)

    @property
    def call_ms(self) -> float:
        """Median milliseconds an ``add_job`` call took (statement and commit)."""
        return percentile([(returned - called) * 1000 for _, called, returned in self.added], 0.5)


async def _count_backlog(url: str, produced: Produced, interval: float) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        while True:
            count = await connection.fetchval("select count(*) from graphile_worker._private_jobs")
            produced.backlog.append((time.time() - produced.started, int(count)))
            await anyio.sleep(interval)
    finally:
        with anyio.CancelScope(shield=True):
            await connection.close()


async def _produce(url: str, rate: int, seconds: int) -> Produced:
    import asyncpg

    total = rate * seconds
    produced = Produced()
    connections = [await asyncpg.connect(url) for _ in range(PRODUCERS)]
    try:
        statements = [await connection.prepare(ADD_JOB) for connection in connections]

        async def producer(first: int) -> None:
            statement = statements[first]
            deadline = produced.started + seconds
            for number in range(first, total, PRODUCERS):
                wait = produced.started + number / rate - time.time()
                if wait > 0:
                    await anyio.sleep(wait)
                called = time.time()
                if called >= deadline:
                    return  # behind schedule: offer for the time given, not the count
                job_id = await statement.fetchval(TASK, json.dumps(payload(number)))
                produced.added.append((job_id, called, time.time()))

        async with anyio.create_task_group() as counting:
            produced.started = time.time() + 0.05
            counting.start_soon(_count_backlog, url, produced, seconds / BACKLOG_SAMPLES)
            async with anyio.create_task_group() as producing:
                for first in range(PRODUCERS):
                    producing.start_soon(producer, first)
            counting.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            for connection in connections:
                await connection.close()
    return produced


@dataclass(frozen=True)
class SteadyRun:
    """One worker under one offered rate."""

    latencies_ms: list[float]
    from_commit_ms: list[float]
    """Task started minus ``add_job`` returned: the worker's part of the latency."""
    achieved_rate: float
    call_ms: float
    backlog: list[tuple[float, int]]
    worker_us: float
    server_us: float | None


def steady_once(
    server: BenchServer, features: Features, config: WorkerConfig, rate: int, seconds: int
) -> SteadyRun:
    """Offer ``rate`` jobs/s for ``seconds`` to one worker; every job must run once."""
    with (
        server.fresh_database() as url,
        WorkerProcess(config, features, url, per_job_records=True) as worker,
    ):
        cpu = PostgresCpu.locate(url)
        worker.wait_ready()
        time.sleep(SETTLE)
        with CpuSampler(worker.pid, cpu) as sampler:
            produced = anyio.run(_produce, url, rate, seconds, backend="asyncio")
            empty_at = wait_until_empty(url, worker, timeout=max(60.0, seconds * 5.0))
        produced.backlog.append((empty_at - produced.started, 0))
        time.sleep(RECORD_FLUSH_WAIT)
        worker.stop()
        records = worker.records()
        check_count(worker, records, len(produced.added))
        missing = [job_id for job_id, _, _ in produced.added if str(job_id) not in records.starts]
        if missing:
            shown = ", ".join(map(str, missing[:10]))
            raise worker.failure(f"no start recorded for {len(missing)} job(s): {shown}")
    jobs = len(produced.added)
    server_seconds = sampler.samples.server_between(produced.started, empty_at)
    return SteadyRun(
        latencies_ms=[
            (records.starts[str(job_id)] - called) * 1000 for job_id, called, _ in produced.added
        ],
        from_commit_ms=[
            (records.starts[str(job_id)] - returned) * 1000
            for job_id, _, returned in produced.added
        ],
        achieved_rate=produced.achieved_rate,
        call_ms=produced.call_ms,
        backlog=produced.backlog,
        worker_us=sampler.samples.worker_between(produced.started, empty_at) / jobs * 1e6,
        server_us=None if server_seconds is None else server_seconds / jobs * 1e6,
    )


def _backlog_table(backlog: list[tuple[float, int]]) -> str:
    """At most :data:`BACKLOG_SAMPLES` evenly spread samples and the last, as one line."""
    step = max(1, len(backlog) // BACKLOG_SAMPLES)
    shown = backlog[::step]
    if shown[-1] is not backlog[-1]:
        shown.append(backlog[-1])
    return ", ".join(f"{max(elapsed, 0.0):.1f} s: {count:,}" for elapsed, count in shown)


def _emit(report: Report, label: str, rate: int, run: SteadyRun, seconds: int) -> None:
    at = f"at {rate:,} jobs/s"
    workload = f"add_job one at a time, {rate:,} jobs/s offered for {seconds} s"
    for name, fraction in QUANTILES:
        report.emit(
            Figure(
                "steady",
                f"steady {name} {label} {at}",
                "ms",
                [percentile(run.latencies_ms, fraction)],
                measured=f"add_job called -> task started, {workload}",
            )
        )
    for name, fraction in QUANTILES:
        report.emit(
            Figure(
                "steady",
                f"steady from commit {name} {label} {at}",
                "ms",
                [percentile(run.from_commit_ms, fraction)],
                measured=f"add_job returned -> task started, {workload}",
            )
        )
    report.emit(
        Figure(
            "steady",
            f"steady achieved rate {label} {at}",
            "jobs/s",
            [run.achieved_rate],
            measured=f"jobs added / seconds to the last add_job's return, {PRODUCERS} producers",
            notes=[f"median add_job call (statement and commit): {run.call_ms:.2f} ms"],
        )
    )
    report.emit(
        Figure(
            "steady",
            f"steady backlog max {label} {at}",
            "jobs",
            [max(count for _, count in run.backlog)],
            measured="jobs in the table (waiting or running), sampled while offering",
            notes=[f"backlog over time: {_backlog_table(run.backlog)}"],
            details={"backlog": run.backlog},
        )
    )
    report.emit(
        Figure(
            "steady",
            f"steady worker CPU {label} {at}",
            "µs/job",
            [run.worker_us],
            measured="CPU of the worker process per job, first add -> table empty",
            details={"postgres_us_per_job_including_producers": run.server_us},
        )
    )


def steady_figures(
    report: Report,
    server: BenchServer,
    features: Features,
    *,
    rates: Sequence[int],
    seconds: int,
    node: str | None,
    pairs: Sequence[Pair],
) -> None:
    """Latency, achieved rate, backlog and worker CPU under each offered rate.

    Args:
        node: ``None`` to leave Node out, ``""`` to measure it, or why it cannot run.
    """
    configs = python_configs(
        report, features, pairs, figure="steady", name="steady p95 {label}", unit="ms"
    )
    if node == "":
        contenders = [*configs[:1], node_config(), *configs[1:]]
    else:
        contenders = list(configs)
        if node is not None:
            report.emit(Figure("steady", "steady p95 node", "ms", skipped=node))
    for rate in rates:
        runs: dict[str, SteadyRun] = {}
        for config in contenders:
            progress(f"steady {config.label}: {rate:,} jobs/s for {seconds} s")
            run = steady_once(server, features, config, rate, seconds)
            progress(
                f"steady {config.label}: p95 {percentile(run.latencies_ms, 0.95):.2f} ms, "
                f"achieved {run.achieved_rate:,.0f} jobs/s, "
                f"backlog max {max(count for _, count in run.backlog):,}"
            )
            runs[config.label] = run
            _emit(report, config.label, rate, run, seconds)
        node_run = runs.get("node")
        if node_run is None:
            continue
        theirs = percentile(node_run.latencies_ms, 0.95)
        for label, run in runs.items():
            if label != "node":
                report.emit(
                    Figure(
                        "steady",
                        f"steady p95 ratio {label} / node at {rate:,} jobs/s",
                        "ratio",
                        [percentile(run.latencies_ms, 0.95) / theirs],
                        measured="p95 add -> start, ours / Node's (lower is better)",
                    )
                )
