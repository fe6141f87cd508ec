"""The public API used the way an application uses it; type-checked, never run.

``nox -s typing`` runs ``mypy --strict`` over this file (pytest never collects it: the
directory is in ``norecursedirs``). Each ``assert_type`` pins what a call returns, and each
``# type: ignore[code]`` marks a misuse the checker must refuse: with
``warn_unused_ignores``, an ignore that is no longer needed fails the check, so a signature
that starts accepting the misuse is caught here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, TypeVar, overload

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from typing_extensions import TypeVarTuple, Unpack, assert_type

import graphile_worker.sqlalchemy
from graphile_worker import (
    CronItem,
    Job,
    JobInput,
    JobKeyMode,
    JobSpec,
    MigrationReport,
    SyncWorkerUtils,
    Task,
    TaskRegistry,
    WorkerUtils,
    cron,
    parse_crontab,
    task,
)
from graphile_worker.drivers import (
    AsyncExecutor,
    DatabaseDriver,
    SQLAlchemyEngineDriver,
    create_driver,
)
from graphile_worker.hooks import (
    FailRun,
    JobComplete,
    JobFail,
    Observer,
    Outcome,
    Plugin,
    Run,
    RunDecision,
    Schedule,
    ScheduleDecision,
    ScheduleRequest,
    SkipRun,
    Succeeded,
)
from graphile_worker.testing import (
    JobOutcome,
    JobRunner,
    OutcomeStatus,
    StandaloneContext,
    SyncJobRunner,
    context_for_testing,
)
from graphile_worker.worker import (
    LocalQueueOptions,
    RunOnceSummary,
    Worker,
    WorkerContext,
    WorkerOptions,
)

_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")

# ------------------------------------------------------------------------------------ tasks


@dataclass
class SendEmail:
    """A handler class: its instances are the payload, so add_job needs no task name."""

    IDENTIFIER: ClassVar[str] = "send_email"
    to: str
    subject: str = ""

    async def run(self, ctx: WorkerContext) -> None:
        ctx.logger.info("sending %r to %s (attempt %d)", self.subject, self.to, ctx.job.attempts)


@dataclass
class Resize:
    """A typed payload for a function handler."""

    IDENTIFIER: ClassVar[str] = "resize"
    image_id: int
    width: int


@task
async def resize(payload: Resize, ctx: WorkerContext) -> None:
    await ctx.add_job(SendEmail(to="ops@example.com", subject=f"resized {payload.image_id}"))


@task("log_line")
def log_line(payload: dict[str, Any]) -> None:
    """A plain ``def`` handler; the worker runs it in a thread."""


@task("notify_all", batch=True)
async def notify_all(payload: list[SendEmail], ctx: WorkerContext) -> list[Exception | None]:
    """A batch handler: one ``None`` (done) or exception (retry that item) per item."""
    return [None if email.to else ValueError("no address") for email in payload]


# @task keeps a function callable and typed as it was.
RESIZE: Callable[[Resize, WorkerContext], Awaitable[None]] = resize
LOG_LINE: Callable[[dict[str, Any]], None] = log_line
_ = resize({"image_id": 1}, None)  # type: ignore[arg-type]

REGISTRY = TaskRegistry([resize, log_line, notify_all, SendEmail])

# ----------------------------------------------------------------------------- adding jobs


async def add_jobs_async(utils: WorkerUtils) -> None:
    assert_type(await utils.add_job(SendEmail(to="a@example.com")), Job)
    assert_type(await utils.add_job("resize", {"image_id": 1, "width": 64}), Job)
    assert_type(await utils.add_job("cleanup"), Job)
    spec = JobSpec(
        queue_name="images",
        run_at=datetime.now(timezone.utc) + timedelta(minutes=5),
        max_attempts=3,
        job_key="resize:1",
        job_key_mode=JobKeyMode.PRESERVE_RUN_AT,
        priority=-1,
        flags={"slow"},
    )
    assert_type(await utils.add_job(Resize(image_id=1, width=64), spec=spec), Job)
    assert_type(await utils.add_job("resize", {"image_id": 1}, spec=spec), Job)
    entries: list[JobInput] = [
        SendEmail(to="b@example.com"),
        (SendEmail(to="c@example.com"), JobSpec(priority=1)),
        ("resize", {"image_id": 2}),
        ("resize", {"image_id": 3}, spec),
    ]
    assert_type(await utils.add_jobs(entries, job_key_preserve_run_at=True), list[Job])
    assert_type(await utils.remove_job("resize:1"), "Job | None")
    assert_type(await utils.migrate(), MigrationReport)

    # The spec is keyword-only: a second positional argument is the payload.
    await utils.add_job(SendEmail(to="d@example.com"), spec)  # type: ignore[call-overload]
    # A typed payload is the whole payload; it takes no task name first.
    await utils.add_job("send_email", SendEmail(to="e@example.com"), spec)  # type: ignore[call-overload]
    await utils.add_job(spec=spec)  # type: ignore[call-overload]


@dataclass
class SendEmailPayload:
    """A payload without an IDENTIFIER: the task it goes to is named when adding it."""

    to: str


@task(max_attempts=3, queue_name="emails", job_key=lambda payload: f"to:{payload.to}")
async def send_email_task(payload: SendEmailPayload) -> None: ...


async def add_jobs_through_tasks(utils: WorkerUtils, sync_utils: SyncWorkerUtils) -> None:
    # A decorated function or a Task names the task and brings its defaults.
    assert_type(await utils.add_job(send_email_task, SendEmailPayload(to="a@b.c")), Job)
    made = Task.from_function(send_email_task, "other", backoff=lambda attempts: 2.0**attempts)
    assert_type(await utils.add_job(made, {"to": "a@b.c"}, spec=JobSpec(priority=1)), Job)
    assert_type(sync_utils.add_job(send_email_task, SendEmailPayload(to="d@e.f")), Job)
    assert_type(await utils.add_jobs([(send_email_task, SendEmailPayload(to="g@h.i"))]), list[Job])


def add_jobs_sync(utils: SyncWorkerUtils) -> None:
    assert_type(utils.add_job(SendEmail(to="a@example.com"), spec=JobSpec(priority=2)), Job)
    assert_type(utils.add_job("resize", {"image_id": 4}), Job)
    assert_type(utils.add_jobs([("resize", {"image_id": 5})]), list[Job])
    utils.add_job(SendEmail(to="f@example.com"), JobSpec())  # type: ignore[call-overload]


async def add_jobs_in_sessions(session: Session, async_session: AsyncSession) -> None:
    # With a sync session the job is added at once; with an async one the call is awaited.
    added = graphile_worker.sqlalchemy.add_job(session, SendEmail(to="g@example.com"))
    assert_type(added, Job)
    pending = graphile_worker.sqlalchemy.add_job(async_session, "resize", {"image_id": 6})
    _ = assert_type(pending, Coroutine[Any, Any, Job])
    assert_type(await pending, Job)
    assert_type(
        graphile_worker.sqlalchemy.add_jobs(session, [("resize", {"image_id": 7})]), list[Job]
    )
    assert_type(graphile_worker.sqlalchemy.using(session), SyncWorkerUtils)
    assert_type(graphile_worker.sqlalchemy.using(async_session), WorkerUtils)
    graphile_worker.sqlalchemy.add_job(session, SendEmail(to="h@example.com"), JobSpec())  # type: ignore[call-overload]


def misuse_is_refused() -> None:
    JobSpec(priority="high")  # type: ignore[arg-type]
    JobSpec(job_key_mode="overwrite")  # type: ignore[arg-type]
    JobSpec("images")  # type: ignore[call-arg]


# ---------------------------------------------------------------------------------- drivers


async def open_drivers() -> None:
    async with create_driver("postgresql://localhost/app", driver="psycopg-anyio") as driver:
        assert_type(driver, DatabaseDriver)
        rows = await driver.fetch("select 1 as one")
        assert_type(rows[0]["one"], Any)
        async with driver.transaction() as transaction:
            assert_type(transaction, AsyncExecutor)
            await transaction.execute("select pg_notify(:channel, '')", {"channel": "jobs"})
        async with WorkerUtils(driver) as utils:
            await utils.add_job("resize", {"image_id": 8})
    opened: DatabaseDriver = await create_driver(max_size=4)
    await opened.aclose()
    create_driver(min_size="1")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- hooks


class Metrics(Observer):
    """An observer: overrides the events it counts, sync or async."""

    def __init__(self) -> None:
        self.completed = 0

    def on_job_complete(self, event: JobComplete) -> None:
        self.completed += 1

    async def on_job_fail(self, event: JobFail) -> None:
        logging.getLogger("metrics").info("job %d failed: %s", event.job.id, event.error)


def only_small_images(job: Job, ctx: WorkerContext) -> RunDecision:
    if job.task_identifier == "resize" and ctx.extensions.get("maintenance"):
        return SkipRun()
    return Run() if job.attempts < 10 else FailRun("too many attempts")


async def tag_schedule(request: ScheduleRequest) -> ScheduleDecision:
    return Schedule(spec=JobSpec(queue_name="tagged")) if request.spec is None else Schedule()


def keep_outcome(job: Job, ctx: WorkerContext, outcome: Outcome) -> Outcome:
    return Succeeded() if job.task_identifier == "log_line" else outcome


class Quota(Plugin, Observer):
    """A plugin that also observes: interceptors are bound methods."""

    name = "quota"

    def __init__(self, limit: int) -> None:
        super().__init__(before_job_run=[self.check])
        self.limit = limit

    def check(self, job: Job, ctx: WorkerContext) -> RunDecision:
        return Run() if job.attempts <= self.limit else SkipRun()

    def on_job_complete(self, event: JobComplete) -> None:
        self.limit += 1


PLUGIN = Plugin(
    "audit",
    observers=[Metrics()],
    before_job_schedule=[tag_schedule],
    before_job_run=[only_small_images],
    after_job_run=[keep_outcome],
)
Plugin("wrong", before_job_run=[keep_outcome])  # type: ignore[list-item]

# ----------------------------------------------------------------------------------- cron

DIGEST: CronItem = cron(SendEmail).daily_at(4, 30).fill(days=1).queue("mail").build()
ROLLUP: CronItem = cron("rollup").every(4, "hours").payload({"full": False}).build()
PARSED: list[CronItem] = parse_crontab("0 */4 * * * rollup ?max=3")
cron(resize).daily_at("4:30")  # type: ignore[arg-type]

# --------------------------------------------------------------------------------- worker


async def run_worker(driver: DatabaseDriver) -> None:
    options = WorkerOptions(
        tasks=REGISTRY,
        driver=driver,
        concurrency=4,
        poll_interval=0.5,
        local_queue=LocalQueueOptions(size=100),
        forbidden_flags=lambda: {"slow"},
        extensions={"maintenance": False},
        hooks=[PLUGIN, Quota(3), Metrics()],
        crontab=[DIGEST, ROLLUP, *PARSED],
    )
    worker = Worker(options)
    summary = await worker.run_once()
    assert_type(summary, RunOnceSummary)
    assert_type(summary.completed, int)
    async with Worker(WorkerOptions(tasks=[resize, SendEmail], database_url="postgresql://")):
        pass
    WorkerOptions(tasks=[resize], concurrency="4")  # type: ignore[arg-type]
    await Worker(options).run_once(timeout=5)  # type: ignore[call-arg]


async def share_the_applications_engine() -> None:
    engine = create_engine("postgresql+psycopg://localhost/app", pool_size=10, max_overflow=5)
    async_engine = create_async_engine("postgresql+asyncpg://localhost/app")
    async with Worker(WorkerOptions(tasks=REGISTRY, driver=engine, max_pool_size=4)):
        pass
    await Worker(WorkerOptions(tasks=[resize], driver=async_engine)).run_once()
    shared: DatabaseDriver = SQLAlchemyEngineDriver(async_engine, max_connections=4)
    assert_type(SQLAlchemyEngineDriver(engine).engine, Engine | AsyncEngine)
    await WorkerUtils(shared).add_job("resize", {"image_id": 9})
    await WorkerUtils(engine).add_job("resize", {"image_id": 10})
    SQLAlchemyEngineDriver("postgresql://localhost/app")  # type: ignore[arg-type]


# ------------------------------------------------------------------- operations and observability


async def operate(utils: WorkerUtils, sync_utils: SyncWorkerUtils) -> None:
    from starlette.applications import Starlette

    import graphile_worker.otel
    from graphile_worker import GrantReport
    from graphile_worker.admin import AdminAuth, admin_app
    from graphile_worker.prometheus import MetricsServer, PrometheusPlugin

    report = await utils.grant("app_worker", read_only=False, dry_run=True)
    assert_type(report, GrantReport)
    assert_type(report.sql, str)
    assert_type(sync_utils.grant("dashboard", read_only=True).applied, bool)

    app = admin_app(utils, auth=AdminAuth.basic("s3cret"), read_only=True)
    assert_type(app, Starlette)
    admin_app("postgresql://localhost/app", auth=AdminAuth.bearer("token"))
    admin_app(utils)  # type: ignore[call-arg]

    metrics = PrometheusPlugin(depth=False, namespace="jobs")
    with MetricsServer(metrics, port=9464):
        pass
    graphile_worker.otel.instrument()
    tracing = graphile_worker.otel.TracingPlugin(parent="child", debug_spans=True)
    await Worker(WorkerOptions(tasks=[resize], hooks=[metrics, tracing])).run_once()
    graphile_worker.otel.TracingPlugin(parent="sibling")  # type: ignore[arg-type]


# ------------------------------------------------------------------ a context for handler tests


class FakeContext:
    """A stand-in WorkerContext, as a user's unit test would write one."""

    def __init__(self, job: Job, utils: WorkerUtils) -> None:
        self._job = job
        self._utils = utils
        self.added: list[tuple[object, JobSpec | None]] = []

    @property
    def job(self) -> Job:
        return self._job

    @property
    def payload(self) -> object:
        return self._job.payload

    @property
    def worker_id(self) -> str:
        return "test-worker"

    @property
    def extensions(self) -> Mapping[str, object]:
        return {}

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(logging.getLogger("test"), {"job_id": self._job.id})

    @property
    def utils(self) -> WorkerUtils:
        return self._utils

    @property
    def abort_requested(self) -> bool:
        return False

    async def wait_for_abort(self) -> None:
        return None

    def transaction(self) -> AbstractAsyncContextManager[AsyncExecutor]:
        raise NotImplementedError

    @overload
    async def add_job(
        self,
        payload: graphile_worker.TypedPayload,
        /,
        *,
        spec: JobSpec | None = None,
        executor: AsyncExecutor | AsyncSession | AsyncConnection | None = None,
    ) -> Job | None: ...

    @overload
    async def add_job(
        self,
        identifier: str | graphile_worker.TaskReference,
        payload: object = None,
        /,
        *,
        spec: JobSpec | None = None,
        executor: AsyncExecutor | AsyncSession | AsyncConnection | None = None,
    ) -> Job | None: ...

    async def add_job(
        self,
        target: graphile_worker.TypedPayload | str | graphile_worker.TaskReference,
        payload: object = None,
        /,
        *,
        spec: JobSpec | None = None,
        executor: AsyncExecutor | AsyncSession | AsyncConnection | None = None,
    ) -> Job | None:
        self.added.append((target, spec))
        return None

    async def add_jobs(
        self,
        jobs: Iterable[JobInput],
        *,
        job_key_preserve_run_at: bool = False,
        executor: AsyncExecutor | AsyncSession | AsyncConnection | None = None,
    ) -> list[Job]:
        return []

    def call_async(
        self, function: Callable[[Unpack[_Args]], Awaitable[_T]], *args: Unpack[_Args]
    ) -> _T:
        raise NotImplementedError


async def test_a_handler(job: Job, utils: WorkerUtils) -> None:
    ctx: WorkerContext = FakeContext(job, utils)
    await resize(Resize(image_id=9, width=32), ctx)
    await SendEmail(to="i@example.com").run(ctx)


# ------------------------------------------------------------ graphile_worker.testing


async def test_with_the_fixtures(
    graphile_worker_run_jobs: JobRunner,
    graphile_worker_sync_run_jobs: SyncJobRunner,
) -> None:
    outcomes = await graphile_worker_run_jobs(
        resize, SendEmail, retry_failed=True, extensions={"cdn": "fake"}
    )
    assert_type(outcomes, list[JobOutcome])
    first = outcomes[0]
    assert_type(first.status, OutcomeStatus)
    assert_type(first.error, BaseException | None)
    assert_type(first.errors, tuple[BaseException, ...])
    assert_type(first.job, Job)
    assert_type(first.attempts, int)
    assert_type(
        await graphile_worker_run_jobs(options=WorkerOptions(tasks=REGISTRY)), list[JobOutcome]
    )
    assert_type(graphile_worker_sync_run_jobs(log_line, retry_failed=2), list[JobOutcome])
    await graphile_worker_run_jobs(resize, retry_failed="yes")  # type: ignore[arg-type]
    await graphile_worker_run_jobs(resize, concurrency=4)  # type: ignore[call-arg]


async def test_a_handler_alone(driver: DatabaseDriver) -> None:
    # No database: whatever the handler needs from one raises a ConfigurationError.
    ctx = context_for_testing(Resize(image_id=1, width=32), attempts=3)
    assert_type(ctx, StandaloneContext)
    await resize(Resize(image_id=1, width=32), ctx)
    await SendEmail(to="i@example.com").run(context_for_testing(extensions={"smtp": "fake"}))
    # With a driver, ctx.add_job and ctx.utils work on that database.
    job = await WorkerUtils(driver).add_job(Resize(image_id=2, width=64))
    with_database: WorkerContext = context_for_testing(job.payload, job, driver=driver)
    assert_type(with_database.utils, WorkerUtils)
    ctx.request_abort()
    context_for_testing(attempts="3")  # type: ignore[arg-type]
