"""What the Prometheus plugin costs: drain rate with ``--metrics-port`` against without.

``python -m tests.benchmarks.prometheus_overhead [--jobs N] [--runs N]`` drains the same
no-op workload with the drain benchmark's harness (``drain_once``: a worker subprocess,
timed from the first job's start to the table seen empty), alternating plugin off and on
run by run so drift of a shared machine spreads over both. While the plugin is on, a
thread scrapes ``/metrics`` every second, as a demanding Prometheus would, so the figure
includes scrapes and the depth read they trigger (once per 15 s). Prints the rates, the
per-round ratio and the load average; nothing is enforced (target: under 10 % slower).

A shared machine makes drain rates swing by a third from run to run, so ``--cpu`` measures
what load hardly moves instead: the worker's own CPU time per job, in process
(``Worker.run_once``, asyncpg on asyncio), with no hooks, with an observer that does nothing
on the same three events, and with the plugin (without depth: nothing scrapes it). The
difference between the last two is the plugin's own cost; between the first two, the cost
of having any observer at all.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import threading
import time
import urllib.request

import anyio
from prometheus_client import CollectorRegistry

from graphile_worker import LocalQueueOptions, task
from graphile_worker.hooks import JobComplete, JobFetch, JobStart, Observer
from graphile_worker.prometheus import PrometheusPlugin
from graphile_worker.worker import Worker, WorkerOptions

from .drain import python_config, run_interleaved, worker_contender
from .environment import BenchServer, detect_features
from .processes import WorkerConfig
from .workload import enqueue


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _scrape_every_second(url: str, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
        except OSError:  # noqa: PERF203 - once a second; the cost does not matter
            pass  # no worker with metrics is running right now


@task("bench_noop")
async def _noop(payload: object) -> None:
    return None


class _Bare(Observer):
    """Watches what the plugin watches per job, and does nothing: the cost of any observer."""

    def on_job_fetch(self, event: JobFetch) -> None:
        pass

    def on_job_start(self, event: JobStart) -> None:
        pass

    def on_job_complete(self, event: JobComplete) -> None:
        pass


def _hooks(kind: str) -> list[Observer]:
    if kind == "bare observer":
        return [_Bare()]
    if kind == "plugin":
        return [PrometheusPlugin(CollectorRegistry(), depth=False)]
    return []


async def _cpu_per_job(url: str, kind: str) -> float:
    worker = Worker(
        WorkerOptions(
            tasks=[_noop],
            database_url=url,
            driver="asyncpg",
            concurrency=24,
            local_queue=LocalQueueOptions(size=500),
            complete_job_batch_delay=0,
            fail_job_batch_delay=0,
            install_signal_handlers=False,
            migrate=False,
            hooks=_hooks(kind),
        )
    )
    started = time.process_time()
    summary = await worker.run_once()
    return (time.process_time() - started) / summary.completed * 1e6


def cpu_figures(jobs: int, runs: int) -> None:
    """Microseconds of worker CPU per job: no hooks, a bare observer, the plugin."""
    kinds = ("no hooks", "bare observer", "plugin")
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    with BenchServer(os.environ.get("DATABASE_URL"), {}) as server:
        for _ in range(runs):
            for kind in kinds:  # interleaved, as the drain rounds are
                with server.fresh_database() as url:
                    enqueue(url, jobs)
                    results[kind].append(anyio.run(_cpu_per_job, url, kind))
    print(f"worker CPU per job, {jobs:,} jobs, {runs} runs each (median, then runs):")
    for kind in kinds:
        runs_text = ", ".join(f"{value:.1f}" for value in results[kind])
        print(f"  {kind}: {statistics.median(results[kind]):.1f} us ({runs_text})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--driver", default="asyncpg")
    parser.add_argument("--runtime", default="asyncio")
    parser.add_argument("--cpu", action="store_true", help="measure CPU per job in process")
    arguments = parser.parse_args()
    if arguments.cpu:
        load_before = os.getloadavg()
        cpu_figures(arguments.jobs, arguments.runs)
        print(f"load average before {load_before}, after {os.getloadavg()}")
        return
    port = _free_port()
    base = python_config(arguments.driver, arguments.runtime)
    plain = WorkerConfig(label=f"{base.label} off", driver=base.driver, runtime=base.runtime)
    metered = WorkerConfig(
        label=f"{base.label} --metrics-port",
        driver=base.driver,
        runtime=base.runtime,
        extra_args=("--metrics-port", str(port)),
    )
    features = detect_features()
    stop = threading.Event()
    scraper = threading.Thread(
        target=_scrape_every_second, args=(f"http://127.0.0.1:{port}/metrics", stop), daemon=True
    )
    load_before = os.getloadavg()
    scraper.start()
    try:
        with BenchServer(os.environ.get("DATABASE_URL"), {}) as server:
            contenders = [
                worker_contender(server, features, plain),
                worker_contender(server, features, metered),
            ]
            results = run_interleaved(contenders, jobs=arguments.jobs, runs=arguments.runs)
    finally:
        stop.set()
    load_after = os.getloadavg()
    off = [run.rate for run in results[plain.label]]
    on = [run.rate for run in results[metered.label]]
    ratios = [metered_rate / plain_rate for metered_rate, plain_rate in zip(on, off, strict=True)]
    print(f"jobs per run: {arguments.jobs:,}; runs: {arguments.runs}")
    print(f"off: {', '.join(f'{rate:,.0f}' for rate in off)} jobs/s")
    print(f"on:  {', '.join(f'{rate:,.0f}' for rate in on)} jobs/s")
    print(
        f"median off {statistics.median(off):,.0f} jobs/s, on {statistics.median(on):,.0f} "
        f"jobs/s; median per-round ratio on/off {statistics.median(ratios):.3f}"
    )
    print(f"load average before {load_before}, after {load_after}")


if __name__ == "__main__":
    main()
