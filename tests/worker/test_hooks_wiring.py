"""The worker calls observers for every event and lets interceptors change outcomes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from graphile_worker.hooks import (
    Failed,
    FailRun,
    JobComplete,
    JobFail,
    JobFetch,
    JobPermanentlyFail,
    JobStart,
    Observer,
    Outcome,
    Plugin,
    Run,
    RunDecision,
    SkipRun,
    Succeeded,
    WorkerInit,
    WorkerShutdown,
    WorkerStart,
)
from graphile_worker.spec import Job, JobSpec
from graphile_worker.task import task
from graphile_worker.worker import RunOnceSummary, Worker, WorkerContext

from .conftest import job_row, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.hooks import Event
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_worker_init(self, event: WorkerInit) -> None:
        self.events.append(event)

    async def on_worker_start(self, event: WorkerStart) -> None:
        self.events.append(event)

    def on_worker_shutdown(self, event: WorkerShutdown) -> None:
        self.events.append(event)

    def on_job_fetch(self, event: JobFetch) -> None:
        self.events.append(event)

    def on_job_start(self, event: JobStart) -> None:
        self.events.append(event)

    def on_job_complete(self, event: JobComplete) -> None:
        self.events.append(event)

    def on_job_fail(self, event: JobFail) -> None:
        self.events.append(event)

    def on_job_permanently_fail(self, event: JobPermanentlyFail) -> None:
        self.events.append(event)


@task("good")
async def good(payload: Any) -> None:
    pass


@task("bad")
async def bad(payload: Any) -> None:
    raise LookupError("missing")


async def test_observers_see_every_event_in_order(
    driver: DatabaseDriver, utils: WorkerUtils
) -> None:
    recorder = Recorder()
    good_job = await utils.add_job("good", {}, spec=JobSpec(priority=1))
    bad_job = await utils.add_job("bad", {}, spec=JobSpec(priority=2, max_attempts=1))
    worker = Worker(options(driver, [good, bad], hooks=[recorder]))
    await worker.run_once()

    kinds = [
        (type(event).__name__, getattr(getattr(event, "job", None), "id", None))
        for event in recorder.events
    ]
    assert kinds == [
        ("WorkerInit", None),
        ("WorkerStart", None),
        ("JobFetch", good_job.id),
        ("JobStart", good_job.id),
        ("JobComplete", good_job.id),
        ("JobFetch", bad_job.id),
        ("JobStart", bad_job.id),
        ("JobFail", bad_job.id),
        ("JobPermanentlyFail", bad_job.id),
        ("WorkerShutdown", None),
    ]
    assert {getattr(event, "worker_id", None) for event in recorder.events} == {worker.worker_id}
    complete = recorder.events[4]
    assert isinstance(complete, JobComplete) and complete.duration >= 0
    fail = recorder.events[7]
    assert isinstance(fail, JobFail) and isinstance(fail.error, LookupError)
    assert fail.next_run_at is None  # last attempt: it will not be retried


async def test_job_fail_reports_when_the_job_runs_again(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    recorder = Recorder()
    job = await utils.add_job("bad", {})
    await Worker(options(driver, [bad], hooks=[recorder])).run_once()
    (fail,) = [event for event in recorder.events if isinstance(event, JobFail)]
    row = job_row(sync_connection, job.id)
    assert row is not None and fail.next_run_at == row["run_at"]
    assert not [event for event in recorder.events if isinstance(event, JobPermanentlyFail)]


async def test_a_failing_observer_never_stops_the_worker(
    driver: DatabaseDriver, utils: WorkerUtils, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Observer):
        def on_job_start(self, event: JobStart) -> None:
            raise RuntimeError("observer bug")

    await utils.add_job("good", {})
    summary = await Worker(options(driver, [good], hooks=[Broken()])).run_once()
    assert summary == RunOnceSummary(completed=1)
    assert "observer bug" in caplog.text


class TestInterceptors:
    async def test_skip_run_completes_without_running_and_fail_run_fails(
        self, driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
    ) -> None:
        ran: list[object] = []

        @task("guarded")
        async def guarded(payload: dict[str, str]) -> None:
            ran.append(payload["what"])

        def gate(job: Job, ctx: WorkerContext) -> RunDecision:
            what = ctx.payload["what"]  # type: ignore[index]
            decisions: dict[str, RunDecision] = {
                "skip": SkipRun(),
                "fail": FailRun("quota exceeded"),
            }
            return decisions.get(what, Run())

        skipped = await utils.add_job("guarded", {"what": "skip"})
        failed = await utils.add_job("guarded", {"what": "fail"})
        await utils.add_job("guarded", {"what": "run"})
        hooks = [Plugin("gate", before_job_run=[gate])]
        summary = await Worker(options(driver, [guarded], hooks=hooks)).run_once()

        assert ran == ["run"]
        assert summary == RunOnceSummary(completed=2, failed=1)
        assert job_row(sync_connection, skipped.id) is None
        row = job_row(sync_connection, failed.id)
        assert row is not None and "quota exceeded" in row["last_error"]
        assert "gate" in row["last_error"]

    async def test_a_raising_interceptor_fails_the_job(
        self, driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
    ) -> None:
        async def explode(job: Job, ctx: WorkerContext) -> RunDecision:
            raise ZeroDivisionError("interceptor bug")

        job = await utils.add_job("good", {})
        hooks = [Plugin("exploder", before_job_run=[explode])]
        assert await Worker(options(driver, [good], hooks=hooks)).run_once() == RunOnceSummary(
            failed=1
        )
        row = job_row(sync_connection, job.id)
        assert row is not None and "interceptor bug" in row["last_error"]

    async def test_after_job_run_overrides_the_outcome(
        self, driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
    ) -> None:
        def invert(job: Job, ctx: WorkerContext, outcome: Outcome) -> Outcome:
            if isinstance(outcome, Failed):
                return Succeeded()
            return Failed(RuntimeError("success is not enough"))

        good_job = await utils.add_job("good", {})
        bad_job = await utils.add_job("bad", {})
        hooks = [Plugin("invert", after_job_run=[invert])]
        summary = await Worker(options(driver, [good, bad], hooks=hooks)).run_once()
        assert summary == RunOnceSummary(completed=1, failed=1)
        assert job_row(sync_connection, bad_job.id) is None
        row = job_row(sync_connection, good_job.id)
        assert row is not None and row["last_error"] == "success is not enough"

    async def test_after_job_run_sees_the_batch_error_and_can_keep_it(
        self, driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
    ) -> None:
        outcomes: list[Outcome] = []

        def watch(job: Job, ctx: WorkerContext, outcome: Outcome) -> Outcome:
            outcomes.append(outcome)
            return outcome

        @task("half", batch=True)
        async def half(items: list[int]) -> list[BaseException | None]:
            return [None, KeyError(items[1])]

        job = await utils.add_job("half", [1, 2])
        hooks = [Plugin("watch", after_job_run=[watch])]
        await Worker(options(driver, [half], hooks=hooks)).run_once()
        assert len(outcomes) == 1 and isinstance(outcomes[0], Failed)
        row = job_row(sync_connection, job.id)
        assert row is not None and row["payload"] == [2]
