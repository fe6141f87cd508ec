"""Figure 4: how long a job added to an idle worker waits before it starts.

The worker (same settings as the drain figures) is started and warmed up with one job;
once that job is done the worker is idle, waiting for a notification. The benchmark then
adds jobs one at a time with ``add_job`` over asyncpg, :data:`SPACING` apart, recording
the wall-clock time just before each call and just after it returns; the task records
when each job started, by id. The figure is start minus the time before the call, which
includes the insert's own commit (what an application sees, and how Node's own latency
test measures it). "Latency from commit" is start minus the return: the part the worker
is responsible for, from the moment the job is committed and visible.
"""

from __future__ import annotations

import time

import anyio
import anyio.to_thread

from .drain import PYTHON_PAIRS, node_config, python_config
from .environment import BenchServer, Features
from .processes import (
    RECORD_FLUSH_WAIT,
    WorkerConfig,
    WorkerProcess,
    check_count,
    wait_until_empty,
)
from .results import Figure, Report, percentile, progress
from .workload import TASK, payload

SPACING = 0.005
"""Seconds between one ``add_job`` returning and the next call."""
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


async def _add_spaced(
    url: str, worker: WorkerProcess, count: int
) -> dict[str, tuple[float, float]]:
    """Warm the worker up, then add ``count`` jobs one by one; (called, returned) by id."""
    from graphile_worker import WorkerUtils

    added: dict[str, tuple[float, float]] = {}
    async with await WorkerUtils.connect(url, driver="asyncpg") as utils:
        await utils.add_job(TASK, {"warm_up": True})
        await anyio.to_thread.run_sync(lambda: wait_until_empty(url, worker, timeout=60))
        await anyio.sleep(0.2)  # let the worker settle into waiting
        for number in range(count):
            called = time.time()
            job = await utils.add_job(TASK, payload(number))
            added[str(job.id)] = (called, time.time())
            await anyio.sleep(SPACING)
    return added


def latency_once(
    server: BenchServer, features: Features, config: WorkerConfig, count: int
) -> tuple[list[float], list[float]]:
    """Milliseconds from add_job called, and from add_job returned, to start; per job."""
    with (
        server.fresh_database() as url,
        WorkerProcess(config, features, url, per_job_records=True) as worker,
    ):
        added = anyio.run(_add_spaced, url, worker, count, backend="asyncio")
        wait_until_empty(url, worker, timeout=60)
        time.sleep(RECORD_FLUSH_WAIT)
        worker.stop()
        records = worker.records()
        check_count(worker, records, count + 1)  # and the warm-up job
        missing = [job_id for job_id in added if job_id not in records.starts]
        if missing:
            raise worker.failure(f"no start recorded for job(s) {', '.join(missing[:10])}")
    from_call = [(records.starts[job_id] - called) * 1000 for job_id, (called, _) in added.items()]
    from_return = [
        (records.starts[job_id] - returned) * 1000 for job_id, (_, returned) in added.items()
    ]
    return from_call, from_return


def latency_figures(
    report: Report,
    server: BenchServer,
    features: Features,
    *,
    count: int,
    runs: int,
    node: str | None,
) -> None:
    """p50, p95 and p99 of add -> start for every driver/runtime pair, and for Node.

    Args:
        node: ``None`` to leave Node out, ``""`` to measure it, or why it cannot run.
    """
    configs = [
        python_config(driver, runtime)
        for driver, runtime in PYTHON_PAIRS
        if runtime == "asyncio" or features.has("--runtime")
    ]
    if node == "":
        configs.append(node_config())
    elif node is not None:
        report.emit(Figure("latency", "latency node", "ms", skipped=node))
    per_run: dict[str, list[tuple[list[float], list[float]]]] = {c.label: [] for c in configs}
    for round_number in range(1, runs + 1):
        for config in configs:
            progress(f"latency {config.label}: run {round_number}/{runs} ({count} jobs)")
            per_run[config.label].append(latency_once(server, features, config, count))
    workload = f"{count} jobs {SPACING * 1000:g} ms apart, idle worker"
    for config in configs:
        measured = per_run[config.label]
        for name, fraction in QUANTILES:
            report.emit(
                Figure(
                    figure="latency",
                    name=f"latency {name} {config.label}",
                    unit="ms",
                    runs=[percentile(from_call, fraction) for from_call, _ in measured],
                    measured=f"add_job called -> task started, {workload}",
                )
            )
        for name, fraction in QUANTILES:
            report.emit(
                Figure(
                    figure="latency",
                    name=f"latency from commit {name} {config.label}",
                    unit="ms",
                    runs=[percentile(from_return, fraction) for _, from_return in measured],
                    measured=f"add_job returned -> task started, {workload}",
                )
            )
