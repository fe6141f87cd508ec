"""The Prometheus plugin: counters from a live worker, queue depth read at scrape time, health."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
import pytest
from prometheus_client import CollectorRegistry
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from graphile_worker.prometheus import MetricsServer, PrometheusPlugin
from graphile_worker.spec import JobSpec
from graphile_worker.task import task
from graphile_worker.utils import SyncWorkerUtils, WorkerUtils
from graphile_worker.worker import RunOnceSummary, Worker

from .worker.conftest import options

if TYPE_CHECKING:
    from graphile_worker.drivers import DatabaseDriver


@task("prom_ok")
async def succeed(payload: Any) -> None:
    return None


@task("prom_fail")
def fail(payload: Any) -> None:
    raise RuntimeError("deliberate failure")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    """One collection, as a scrape does it: ``'name{label=value,...}'`` -> value."""
    found = {}
    for metric in registry.collect():
        for sample in metric.samples:
            labels = ",".join(f"{key}={label}" for key, label in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


@pytest.fixture
def utils(driver: DatabaseDriver) -> WorkerUtils:
    return WorkerUtils(driver)


@pytest.fixture
def plugin(database_url: str) -> Iterator[PrometheusPlugin]:
    """A plugin on a registry of its own, reading depth from the test's database."""
    made = PrometheusPlugin(CollectorRegistry(), database_url=database_url, depth_min_interval=60)
    yield made
    made.close()


class TestLiveWorker:
    @pytest.mark.anyio
    async def test_counts_and_times_every_job_by_task(
        self, driver_name: str, driver: DatabaseDriver, utils: WorkerUtils
    ) -> None:
        registry = CollectorRegistry()
        plugin = PrometheusPlugin(registry, depth=False)
        await utils.add_jobs([("prom_ok", {"n": n}) for n in range(3)])
        await utils.add_job("prom_fail", {}, spec=JobSpec(max_attempts=2))
        await utils.add_job("prom_fail", {}, spec=JobSpec(max_attempts=1))
        summary = await Worker(options(driver, [succeed, fail], hooks=[plugin])).run_once()
        assert summary == RunOnceSummary(completed=3, failed=2, permanently_failed=1)

        ok, failing = {"task": "prom_ok"}, {"task": "prom_fail"}
        counters = {
            name: (value(registry, name, **ok), value(registry, name, **failing))
            for name in (
                "graphile_worker_jobs_started_total",
                "graphile_worker_jobs_completed_total",
                "graphile_worker_jobs_failed_total",
                "graphile_worker_jobs_permanently_failed_total",
            )
        }
        assert counters == {
            "graphile_worker_jobs_started_total": (3, 2),
            # Every series of a task exists from its first job on, so rate() sees the 0.
            "graphile_worker_jobs_completed_total": (3, 0),
            "graphile_worker_jobs_failed_total": (0, 2),
            "graphile_worker_jobs_permanently_failed_total": (0, 1),
        }
        run = "graphile_worker_job_run_seconds_count"
        assert value(registry, run, task="prom_ok", outcome="completed") == 3
        assert value(registry, run, task="prom_fail", outcome="failed") == 2
        latency = "graphile_worker_job_start_latency_seconds_count"
        assert value(registry, latency, **ok) == 3
        assert value(registry, latency, **failing) == 2
        assert value(registry, "graphile_worker_jobs_running", **ok) == 0
        assert value(registry, "graphile_worker_jobs_running", **failing) == 0
        # run_once drains and stops: the worker started, then began to shut down.
        healthy, body = plugin.health(60)
        assert (healthy, body["status"]) == (False, "stopping")

    @pytest.mark.anyio
    async def test_a_running_job_is_gauged_and_an_interrupted_one_counted(
        self, driver_name: str, driver: DatabaseDriver, utils: WorkerUtils
    ) -> None:
        registry = CollectorRegistry()
        plugin = PrometheusPlugin(registry, depth=False)
        started = anyio.Event()

        @task("prom_sleep")
        async def sleep(payload: Any) -> None:
            started.set()
            await anyio.sleep(30)

        await utils.add_job("prom_sleep", {})
        worker = Worker(options(driver, [sleep], hooks=[plugin], shutdown_grace_period=0))
        summaries: list[RunOnceSummary] = []

        async def run() -> None:
            summaries.append(await worker.run_once())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(run)
                await started.wait()
                assert value(registry, "graphile_worker_jobs_running", task="prom_sleep") == 1
                worker.stop()
        assert summaries == [RunOnceSummary(interrupted=1)]
        sleeping = {"task": "prom_sleep"}
        assert value(registry, "graphile_worker_jobs_interrupted_total", **sleeping) == 1
        assert value(registry, "graphile_worker_jobs_running", **sleeping) == 0
        assert value(registry, "graphile_worker_jobs_completed_total", **sleeping) == 0
        count = "graphile_worker_job_run_seconds_count"
        assert value(registry, count, task="prom_sleep", outcome="completed") == 0

    @pytest.mark.anyio
    async def test_local_queue_gauge_falls_back_to_zero_once_memory_is_empty(
        self, driver_name: str, driver: DatabaseDriver, utils: WorkerUtils
    ) -> None:
        from graphile_worker.worker import LocalQueueOptions

        registry = CollectorRegistry()
        plugin = PrometheusPlugin(registry, depth=False)
        await utils.add_jobs([("prom_ok", {"n": n}) for n in range(5)])
        worker = Worker(
            options(driver, [succeed], hooks=[plugin], local_queue=LocalQueueOptions(size=10))
        )
        assert await worker.run_once() == RunOnceSummary(completed=5)
        assert value(registry, "graphile_worker_jobs_completed_total", task="prom_ok") == 5
        assert value(registry, "graphile_worker_local_queue_jobs") == 0

    @pytest.mark.anyio
    async def test_local_queue_gauge_counts_each_job_out_as_it_leaves_memory(
        self, driver_name: str, driver: DatabaseDriver, utils: WorkerUtils
    ) -> None:
        """Out when it starts, or when it fails before starting (here: a bad payload)."""
        from graphile_worker.hooks import JobFetch
        from graphile_worker.hooks._dispatch import Hooks
        from graphile_worker.worker import LocalQueueOptions

        registry = CollectorRegistry()
        plugin = PrometheusPlugin(registry, depth=False)
        seen: list[float | None] = []

        @task("prom_counted")
        async def counted(payload: dict[str, int]) -> None:
            seen.append(value(registry, "graphile_worker_local_queue_jobs"))

        await utils.add_jobs(
            [("prom_counted", {"n": 1}), ("prom_counted", [2]), ("prom_counted", {"n": 3})]
        )
        await utils.add_job("prom_counted", {"n": 4})
        worker = Worker(
            options(driver, [counted], hooks=[plugin], local_queue=LocalQueueOptions(size=10))
        )
        assert await worker.run_once() == RunOnceSummary(
            completed=3, failed=1, permanently_failed=1
        )
        assert seen == [3, 1, 0]
        assert not Hooks([plugin]).watching(JobFetch), "no per-job fetch event is needed"


class TestDepth:
    """The depth collector runs in the scraping thread, on no event loop: plain sync tests."""

    def test_counts_by_task_queue_and_state_match_stats(
        self, plugin: PrometheusPlugin, sync_connection: psycopg.Connection[Any]
    ) -> None:
        utils = SyncWorkerUtils(sync_connection)
        utils.add_job("prom_ok", {})
        utils.add_job("prom_ok", {}, spec=JobSpec(queue_name="emails"))
        utils.add_job("prom_fail", {}, spec=JobSpec(run_at=_later()))
        stats = utils.stats()
        registry = plugin.registry
        for task_name, counts in stats.by_task.items():
            for state in ("ready", "scheduled", "locked", "retrying", "failed"):
                found = value(registry, "graphile_worker_task_jobs", task=task_name, state=state)
                assert found == getattr(counts, state), (task_name, state)
        assert value(registry, "graphile_worker_task_jobs", task="prom_ok", state="ready") == 2
        assert (
            value(registry, "graphile_worker_task_jobs", task="prom_fail", state="scheduled") == 1
        )
        assert value(registry, "graphile_worker_queue_jobs", queue="emails", state="ready") == 1
        assert value(registry, "graphile_worker_depth_errors_total") == 0

    def test_two_scrapes_within_the_interval_read_the_database_once(
        self, plugin: PrometheusPlugin, sync_connection: psycopg.Connection[Any]
    ) -> None:
        SyncWorkerUtils(sync_connection).add_job("prom_ok", {})
        assert plugin.depth is not None
        first = value(plugin.registry, "graphile_worker_task_jobs", task="prom_ok", state="ready")
        SyncWorkerUtils(sync_connection).add_job("prom_ok", {})
        second = value(plugin.registry, "graphile_worker_task_jobs", task="prom_ok", state="ready")
        assert (first, second) == (1, 1), "the second scrape must reuse the first reading"
        assert plugin.depth.reads == 1

    def test_unreachable_database_serves_the_last_figures_and_counts_the_error(
        self, database_url: str
    ) -> None:
        registry = CollectorRegistry()
        plugin = PrometheusPlugin(
            registry, database_url=database_url, depth_min_interval=0, depth_timeout=5
        )
        plugin.on_worker_start(_start())
        with SyncWorkerUtils.connect(database_url) as adder:
            adder.add_job("prom_ok", {})
        name = conninfo_to_dict(database_url)["dbname"]
        # ALTER DATABASE cannot target the database it runs in: use the maintenance one.
        admin = psycopg.connect(make_conninfo(database_url, dbname="postgres"), autocommit=True)
        try:
            assert value(registry, "graphile_worker_task_jobs", task="prom_ok", state="ready") == 1
            # Refuse new connections to the database, and end the reader's own one.
            admin.execute(f'alter database "{name}" with allow_connections false')
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s",
                (name,),
            )
            started = time.monotonic()
            samples = scrape(registry)
            assert time.monotonic() - started < 5
            ready = samples["graphile_worker_task_jobs{state=ready,task=prom_ok}"]
            assert ready == 1, "the last figures are served while the database is away"
            assert samples["graphile_worker_depth_errors_total{}"] == 1
            assert samples["graphile_worker_depth_age_seconds{}"] > 0
            assert plugin.health(max_outage=3600)[0]
            healthy, body = plugin.health(max_outage=0)
            assert not healthy and body["status"] == "database unreachable"
        finally:
            admin.execute(f'alter database "{name}" with allow_connections true')
            admin.close()
        assert plugin.health(max_outage=0)[0], "the next read succeeds again"
        plugin.close()

    def test_a_hung_read_does_not_hold_the_scrape(
        self, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        registry = CollectorRegistry()
        plugin = PrometheusPlugin(
            registry, database_url=database_url, depth_min_interval=0, depth_timeout=0.2
        )
        SyncWorkerUtils(sync_connection).add_job("prom_ok", {})
        assert value(registry, "graphile_worker_task_jobs", task="prom_ok", state="ready") == 1
        assert plugin.depth is not None
        try:
            # An exclusive lock on the jobs table makes the next stats() wait for it.
            sync_connection.execute("begin")
            sync_connection.execute("lock table graphile_worker._private_jobs")
            started = time.monotonic()
            ready = value(registry, "graphile_worker_task_jobs", task="prom_ok", state="ready")
            assert time.monotonic() - started < 2
            assert ready == 1
            assert plugin.depth.reads == 2
            # The read still in flight is not doubled by the next scrape.
            value(registry, "graphile_worker_task_jobs", task="prom_ok", state="ready")
            assert plugin.depth.reads == 2
        finally:
            sync_connection.execute("rollback")
            plugin.close()


class TestServer:
    def test_serves_metrics_and_health(self, plugin: PrometheusPlugin) -> None:
        with MetricsServer(plugin, port=0) as server:
            base = f"http://127.0.0.1:{server.port}"
            status, body = _get(f"{base}/healthz")
            assert status == 503 and json.loads(body)["status"] == "starting"
            plugin.on_worker_start(_start())
            status, body = _get(f"{base}/healthz")
            assert status == 200 and json.loads(body) == {"worker_id": "w1", "status": "ok"}
            status, body = _get(f"{base}/metrics")
            assert status == 200
            assert "graphile_worker_depth_errors_total 0.0" in body
            assert _get(f"{base}/nothing")[0] == 404


def test_bad_depth_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="depth_timeout"):
        PrometheusPlugin(CollectorRegistry(), depth_timeout=0)


def _start() -> Any:
    from graphile_worker.hooks import WorkerStart

    return WorkerStart("w1")


def _later() -> Any:
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) + timedelta(hours=1)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
