"""Figures 1, 2, 3, 7 and the memory part of 6: how fast a full queue is emptied.

A run queues the jobs first (untimed, ``add_jobs`` in chunks), refreshes statistics and
checkpoints, then starts the worker in a subprocess and polls until the table is empty.
The rate is jobs divided by the time from the first job's start (recorded by the task) to
the moment the table was seen empty, so the worker's start-up, which figure 6 measures
on its own, does not dilute it; the rate from spawning the process is kept in the JSON
details. The raw-SQL client of figure 3 takes part in the same rounds, timed from its
first claim to its last delete. Configurations are interleaved run by run (A B C, A B C, ...), so slow drift of
the machine spreads over all of them instead of favouring the first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .environment import BenchError, BenchServer, Features, prepare_run
from .processes import (
    RECORD_FLUSH_WAIT,
    WorkerConfig,
    WorkerProcess,
    check_count,
    count_jobs,
    wait_until_empty,
)
from .raw_claim import BATCH, CONNECTIONS, raw_drain
from .results import Figure, Report, progress
from .workload import enqueue

PYTHON_PAIRS = (
    ("asyncpg", "asyncio"),
    ("psycopg", "asyncio"),
    ("psycopg-threaded", "asyncio"),
    ("psycopg-threaded", "trio"),
)
"""The (driver, runtime) pairs measured: every driver on asyncio, and trio's only one."""

MEASURED = "first job start -> table empty"


@dataclass(frozen=True)
class DrainRun:
    """One worker emptying one queue."""

    jobs: int
    seconds: float
    """First job start to table seen empty."""
    seconds_from_spawn: float
    peak_rss_mib: float | None
    missing_options: tuple[str, ...]

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def rate_from_spawn(self) -> float:
        return self.jobs / self.seconds_from_spawn


def python_config(driver: str, runtime: str, *, processes: int = 1) -> WorkerConfig:
    label = f"{driver}/{runtime}"
    if processes != 1:
        label += f" --processes {processes}"
    return WorkerConfig(label=label, driver=driver, runtime=runtime, processes=processes)


def node_config() -> WorkerConfig:
    return WorkerConfig(label="node", implementation="node")


def drain_once(
    server: BenchServer, features: Features, config: WorkerConfig, jobs: int
) -> DrainRun:
    """Queue ``jobs`` no-op jobs, then time one worker emptying the queue.

    Raises:
        BenchError: the worker crashed, timed out, or ran a job other than exactly once.
    """
    timeout = max(120.0, jobs / 200)
    with server.fresh_database() as url:
        enqueue(url, jobs)
        prepare_run(url)
        with WorkerProcess(config, features, url) as worker:
            empty_at = wait_until_empty(url, worker, timeout=timeout)
            peak = worker.peak_rss_mib()
            time.sleep(RECORD_FLUSH_WAIT)
            worker.stop()
            records = worker.records()
            check_count(worker, records, jobs)
            if count_jobs(url) != 0:
                raise worker.failure("jobs reappeared in the table after it was empty")
            if records.first_start is None:
                raise worker.failure("the task recorded no start")
            return DrainRun(
                jobs=jobs,
                seconds=empty_at - records.first_start,
                seconds_from_spawn=empty_at - worker.started_at,
                peak_rss_mib=peak,
                missing_options=tuple(worker.missing_options),
            )


@dataclass(frozen=True)
class Contender:
    """Something that drains a queue: a worker configuration, or the raw-SQL client."""

    label: str
    measure: Callable[[int], DrainRun]


def worker_contender(server: BenchServer, features: Features, config: WorkerConfig) -> Contender:
    return Contender(config.label, lambda jobs: drain_once(server, features, config, jobs))


def raw_contender(server: BenchServer) -> Contender:
    def measure(jobs: int) -> DrainRun:
        with server.fresh_database() as url:
            enqueue(url, jobs)
            prepare_run(url)
            deleted, seconds = raw_drain(url)
            left = count_jobs(url)
        if deleted != jobs or left != 0:
            raise BenchError(f"raw client: deleted {deleted} of {jobs} job(s), {left} left")
        return DrainRun(jobs, seconds, seconds, None, ())

    return Contender("raw", measure)


def run_interleaved(
    contenders: Sequence[Contender], *, jobs: int, runs: int
) -> dict[str, list[DrainRun]]:
    """``runs`` rounds of every contender in turn; results by label."""
    results: dict[str, list[DrainRun]] = {contender.label: [] for contender in contenders}
    for round_number in range(1, runs + 1):
        for contender in contenders:
            progress(f"drain {contender.label}: run {round_number}/{runs} ({jobs:,} jobs)")
            run = contender.measure(jobs)
            progress(f"drain {contender.label}: {run.rate:,.0f} jobs/s")
            results[contender.label].append(run)
    return results


def _drain_figure(figure: str, name: str, runs: list[DrainRun]) -> Figure:
    notes = []
    if runs[0].missing_options:
        missing = ", ".join(runs[0].missing_options)
        notes.append(f"ran without {missing} (not available in this version)")
    return Figure(
        figure=figure,
        name=name,
        unit="jobs/s",
        runs=[run.rate for run in runs],
        measured=f"{MEASURED}, {runs[0].jobs:,} jobs",
        notes=notes,
        details={
            "seconds": [run.seconds for run in runs],
            "rate_from_spawn": [run.rate_from_spawn for run in runs],
            "missing_options": list(runs[0].missing_options),
        },
    )


def _rss_figure(name: str, runs: list[DrainRun]) -> Figure | None:
    peaks = [run.peak_rss_mib for run in runs if run.peak_rss_mib is not None]
    if not peaks:
        return None
    return Figure(
        figure="rss",
        name=name,
        unit="MiB",
        runs=peaks,
        measured="VmHWM of the worker process while draining figure 1's workload",
    )


def _ratio_figure(figure: str, name: str, ours: list[DrainRun], theirs: list[DrainRun]) -> Figure:
    """Per-round ratios: runs of one round ran back to back, under the same conditions."""
    return Figure(
        figure=figure,
        name=name,
        unit="ratio",
        runs=[mine.rate / other.rate for mine, other in zip(ours, theirs, strict=True)],
        measured="drain rate ratio, per round",
    )


def drain_figures(
    report: Report,
    server: BenchServer,
    features: Features,
    *,
    jobs: int,
    runs: int,
    python: bool,
    node: str | None,
    raw: bool,
) -> None:
    """Figures 1, 2 and 3, and the memory part of 6, from one interleaved set of rounds.

    Args:
        python: Measure the Python worker with every driver/runtime pair.
        node: ``None`` to leave Node out, ``""`` to measure it, or why it cannot run.
        raw: Measure the bare asyncpg client.
    """
    contenders: list[Contender] = []
    if python:
        for driver, runtime in PYTHON_PAIRS:
            config = python_config(driver, runtime)
            if runtime != "asyncio" and not features.has("--runtime"):
                report.emit(
                    Figure(
                        "drain",
                        f"drain {config.label}",
                        "jobs/s",
                        skipped="--runtime not available",
                    )
                )
                continue
            contenders.append(worker_contender(server, features, config))
    if node == "":
        contenders.append(worker_contender(server, features, node_config()))
    elif node is not None:
        report.emit(Figure("node", "drain node", "jobs/s", skipped=node))
    if raw:
        contenders.append(raw_contender(server))
    if not contenders:
        return
    results = run_interleaved(contenders, jobs=jobs, runs=runs)
    node_runs = results.pop("node", None)
    raw_runs = results.pop("raw", None)
    for label, ours in results.items():
        report.emit(_drain_figure("drain", f"drain {label}", ours))
    if node_runs is not None:
        report.emit(_drain_figure("node", "drain node", node_runs))
        for label, ours in results.items():
            report.emit(_ratio_figure("node", f"drain ratio {label} / node", ours, node_runs))
    if raw_runs is not None:
        figure = _drain_figure("raw", "drain raw SQL (asyncpg)", raw_runs)
        figure.measured = (
            f"first claim -> last delete, {CONNECTIONS} connections looping claim {BATCH} + "
            f"delete, {jobs:,} jobs"
        )
        report.emit(figure)
        for label, ours in results.items():
            report.emit(_ratio_figure("raw", f"drain ratio {label} / raw", ours, raw_runs))
    for label, ours in results.items():
        rss = _rss_figure(f"peak RSS {label}", ours)
        if rss is not None:
            report.emit(rss)
    if node_runs is not None:
        rss = _rss_figure("peak RSS node", node_runs)
        if rss is not None:
            report.emit(rss)


def processes_figures(
    report: Report, server: BenchServer, features: Features, *, jobs: int, runs: int
) -> None:
    """Figure 7: ``--processes 2`` against one process, both asyncpg on asyncio."""
    name = "drain asyncpg/asyncio --processes 2"
    if not features.has("--processes"):
        report.emit(Figure("processes", name, "jobs/s", skipped="--processes not available"))
        return
    single = python_config("asyncpg", "asyncio")
    double = python_config("asyncpg", "asyncio", processes=2)
    contenders = [
        worker_contender(server, features, single),
        worker_contender(server, features, double),
    ]
    results = run_interleaved(contenders, jobs=jobs, runs=runs)
    one, two = results[single.label], results[double.label]
    report.emit(_drain_figure("processes", f"drain {single.label} (1 process)", one))
    report.emit(_drain_figure("processes", name, two))
    report.emit(_ratio_figure("processes", "drain ratio --processes 2 / 1 process", two, one))
