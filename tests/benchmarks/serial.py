"""Serial-mix figure: half the jobs in named queues, jobs that take a moment, small concurrency.

Every other job goes to one of :data:`QUEUES` named queues in turn (a named queue runs one
job at a time, in order); the rest have no queue. Each job sleeps :data:`SLEEP_MS` ms, and
the worker runs :data:`CONCURRENCY` at once, with a local queue of :data:`LOCAL_QUEUE`
jobs and without one (batch delays 0 either way), so the figure shows what the local queue
is worth when a claim can take only one job per named queue. Each run gets a fresh
database with the backlog queued, then drains it behind the gate of :mod:`.backlog`,
timed from the first job's start to the table seen empty; the contenders take turns run by
run. The ceiling is ``CONCURRENCY / SLEEP_MS`` = 4,000 jobs/s. A run stops after
:data:`TIME_LIMIT` seconds at the latest (see there), and a backlog of
:data:`SINGLE_RUN_DEPTH` jobs or more is run once per contender, to keep the figure to a
few minutes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .backlog import BacklogRun, drain_backlog, enqueue_mix
from .cpu import PostgresCpu
from .depth import depth_label
from .drain import node_config
from .environment import BenchServer, Features, prepare_run
from .pairs import Pair, python_configs
from .processes import WorkerConfig
from .results import Figure, Report, progress

FULL_SERIAL_DEPTHS = (4_000, 40_000)
QUICK_SERIAL_DEPTHS = (400, 2_000)
SINGLE_RUN_DEPTH = 20_000
"""Backlogs from this many jobs on run once per contender, whatever ``--runs`` says."""
QUEUES = 20
SLEEP_MS = 2.0
CONCURRENCY = 8
LOCAL_QUEUE = 50
TIME_LIMIT = 30.0
"""Seconds after which a run is cut short and its rate taken over the jobs done so far.
Node 0.18's local queue waits a poll interval (2 s) after every fetch that its idle
workers take at once, unless a new job is announced; in this mix that is most fetches near
the end of a drain, when a fetch finds one job in each of a few queues, and a drain of
40,000 jobs can take minutes. The rate of a cut-short run is still a drain rate, over the
jobs done, and is marked."""


def _variants(config: WorkerConfig, base: str) -> list[WorkerConfig]:
    """``config`` with the local queue and without it, labelled accordingly."""
    return [
        dataclasses.replace(config, label=f"{base} local queue {LOCAL_QUEUE}"),
        dataclasses.replace(config, label=f"{base} no local queue", local_queue_size=0),
    ]


def serial_once(
    server: BenchServer, features: Features, config: WorkerConfig, jobs: int
) -> BacklogRun:
    with server.fresh_database() as url:
        enqueue_mix(url, jobs, queues=QUEUES)
        prepare_run(url)
        cpu = PostgresCpu.locate(url)
        return drain_backlog(
            url, features, config, jobs, server=cpu, sleep_ms=SLEEP_MS, time_limit=TIME_LIMIT
        )


def _ratio(name: str, ours: list[BacklogRun], theirs: list[BacklogRun], measured: str) -> Figure:
    return Figure(
        "serial",
        name,
        "ratio",
        [mine.rate / other.rate for mine, other in zip(ours, theirs, strict=True)],
        measured=measured,
    )


def serial_figures(
    report: Report,
    server: BenchServer,
    features: Features,
    *,
    depths: Sequence[int],
    runs: int,
    node: str | None,
    pairs: Sequence[Pair],
) -> None:
    """Drain rate of the serial mix, with and without the local queue, ours and Node's.

    Args:
        node: ``None`` to leave Node out, ``""`` to measure it, or why it cannot run.
    """
    bases = python_configs(
        report,
        features,
        pairs,
        figure="serial",
        name="serial drain {label}",
        unit="jobs/s",
        concurrency=CONCURRENCY,
        local_queue_size=LOCAL_QUEUE,
    )
    groups = [(base.label, _variants(base, base.label)) for base in bases]
    if node == "":
        node_base = dataclasses.replace(
            node_config(), concurrency=CONCURRENCY, local_queue_size=LOCAL_QUEUE
        )
        groups.insert(min(1, len(groups)), ("node", _variants(node_base, "node")))
    elif node is not None:
        report.emit(Figure("serial", "serial drain node", "jobs/s", skipped=node))
    contenders = [config for _, variants in groups for config in variants]
    for depth in depths:
        at = depth_label(depth)
        measured: dict[str, list[BacklogRun]] = {config.label: [] for config in contenders}
        rounds = runs if depth < SINGLE_RUN_DEPTH else 1
        for round_number in range(1, rounds + 1):
            for config in contenders:
                progress(f"serial {config.label}: run {round_number}/{rounds} ({depth:,} jobs)")
                run = serial_once(server, features, config, depth)
                cut = (
                    "" if run.finished else f" (stopped after {TIME_LIMIT:g} s, {run.jobs:,} done)"
                )
                progress(f"serial {config.label}: {run.rate:,.0f} jobs/s{cut}")
                measured[config.label].append(run)
        for config in contenders:
            runs_of = measured[config.label]
            cut_short = [run.jobs for run in runs_of if not run.finished]
            notes = []
            if cut_short:
                done = ", ".join(f"{jobs:,}" for jobs in cut_short)
                notes.append(
                    f"{len(cut_short)} run(s) stopped after {TIME_LIMIT:g} s with {done} of "
                    f"{depth:,} jobs done; their rate is over the jobs done"
                )
            report.emit(
                Figure(
                    "serial",
                    f"serial drain {config.label} at {at}",
                    "jobs/s",
                    [run.rate for run in runs_of],
                    measured=(
                        f"first job start -> table empty, {depth:,} jobs, half in {QUEUES} "
                        f"named queues, {SLEEP_MS:g} ms each, concurrency {CONCURRENCY}"
                    ),
                    notes=notes,
                    details={
                        "finished": [run.finished for run in runs_of],
                        "jobs_done": [run.jobs for run in runs_of],
                        "worker_us_per_job": [run.worker_us() for run in runs_of],
                        "postgres_us_per_job": [run.server_us() for run in runs_of],
                    },
                )
            )
        for base, (with_queue, without) in groups:
            report.emit(
                _ratio(
                    f"serial local-queue gain {base} at {at}",
                    measured[with_queue.label],
                    measured[without.label],
                    f"drain rate with a local queue of {LOCAL_QUEUE} / without, per round",
                )
            )
        if node != "":
            continue
        node_with, node_without = (config.label for config in _variants(node_config(), "node"))
        for base, (with_queue, without) in groups:
            if base == "node":
                continue
            for ours, theirs, setting in (
                (with_queue, node_with, f"local queue {LOCAL_QUEUE}"),
                (without, node_without, "no local queue"),
            ):
                report.emit(
                    _ratio(
                        f"serial ratio {base} / node, {setting}, at {at}",
                        measured[ours.label],
                        measured[theirs],
                        "drain rate ratio with the same options, per round",
                    )
                )
