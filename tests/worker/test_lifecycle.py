"""Starting and stopping: run(), async with, stop() from anywhere, grace period, release.

Signals are tested against a real subprocess in ``test_signals.py``; here the same
shutdown path is driven by ``stop()`` and by cancellation.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from graphile_worker.errors import ConfigurationError, JobAbortedError
from graphile_worker.hooks import JobInterrupted, Observer, WorkerShutdown
from graphile_worker.task import task
from graphile_worker.worker import RunOnceSummary, Worker, WorkerContext, WorkerOptions

from .conftest import eventually, job_row, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio


class Interruptions(Observer):
    def __init__(self) -> None:
        self.interrupted: list[JobInterrupted] = []
        self.shutdowns: list[str] = []

    def on_job_interrupted(self, event: JobInterrupted) -> None:
        self.interrupted.append(event)

    def on_worker_shutdown(self, event: WorkerShutdown) -> None:
        self.shutdowns.append(event.reason)


def sleeper(started: anyio.Event, seconds: float, aborted: list[bool] | None = None) -> object:
    @task("sleep")
    async def sleep(payload: Any, ctx: WorkerContext) -> None:
        started.set()
        await anyio.sleep(seconds)
        if aborted is not None:
            aborted.append(ctx.abort_requested)

    return sleep


def assert_released(
    connection: psycopg.Connection[Any], job_id: int, delay: float, before: datetime
) -> None:
    row = job_row(connection, job_id)
    assert row is not None
    assert row["attempts"] == 0, "the interrupted attempt must not count"
    assert row["locked_by"] is None and row["locked_at"] is None
    assert row["last_error"] is None
    assert before + timedelta(seconds=delay - 1) <= row["run_at"]
    assert row["run_at"] <= datetime.now(timezone.utc) + timedelta(seconds=delay + 1)


async def test_async_with_runs_jobs_and_stops_on_exit(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started = anyio.Event()
    aborted: list[bool] = []
    worker = Worker(options(driver, [sleeper(started, 0.2, aborted)]))
    async with worker:
        job = await utils.add_job("sleep", {})
        await started.wait()
    # Leaving the block waited for the running job, which saw the abort signal.
    assert aborted == [True]
    assert job_row(sync_connection, job.id) is None
    # The application's driver is still open.
    assert await driver.fetchval("select 1") == 1


async def test_stop_is_idempotent_and_works_from_another_thread(driver: DatabaseDriver) -> None:
    worker = Worker(options(driver, [sleeper(anyio.Event(), 0)]))

    def stop_twice() -> None:
        time.sleep(0.1)
        worker.stop()
        worker.stop()

    thread = threading.Thread(target=stop_twice)
    thread.start()
    with anyio.fail_after(5):
        await worker.run()
    thread.join()
    worker.stop()  # after the run: harmless


async def test_stop_from_a_thread_never_waits_for_the_event_loop(driver: DatabaseDriver) -> None:
    """The loop thread may itself be waiting for the thread calling stop(): no deadlock."""
    worker = Worker(options(driver, [sleeper(anyio.Event(), 0)]))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:  # exits once the run has stopped
            group.start_soon(worker.run)
            await anyio.sleep(0.2)
            thread = threading.Thread(target=worker.stop)
            thread.start()
            thread.join(timeout=5)  # blocks the event loop on purpose
            assert not thread.is_alive(), "stop() waited for the blocked event loop"


async def test_stop_before_run_makes_the_next_run_stop_at_once(driver: DatabaseDriver) -> None:
    worker = Worker(options(driver, [sleeper(anyio.Event(), 0)]))
    worker.stop()
    with anyio.fail_after(5):
        await worker.run()
    # The request was used up by that run; a new one runs until stopped again.
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await anyio.sleep(0.2)
        assert "running" in repr(worker)
        worker.stop()


async def test_a_worker_cannot_run_twice_at_once(driver: DatabaseDriver) -> None:
    worker = Worker(options(driver, [sleeper(anyio.Event(), 0)]))
    async with worker:
        with pytest.raises(RuntimeError, match="already running"):
            await worker.run_once()


async def test_jobs_past_the_grace_period_are_cancelled_and_released(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started = anyio.Event()
    observer = Interruptions()
    worker = Worker(
        options(
            driver,
            [sleeper(started, 30)],
            shutdown_grace_period=0.2,
            interrupted_job_retry_delay=60,
            hooks=[observer],
        )
    )
    job = await utils.add_job("sleep", {})
    before = datetime.now(timezone.utc)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await started.wait()
            worker.stop()
    assert_released(sync_connection, job.id, 60, before)
    assert [event.job.id for event in observer.interrupted] == [job.id]
    assert observer.interrupted[0].retry_at == job_row(sync_connection, job.id)["run_at"]  # type: ignore[index]
    assert observer.shutdowns == ["stop() was called"]


async def test_a_handler_that_gives_up_on_abort_is_released_at_once(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started = anyio.Event()
    sync_started = threading.Event()

    @task("cooperative")
    async def cooperative(payload: Any, ctx: WorkerContext) -> None:
        started.set()
        await ctx.wait_for_abort()
        raise JobAbortedError("stopping early")

    @task("polite_sync")
    def polite_sync(payload: Any, ctx: WorkerContext) -> None:
        sync_started.set()
        while not ctx.abort_requested:
            time.sleep(0.01)
        raise JobAbortedError("stopping early")

    first = await utils.add_job("cooperative", {})
    second = await utils.add_job("polite_sync", {})
    worker = Worker(
        options(driver, [cooperative, polite_sync], concurrency=2, shutdown_grace_period=30)
    )
    before = datetime.now(timezone.utc)
    with anyio.fail_after(5):  # far less than the 30 s grace period
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run_once)
            await started.wait()
            # Running, not only claimed: a job claimed but not yet started when the stop
            # comes is handed back without the delay, which is another test's subject.
            await eventually(sync_started.is_set)
            worker.stop()
    assert_released(sync_connection, first.id, 30, before)
    assert_released(sync_connection, second.id, 30, before)


async def test_run_once_reports_interrupted_jobs(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started = anyio.Event()
    worker = Worker(options(driver, [sleeper(started, 30)], shutdown_grace_period=0))
    job = await utils.add_job("sleep", {})
    summaries: list[RunOnceSummary] = []

    async def run() -> None:
        summaries.append(await worker.run_once())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await started.wait()
            worker.stop()
    assert summaries == [RunOnceSummary(interrupted=1)]
    assert job_row(sync_connection, job.id)["attempts"] == 0  # type: ignore[index]


async def test_cancelling_the_run_releases_its_jobs(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started = anyio.Event()
    worker = Worker(options(driver, [sleeper(started, 30)], interrupted_job_retry_delay=5))
    job = await utils.add_job("sleep", {})
    before = datetime.now(timezone.utc)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await started.wait()
            group.cancel_scope.cancel()
    assert_released(sync_connection, job.id, 5, before)


class TestOptions:
    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"concurrency": 0}, "concurrency"),
            ({"poll_interval": 0}, "poll_interval"),
            ({"poll_interval": float("nan")}, "poll_interval"),
            ({"shutdown_grace_period": -1}, "shutdown_grace_period"),
            ({"interrupted_job_retry_delay": "5"}, "interrupted_job_retry_delay"),
            ({"max_pool_size": True}, "max_pool_size"),
            ({"driver": "mysql"}, "driver"),
            ({"driver": object()}, "driver"),
            ({"schema": "pg_jobs"}, "pg_"),
            ({"forbidden_flags": "red"}, "forbidden_flags"),
            ({"forbidden_flags": [1]}, "forbidden_flags must hold only str"),
            ({"extensions": [1]}, "extensions"),
            ({"tasks": []}, "at least one task"),
            ({"tasks": "send_email"}, "tasks"),
        ],
    )
    def test_bad_options_are_refused_before_any_sql(
        self, overrides: dict[str, Any], message: str
    ) -> None:
        settings: dict[str, Any] = {"tasks": [_noop]}
        settings.update(overrides)
        with pytest.raises(ConfigurationError, match=message):
            WorkerOptions(**settings)

    def test_defaults_follow_node(self) -> None:
        built = WorkerOptions(tasks=[_noop])
        assert (built.concurrency, built.poll_interval, built.max_pool_size) == (1, 2.0, 10)
        assert built.registry.identifiers == ("noop",)
        assert built.install_signal_handlers and built.migrate

    def test_hooks_must_be_plugins_or_observers(self) -> None:
        with pytest.raises(ConfigurationError):
            Worker(WorkerOptions(tasks=[_noop], hooks=[lambda: None]))  # type: ignore[list-item]


@task("noop")
async def _noop(payload: Any) -> None:
    pass


async def test_an_error_in_the_async_with_block_cancels_and_releases(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started = anyio.Event()
    job = await utils.add_job("sleep", {})
    before = datetime.now(timezone.utc)
    with anyio.fail_after(5), pytest.raises(ZeroDivisionError):
        async with Worker(options(driver, [sleeper(started, 30)], interrupted_job_retry_delay=7)):
            await started.wait()
            1 / 0  # noqa: B018
    assert_released(sync_connection, job.id, 7, before)


def _refusing_url(database_url: str) -> str:
    """The test database's URL with a port nothing listens on."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_url)
    host = parts.hostname or "127.0.0.1"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}@{host}:1"))


async def test_async_with_raises_a_start_up_error_as_run_does_not_as_a_group(
    database_url: str, driver_name: str
) -> None:
    from graphile_worker.errors import ConnectionLostError

    url = _refusing_url(database_url)
    settings = options(driver_name, [sleeper(anyio.Event(), 0)], database_url=url)
    with pytest.raises(ConnectionLostError) as from_run:
        await Worker(settings).run()
    # The very same exception type, unwrapped, as an application lifespan shows it.
    with pytest.raises(ConnectionLostError) as from_block:
        async with Worker(settings):
            pytest.fail("the block must not run when the worker cannot start")
    assert type(from_block.value) is type(from_run.value)


async def test_async_with_raises_a_refused_start_unwrapped(
    database_url: str, driver_name: str
) -> None:
    from graphile_worker.errors import MigrationError

    # A schema that was never installed, and migrate=False: the worker refuses to start.
    settings = options(
        driver_name, [sleeper(anyio.Event(), 0)], database_url=database_url, schema="absent"
    )
    with pytest.raises(MigrationError, match="absent"):
        async with Worker(settings):
            pytest.fail("the block must not run when the worker cannot start")


async def test_async_with_raises_a_driver_runtime_mismatch_unwrapped(
    anyio_backend: str, database_url: str
) -> None:
    from graphile_worker.errors import DriverUnavailableError

    settings = options("asyncpg", [sleeper(anyio.Event(), 0)], database_url=database_url)
    if anyio_backend == "asyncio":
        async with Worker(settings) as worker:
            assert "running" in repr(worker)
        return
    with pytest.raises(DriverUnavailableError, match="asyncpg"):
        async with Worker(settings):
            pytest.fail("the block must not run when the worker cannot start")


async def test_task_group_start_returns_once_the_worker_is_looking_for_jobs(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started = anyio.Event()
    worker = Worker(options(driver, [sleeper(started, 0)]))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            await group.start(worker.run)
            assert "running" in repr(worker)
            job = await utils.add_job("sleep", {})
            await started.wait()
            await eventually(lambda: job_row(sync_connection, job.id) is None)
            worker.stop()
