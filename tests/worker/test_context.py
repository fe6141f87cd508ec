"""WorkerContext: what a handler sees, queuing jobs (also inside a transaction), logging."""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from graphile_worker.errors import HookError
from graphile_worker.hooks import FailSchedule, Plugin, Schedule, ScheduleRequest, SkipSchedule
from graphile_worker.spec import Job, JobSpec
from graphile_worker.task import task
from graphile_worker.utils import WorkerUtils
from graphile_worker.worker import RunOnceSummary, Worker, WorkerContext

from .conftest import job_rows, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver

pytestmark = pytest.mark.anyio


async def test_context_carries_the_job_payload_worker_and_extensions(
    driver: DatabaseDriver, utils: WorkerUtils
) -> None:
    seen: dict[str, Any] = {}

    @task("inspect")
    async def inspect_ctx(payload: dict[str, int], ctx: WorkerContext) -> None:
        seen.update(
            job=ctx.job,
            payload=ctx.payload,
            worker_id=ctx.worker_id,
            extensions=ctx.extensions,
            abort=ctx.abort_requested,
            utils=ctx.utils,
            # The name handlers are annotated with is a runtime-checkable protocol.
            is_context=isinstance(ctx, WorkerContext),
        )

    added = await utils.add_job("inspect", {"a": 1})
    worker = Worker(options(driver, [inspect_ctx], extensions={"db": "state"}))
    await worker.run_once()
    job = seen["job"]
    assert isinstance(job, Job) and job.id == added.id and job.attempts == 1
    assert job.locked_by == worker.worker_id
    assert seen["payload"] == {"a": 1}
    assert seen["worker_id"] == worker.worker_id
    assert seen["extensions"] == {"db": "state"}
    assert isinstance(seen["extensions"], MappingProxyType)
    assert seen["abort"] is False
    assert isinstance(seen["utils"], WorkerUtils)
    assert seen["is_context"] is True


async def test_add_job_inside_a_transaction_commits_or_rolls_back_with_it(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @task("parent")
    async def parent(payload: dict[str, bool], ctx: WorkerContext) -> None:
        try:
            async with ctx.transaction() as executor:
                await executor.execute("create table if not exists marks (n int)")
                await executor.execute("insert into marks values (1)")
                await ctx.add_job("child", {"rollback": payload["rollback"]}, executor=executor)
                if payload["rollback"]:
                    raise RuntimeError("roll it back")
        except RuntimeError:
            pass

    await utils.add_job("parent", {"rollback": False})
    await utils.add_job("parent", {"rollback": True})
    await Worker(options(driver, [parent])).run_once()
    children = [row["payload"] for row in job_rows(sync_connection)]
    assert children == [{"rollback": False}]
    (marks,) = sync_connection.execute("select count(*) from marks").fetchone()  # type: ignore[misc]
    assert marks == 1


async def test_add_job_and_add_jobs_apply_before_job_schedule_hooks(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    def stamp(request: ScheduleRequest) -> Schedule | SkipSchedule | FailSchedule:
        if request.identifier == "skipped":
            return SkipSchedule()
        if request.identifier == "refused":
            return FailSchedule("not today")
        assert isinstance(request.payload, dict)
        return Schedule(payload={**request.payload, "stamped": True}, spec=JobSpec(priority=3))

    results: dict[str, object] = {}

    @task("spawner")
    async def spawner(payload: Any, ctx: WorkerContext) -> None:
        results["one"] = await ctx.add_job("child", {"n": 1})
        results["skipped"] = await ctx.add_job("skipped", {})
        results["many"] = await ctx.add_jobs([("child", {"n": 2}), ("skipped", {})])
        try:
            await ctx.add_job("refused", {})
        except HookError as error:
            results["refused"] = str(error)

    await utils.add_job("spawner", {})
    hooks = [Plugin("stamper", before_job_schedule=[stamp])]
    await Worker(options(driver, [spawner], hooks=hooks)).run_once()

    assert isinstance(results["one"], Job) and results["skipped"] is None
    assert isinstance(results["many"], list) and len(results["many"]) == 1
    assert "not today" in str(results["refused"])
    rows = job_rows(sync_connection)
    assert [(row["task_identifier"], row["payload"], row["priority"]) for row in rows] == [
        ("child", {"n": 1, "stamped": True}, 3),
        ("child", {"n": 2, "stamped": True}, 3),
    ]


async def test_job_logger_names_the_job(
    driver: DatabaseDriver, utils: WorkerUtils, caplog: pytest.LogCaptureFixture
) -> None:
    @task("chatty")
    async def chatty(payload: Any, ctx: WorkerContext) -> None:
        ctx.logger.info("hello %s", "there")

    job = await utils.add_job("chatty", {})
    with caplog.at_level(logging.INFO, logger="graphile_worker.worker"):
        await Worker(options(driver, [chatty])).run_once()
    hello = [record for record in caplog.records if "hello there" in record.getMessage()]
    assert len(hello) == 1
    assert hello[0].getMessage() == f"[job {job.id} chatty] hello there"
    assert hello[0].job_id == job.id  # type: ignore[attr-defined]
    assert hello[0].task_identifier == "chatty"  # type: ignore[attr-defined]
    completed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Completed")]
    assert len(completed) == 1
    assert completed[0].startswith(f"Completed task {job.id} (chatty, ")
    assert completed[0].endswith("ms) with success")


async def test_worker_logging_can_be_silenced(
    driver: DatabaseDriver, utils: WorkerUtils, caplog: pytest.LogCaptureFixture
) -> None:
    @task("quiet")
    async def quiet(payload: Any) -> None:
        pass

    await utils.add_job("quiet", {})
    quiet_logger = logging.getLogger("tests.worker.quiet")
    quiet_logger.setLevel(logging.WARNING)
    with caplog.at_level(logging.INFO):
        summary = await Worker(options(driver, [quiet], logger=quiet_logger)).run_once()
    assert summary == RunOnceSummary(completed=1)
    assert not [
        r for r in caplog.records if r.name in ("tests.worker.quiet", "graphile_worker.worker")
    ]
