"""Depth figure: the drain rate and the cost per job at backlogs of 10k, 100k and 1M jobs.

Every run of this figure shares **one** database, whose jobs table was filled and drained
once before the first measured run, and which is never vacuumed, analysed or checkpointed
by the benchmark: the dead rows of each drain stay for the next one, and autovacuum (left
on) cleans up whenever it decides to, as on a production server. Within each depth the
contenders take turns, run by run: our first driver, Node, our other drivers, then the
next round in the same order, so that each round's runs see a table in much the same
state. Every run queues the same jobs (the no-op task, ``add_jobs`` in chunks of 1,000,
each its own transaction), starts the worker behind a closed gate (see
:mod:`.backlog`), and times it from the first job's start to the table seen empty.

Reported per depth and contender: the rate; the rate of the first and of the last tenth of
the drain (the first claims the backlog at its deepest); and the CPU microseconds per job of
the worker process and of the PostgreSQL server (all its processes). The cost ratio of each
depth to the shallowest shows whether a job gets dearer as the backlog grows. Depths of
:data:`SINGLE_RUN_DEPTH` jobs or more run once per contender, and only for asyncpg and the
trio drivers (:data:`~.pairs.DEEP_PAIRS`) and Node: a million jobs take minutes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from .backlog import BacklogRun, drain_backlog
from .cpu import PostgresCpu
from .drain import node_config
from .environment import BenchServer, Features
from .pairs import DEEP_PAIRS, Pair, python_configs
from .pairs import label as pair_label
from .processes import WorkerConfig
from .results import Figure, Report, progress
from .workload import enqueue

FULL_DEPTHS = (10_000, 100_000, 1_000_000)
QUICK_DEPTHS = (2_000, 20_000)
SINGLE_RUN_DEPTH = 500_000
"""Depths from this many jobs on run once per contender, whatever ``--runs`` says."""
DIRTY_JOBS = 100_000
"""Jobs queued and drained (untimed) before the first run, at most the deepest depth."""
MIN_SLICE_JOBS = 2_000
"""Tenths of fewer jobs are not reported: the worker starts jobs in bursts of one local
queue (500), so a tenth of a few batches measures where the bursts fell, not the claim."""


def depth_label(jobs: int) -> str:
    """``10k``, ``1M``, ``2.5k``: short enough for a figure name."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if jobs >= size:
            return f"{jobs / size:g}{suffix}"
    return str(jobs)


def _median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _tenths(runs: list[BacklogRun], key: str, unit: str) -> str:
    """A slice measure of the median run, first tenth to last, as one line."""
    run = sorted(runs, key=lambda each: each.rate)[len(runs) // 2]
    values = [piece[key] for piece in run.slices()]
    if unit == "jobs/s":
        return " ".join("-" if value is None else f"{value:,.0f}" for value in values)
    return " ".join("-" if value is None else f"{value:.1f}" for value in values)


def _emit_depth(
    report: Report, label: str, depth: int, runs: list[BacklogRun], node_runs: list[BacklogRun]
) -> None:
    at = depth_label(depth)
    measured = f"first job start -> table empty, {depth:,} jobs, dirty table"
    slices = [run.slices() for run in runs]
    sliced = depth // 10 >= MIN_SLICE_JOBS
    first_claims = ", ".join(f"{(run.first_start - run.opened_at) * 1000:.0f}" for run in runs)
    notes = [f"gate opened -> first job start (the first claim), ms: {first_claims}"]
    if sliced:
        notes += [
            f"rate by tenth of the drain (jobs/s): {_tenths(runs, 'rate', 'jobs/s')}",
            f"PostgreSQL CPU by tenth (µs/job): {_tenths(runs, 'server_us', 'us')}",
            f"worker CPU by tenth (µs/job): {_tenths(runs, 'worker_us', 'us')}",
        ]
    report.emit(
        Figure(
            "depth",
            f"depth drain {label} at {at}",
            "jobs/s",
            [run.rate for run in runs],
            measured=measured,
            notes=notes,
            details={
                "seconds": [run.seconds for run in runs],
                "gate_to_first_start_ms": [
                    (run.first_start - run.opened_at) * 1000 for run in runs
                ],
                "slices": slices,
            },
        )
    )
    for name, index in (("first 10%", 0), ("last 10%", -1)):
        rates = [piece[index]["rate"] for piece in slices if len(piece) > 1]
        if sliced and rates and all(rate is not None for rate in rates):
            report.emit(
                Figure(
                    "depth",
                    f"depth {name} {label} at {at}",
                    "jobs/s",
                    [rate for rate in rates if rate is not None],
                    measured=f"jobs / seconds over the {name} of the drain, {depth:,} jobs",
                )
            )
    report.emit(
        Figure(
            "depth",
            f"depth worker CPU {label} at {at}",
            "µs/job",
            [run.worker_us() for run in runs],
            measured="CPU of the worker process, gate opened -> table empty, per job",
        )
    )
    server = [run.server_us() for run in runs]
    if all(value is not None for value in server):
        report.emit(
            Figure(
                "depth",
                f"depth PostgreSQL CPU {label} at {at}",
                "µs/job",
                [value for value in server if value is not None],
                measured="CPU of every PostgreSQL process, gate opened -> table empty, per job",
            )
        )
    else:
        report.emit(
            Figure(
                "depth",
                f"depth PostgreSQL CPU {label} at {at}",
                "µs/job",
                skipped="the server's processes cannot be read from here",
            )
        )
    if node_runs and label != "node":
        report.emit(
            Figure(
                "depth",
                f"depth ratio {label} / node at {at}",
                "ratio",
                [ours.rate / theirs.rate for ours, theirs in zip(runs, node_runs, strict=False)],
                measured="drain rate ratio, per round",
            )
        )


def _cost(runs: list[BacklogRun]) -> float | None:
    """Median worker plus PostgreSQL CPU per job, ``None`` when the server is not measured."""
    worker = _median([run.worker_us() for run in runs])
    server = _median([run.server_us() for run in runs])
    return None if worker is None or server is None else worker + server


def _measure(
    url: str,
    features: Features,
    config: WorkerConfig,
    depth: int,
    server: PostgresCpu | None,
    note: str,
) -> BacklogRun:
    progress(f"depth {config.label}: queueing {depth:,} jobs ({note})")
    queued = time.monotonic()
    enqueue(url, depth)
    progress(f"depth {config.label}: queued in {time.monotonic() - queued:.1f} s, draining")
    run = drain_backlog(url, features, config, depth, server=server)
    server_us = run.server_us()
    progress(
        f"depth {config.label}: {run.rate:,.0f} jobs/s, worker {run.worker_us():.1f} µs/job"
        + ("" if server_us is None else f", PostgreSQL {server_us:.1f} µs/job")
    )
    return run


def depth_figures(
    report: Report,
    server: BenchServer,
    features: Features,
    *,
    depths: Sequence[int],
    runs: int,
    node: str | None,
    pairs: Sequence[Pair],
    deep_pairs: Sequence[Pair] = DEEP_PAIRS,
) -> None:
    """The depth figure for ``pairs`` (and Node), at each of ``depths``, on one dirty table.

    Args:
        node: ``None`` to leave Node out, ``""`` to measure it, or why it cannot run.
        deep_pairs: The only pairs that run at depths of :data:`SINGLE_RUN_DEPTH` or more.
    """
    deep_labels = {pair_label(pair) for pair in deep_pairs} | {"node"}
    configs = python_configs(
        report, features, pairs, figure="depth", name="depth drain {label}", unit="jobs/s"
    )
    if node == "":
        contenders = [*configs[:1], node_config(), *configs[1:]]
    else:
        contenders = list(configs)
        if node is not None:
            report.emit(Figure("depth", "depth drain node", "jobs/s", skipped=node))
    if not contenders:
        return
    with server.fresh_database() as url:
        cpu = PostgresCpu.locate(url)
        if cpu is None:
            progress("depth: PostgreSQL's processes are not readable here; no server CPU")
        dirty = min(DIRTY_JOBS, max(depths))
        progress(f"depth: filling and draining {dirty:,} jobs first, untimed (dead rows)")
        _measure(url, features, contenders[0], dirty, None, "making the table dirty")
        costs: dict[str, dict[int, float | None]] = {config.label: {} for config in contenders}
        for depth in sorted(depths):
            deep = depth >= SINGLE_RUN_DEPTH
            rounds = 1 if deep else runs
            taking_part = [c for c in contenders if not deep or c.label in deep_labels]
            measured: dict[str, list[BacklogRun]] = {config.label: [] for config in taking_part}
            for round_number in range(1, rounds + 1):
                for config in taking_part:
                    run = _measure(
                        url, features, config, depth, cpu, f"run {round_number}/{rounds}"
                    )
                    measured[config.label].append(run)
            node_runs = measured.get("node", [])
            for config in taking_part:
                _emit_depth(report, config.label, depth, measured[config.label], node_runs)
                costs[config.label][depth] = _cost(measured[config.label])
    _emit_cost_ratios(report, costs, sorted(depths))


def _emit_cost_ratios(
    report: Report, costs: dict[str, dict[int, float | None]], depths: list[int]
) -> None:
    """Cost per job at each depth against the shallowest (1.0 when it does not grow)."""
    shallow = depths[0]
    for label, by_depth in costs.items():
        base = by_depth.get(shallow)
        for depth in depths[1:]:
            cost = by_depth.get(depth)
            if base is None or cost is None:
                continue
            report.emit(
                Figure(
                    "depth",
                    f"depth cost ratio {label} {depth_label(depth)} / {depth_label(shallow)}",
                    "ratio",
                    [cost / base],
                    measured="worker + PostgreSQL CPU per job, medians, deep / shallow",
                    details={"cost_us": {str(depth): cost, str(shallow): base}},
                )
            )
