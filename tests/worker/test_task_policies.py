"""Task policies: job defaults declared on a task or payload class, and how failures end.

Defaults (``@task(max_attempts=..., queue_name=..., ...)`` and a payload class's
``JOB_SPEC``) are checked by adding jobs through every entry point and reading the rows
back; ``PermanentJobError``, undecodable payloads and custom back-off by running a real
worker and reading ``attempts``, ``max_attempts``, ``run_at`` and ``last_error``. Handler
runs are counted in an append-only file, outside PostgreSQL, so that "ran once" is not
taken from the table under test.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from graphile_worker import (
    InvalidJobSpecError,
    JobSpec,
    PermanentJobError,
    TaskDefinitionError,
)
from graphile_worker.hooks import JobPermanentlyFail, Observer
from graphile_worker.sqlalchemy import add_job as sqlalchemy_add_job
from graphile_worker.task import Task, task
from graphile_worker.utils import SyncWorkerUtils
from graphile_worker.worker import RunOnceSummary, Worker, WorkerContext

from .conftest import job_row, job_rows, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio


@task(
    "send_email",
    max_attempts=3,
    queue_name="emails",
    priority=5,
    job_key=lambda payload: f"email:{payload['to']}",
    job_key_mode="preserve_run_at",
    flags=["smtp"],
)
async def send_email(payload: dict[str, Any]) -> None:
    pass


@dataclasses.dataclass
class Resize:
    IDENTIFIER: ClassVar[str] = "resize"
    JOB_SPEC: ClassVar[JobSpec] = JobSpec(max_attempts=2, queue_name="images", priority=-1)
    path: str


@task
async def resize(payload: Resize) -> None:
    pass


def _stored(connection: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    row = job_row(connection, job_id)
    assert row is not None
    return row


# ------------------------------------------------------------------------ defaults at add time


async def test_a_job_added_through_the_task_gets_its_defaults(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    job = await utils.add_job(send_email, {"to": "a@example.com"})

    row = _stored(sync_connection, job.id)
    assert (row["max_attempts"], row["queue_name"], row["priority"]) == (3, "emails", 5)
    assert row["key"] == "email:a@example.com"
    assert row["flags"] == {"smtp": True}


async def test_the_task_object_works_like_the_function(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    made = Task.from_function(send_email, max_attempts=7)
    job = await utils.add_job(made, {"to": "b@example.com"})

    row = _stored(sync_connection, job.id)
    assert row["max_attempts"] == 7
    assert row["key"] is None  # this Task was given no job_key


async def test_a_jobs_own_spec_overrides_the_defaults_field_by_field(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    job = await utils.add_job(
        send_email, {"to": "c@example.com"}, spec=JobSpec(priority=1, job_key="mine")
    )

    row = _stored(sync_connection, job.id)
    assert (row["max_attempts"], row["queue_name"], row["priority"]) == (3, "emails", 1)
    assert row["key"] == "mine"


async def test_the_default_key_mode_applies_to_the_computed_key(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    # preserve_run_at: adding the same key again keeps the waiting job's run_at.
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    first = await utils.add_job(send_email, {"to": "d@example.com"}, spec=JobSpec(run_at=later))
    second = await utils.add_job(
        send_email, {"to": "d@example.com"}, spec=JobSpec(run_at=later + timedelta(hours=1))
    )

    assert second.id == first.id
    assert _stored(sync_connection, first.id)["run_at"] == later


async def test_adding_by_identifier_does_not_see_the_defaults(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    job = await utils.add_job("send_email", {"to": "e@example.com"})

    row = _stored(sync_connection, job.id)
    assert (row["max_attempts"], row["queue_name"], row["priority"], row["key"]) == (
        25,
        None,
        0,
        None,
    )


async def test_a_payload_class_job_spec_applies_to_its_jobs(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    alone = await utils.add_job(Resize("a.png"))
    overridden = await utils.add_job(Resize("b.png"), spec=JobSpec(priority=3))
    through_task = await utils.add_job(resize, Resize("c.png"))
    batch = await utils.add_jobs([Resize("d.png"), (Resize("e.png"), JobSpec(max_attempts=9))])

    rows = {row["id"]: row for row in job_rows(sync_connection)}
    assert (rows[alone.id]["max_attempts"], rows[alone.id]["queue_name"]) == (2, "images")
    assert rows[alone.id]["priority"] == -1
    assert rows[overridden.id]["priority"] == 3
    assert rows[overridden.id]["queue_name"] == "images"
    assert rows[through_task.id]["queue_name"] == "images"
    assert [rows[job.id]["max_attempts"] for job in batch] == [2, 9]
    assert all(rows[job.id]["queue_name"] == "images" for job in batch)


async def test_add_jobs_takes_task_entries(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    added = await utils.add_jobs(
        [
            (send_email, {"to": "f@example.com"}),
            (send_email, {"to": "g@example.com"}, JobSpec(max_attempts=1)),
            ("send_email", {"to": "h@example.com"}),
        ],
        # The task's default key mode; add_jobs applies one mode to the whole batch.
        job_key_preserve_run_at=True,
    )

    rows = {row["id"]: row for row in job_rows(sync_connection)}
    assert [rows[job.id]["max_attempts"] for job in added] == [3, 1, 25]
    assert [rows[job.id]["key"] for job in added] == [
        "email:f@example.com",
        "email:g@example.com",
        None,
    ]


async def test_ctx_add_job_applies_the_defaults(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @task("fan_out")
    async def fan_out(payload: Any, ctx: WorkerContext) -> None:
        await ctx.add_job(send_email, {"to": "i@example.com"})

    await utils.add_job("fan_out", {})
    await Worker(options(driver, [fan_out])).run_once()

    (row,) = job_rows(sync_connection)
    assert (row["task_identifier"], row["max_attempts"], row["queue_name"]) == (
        "send_email",
        3,
        "emails",
    )


def test_sync_utils_and_sqlalchemy_apply_the_defaults(
    database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    import sqlalchemy
    from sqlalchemy.orm import Session

    by_utils = SyncWorkerUtils(sync_connection).add_job(send_email, {"to": "j@example.com"})
    engine = sqlalchemy.create_engine(
        database_url.replace("postgresql://", "postgresql+psycopg://")
    )
    try:
        with Session(engine) as session, session.begin():
            by_session = sqlalchemy_add_job(session, resize, Resize("k.png"))
    finally:
        engine.dispose()

    assert _stored(sync_connection, by_utils.id)["queue_name"] == "emails"
    assert _stored(sync_connection, by_session.id)["queue_name"] == "images"


# --------------------------------------------------------------------- refused at definition


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"priority": 40000}, "priority"),
        ({"queue_name": ""}, "queue"),
        ({"job_key": 12}, "job_key must be a str or a function"),
        ({"job_key_mode": "sometimes"}, "job_key_mode"),
        ({"backoff": 5}, "backoff must be a function"),
    ],
)
def test_bad_policies_are_refused_when_the_task_is_defined(
    policy: dict[str, Any], message: str
) -> None:
    async def handler(payload: Any) -> None:
        pass

    with pytest.raises(TaskDefinitionError, match=message):
        task("bad", **policy)(handler)


def test_defaults_on_a_task_whose_payload_class_routes_itself_are_refused() -> None:
    async def handler(payload: Resize) -> None:
        pass

    with pytest.raises(TaskDefinitionError, match=r"JOB_SPEC: ClassVar\[JobSpec\]"):
        task(max_attempts=4)(handler)


async def test_a_job_spec_that_is_not_a_job_spec_is_refused(utils: WorkerUtils) -> None:
    @dataclasses.dataclass
    class Odd:
        IDENTIFIER: ClassVar[str] = "odd"
        JOB_SPEC: ClassVar[object] = {"max_attempts": 2}

    with pytest.raises(InvalidJobSpecError, match=r"Odd.JOB_SPEC must be a JobSpec"):
        await utils.add_job(Odd())
    with pytest.raises(InvalidJobSpecError, match=r"job 0: .*Odd.JOB_SPEC"):
        await utils.add_jobs([Odd()])


async def test_a_job_key_function_that_raises_is_an_invalid_spec(utils: WorkerUtils) -> None:
    @task("keyed", job_key=lambda payload: payload["missing"])
    async def keyed(payload: dict[str, Any]) -> None:
        pass

    with pytest.raises(InvalidJobSpecError, match="job_key function raised KeyError"):
        await utils.add_job(keyed, {})


async def test_a_function_without_the_mark_is_refused(utils: WorkerUtils) -> None:
    async def plain(payload: Any) -> None:
        pass

    with pytest.raises(InvalidJobSpecError, match="without a task identifier"):
        await utils.add_job(plain, {})  # type: ignore[call-overload]


# ------------------------------------------------------------------------- how failures end


class _Runs:
    """Counts handler runs in an append-only file, one line per run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, name: str) -> None:
        with self.path.open("a") as file:
            file.write(name + "\n")

    def count(self, name: str) -> int:
        if not self.path.exists():
            return 0
        return self.path.read_text().splitlines().count(name)


class _Finals(Observer):
    def __init__(self) -> None:
        self.jobs: list[int] = []

    def on_job_permanently_fail(self, event: JobPermanentlyFail) -> None:
        self.jobs.append(event.job.id)


async def test_permanent_job_error_fails_the_job_at_once(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    runs = _Runs(tmp_path / "runs")

    @task("gone")
    async def gone(payload: Any) -> None:
        runs.add("gone")
        raise PermanentJobError("the account was deleted")

    job = await utils.add_job("gone", {})
    finals = _Finals()
    first = await Worker(options(driver, [gone], hooks=[finals])).run_once()
    await utils.reschedule_jobs([job.id], run_at=datetime.now(timezone.utc))
    second = await Worker(options(driver, [gone])).run_once()

    assert first == RunOnceSummary(failed=1, permanently_failed=1)
    assert finals.jobs == [job.id]
    assert second == RunOnceSummary()  # nothing left to run
    assert runs.count("gone") == 1
    row = _stored(sync_connection, job.id)
    assert (row["attempts"], row["max_attempts"]) == (25, 25)
    assert row["last_error"] == "the account was deleted"
    assert row["locked_by"] is None


async def test_an_undecodable_payload_fails_for_good_by_default(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    runs = _Runs(tmp_path / "runs")

    @task("typed")
    async def typed(payload: Resize) -> None:
        runs.add("typed")

    job = await utils.add_job("typed", {"wrong": 1})
    summary = await Worker(options(driver, [typed])).run_once()

    assert summary == RunOnceSummary(failed=1, permanently_failed=1)
    assert runs.count("typed") == 0
    row = _stored(sync_connection, job.id)
    assert row["attempts"] == row["max_attempts"] == 25
    assert "cannot decode its payload as Resize" in row["last_error"]


async def test_undecodable_payloads_can_be_retried_instead(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @task("typed")
    async def typed(payload: Resize) -> None:
        pass

    job = await utils.add_job("typed", {"wrong": 1})
    summary = await Worker(options(driver, [typed], retry_undecodable_payloads=True)).run_once()

    assert summary == RunOnceSummary(failed=1)
    row = _stored(sync_connection, job.id)
    assert (row["attempts"], row["max_attempts"]) == (1, 25)


def _delay_of(connection: psycopg.Connection[Any], job_id: int) -> float:
    """Seconds from the database's now to the job's run_at."""
    with connection.cursor() as cursor:
        cursor.execute(
            "select extract(epoch from run_at - now()) from graphile_worker._private_jobs "
            "where id = %s",
            (job_id,),
        )
        row = cursor.fetchone()
    assert row is not None
    return float(row[0])


@pytest.mark.parametrize(
    "backoff", [lambda attempts: 600.0 * attempts, lambda attempts: timedelta(minutes=10)]
)
async def test_a_custom_backoff_replaces_nodes_formula(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    backoff: Any,
) -> None:
    @task("flaky", backoff=backoff)
    async def flaky(payload: Any) -> None:
        raise RuntimeError("try later")

    job = await utils.add_job("flaky", {})
    await Worker(options(driver, [flaky])).run_once()

    # Node's delay after the first attempt would be e ~ 2.7 s.
    assert 590 <= _delay_of(sync_connection, job.id) <= 600
    assert _stored(sync_connection, job.id)["attempts"] == 1


async def test_a_batch_whose_failed_items_are_all_permanent_fails_for_good(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @task("items", batch=True)
    async def items(payload: list[int]) -> list[BaseException | None]:
        return [None if item % 2 else PermanentJobError(f"bad {item}") for item in payload]

    permanent = await utils.add_job("items", [1, 2, 3, 4])
    mixed_payload = await utils.add_job("items_mixed", [1, 2])

    @task("items_mixed", batch=True)
    async def items_mixed(payload: list[int]) -> list[BaseException | None]:
        return [PermanentJobError("bad"), ValueError("maybe later")]

    summary = await Worker(options(driver, [items, items_mixed])).run_once()

    assert summary == RunOnceSummary(failed=2, permanently_failed=1)
    row = _stored(sync_connection, permanent.id)
    assert row["attempts"] == row["max_attempts"]
    assert row["payload"] == [2, 4]  # the items that succeeded are not kept
    mixed = _stored(sync_connection, mixed_payload.id)
    assert (mixed["attempts"], mixed["max_attempts"]) == (1, 25)


# ------------------------------------------------------------------ edges found in review


async def test_a_spec_that_is_not_a_job_spec_is_refused_with_defaults_too(
    utils: WorkerUtils,
) -> None:
    with pytest.raises(InvalidJobSpecError, match="spec must be a JobSpec, not dict"):
        await utils.add_job(send_email, {"to": "x@example.com"}, spec={"priority": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidJobSpecError, match="spec must be a JobSpec, not dict"):
        await utils.add_job(Resize("x.png"), spec={"priority": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidJobSpecError, match="job 0: spec must be a JobSpec"):
        await utils.add_jobs([(send_email, {"to": "y@example.com"}, {"priority": 1})])  # type: ignore[list-item]


async def test_the_payload_class_job_spec_applies_when_the_task_is_named_too(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    one = await utils.add_job("resize", Resize("n.png"))
    batch = await utils.add_jobs([("resize", Resize("o.png")), ("resize", {"path": "p.png"})])

    rows = {row["id"]: row for row in job_rows(sync_connection)}
    assert [rows[job.id]["queue_name"] for job in (one, *batch)] == ["images", "images", None]


async def test_add_jobs_uses_the_batch_key_mode_not_the_tasks(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @task("dedupe", job_key=lambda payload: f"d:{payload['n']}", job_key_mode="unsafe_dedupe")
    async def dedupe(payload: dict[str, int]) -> None:
        pass

    first = await utils.add_job(dedupe, {"n": 1})
    again = await utils.add_job(dedupe, {"n": 1, "v": 2})  # unsafe_dedupe: nothing changes
    batch = await utils.add_jobs([(dedupe, {"n": 1, "v": 3})])  # the batch replaces

    assert again.id == first.id
    assert batch[0].id == first.id
    assert _stored(sync_connection, first.id)["payload"] == {"n": 1, "v": 3}


async def test_a_task_entry_alone_is_refused_as_a_batch(utils: WorkerUtils) -> None:
    with pytest.raises(InvalidJobSpecError, match="takes a list of jobs"):
        await utils.add_jobs((send_email, {"to": "z@example.com"}))  # type: ignore[arg-type]


async def test_the_payload_class_itself_is_refused_with_a_hint(utils: WorkerUtils) -> None:
    with pytest.raises(InvalidJobSpecError, match=r"the class Resize itself; pass an instance"):
        await utils.add_job(Resize, {"path": "q.png"})


async def test_a_job_key_function_must_return_a_str(utils: WorkerUtils) -> None:
    @task("numbered", job_key=lambda payload: payload["n"])
    async def numbered(payload: dict[str, int]) -> None:
        pass

    with pytest.raises(InvalidJobSpecError, match="returned 3; it must return a str"):
        await utils.add_job(numbered, {"n": 3})


async def test_ctx_add_jobs_takes_task_entries(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @task("fan_out_many")
    async def fan_out_many(payload: Any, ctx: WorkerContext) -> None:
        await ctx.add_jobs(
            [(send_email, {"to": "m@example.com"}), Resize("m.png")],
            job_key_preserve_run_at=True,
        )

    await utils.add_job("fan_out_many", {})
    await Worker(options(driver, [fan_out_many])).run_once()

    rows = sorted(job_rows(sync_connection), key=lambda row: row["task_identifier"])
    assert [(row["task_identifier"], row["queue_name"]) for row in rows] == [
        ("resize", "images"),
        ("send_email", "emails"),
    ]


async def test_a_payload_decode_error_a_handler_raises_itself_is_retried(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    from graphile_worker import PayloadDecodeError

    @task("inner")
    async def inner(payload: dict[str, Any]) -> None:
        raise PayloadDecodeError("the attachment inside could not be parsed")

    job = await utils.add_job("inner", {})
    summary = await Worker(options(driver, [inner])).run_once()

    assert summary == RunOnceSummary(failed=1)
    assert _stored(sync_connection, job.id)["attempts"] == 1


async def test_a_group_of_permanent_errors_is_permanent(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    import anyio

    async def refuse(reason: str) -> None:
        raise PermanentJobError(reason)

    async def flaky() -> None:
        raise RuntimeError("maybe later")

    @task("all_permanent")
    async def all_permanent(payload: Any) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(refuse, "a")
            group.start_soon(refuse, "b")

    @task("one_not")
    async def one_not(payload: Any) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(refuse, "a")
            group.start_soon(flaky)

    permanent = await utils.add_job("all_permanent", {})
    retried = await utils.add_job("one_not", {})
    summary = await Worker(options(driver, [all_permanent, one_not])).run_once()

    assert summary == RunOnceSummary(failed=2, permanently_failed=1)
    assert _stored(sync_connection, permanent.id)["attempts"] == 25
    assert _stored(sync_connection, retried.id)["attempts"] == 1


@pytest.mark.parametrize(
    ("backoff", "logged"),
    [
        (lambda attempts: -1, "returned -1 for attempt 1"),
        (lambda attempts: float("nan"), "returned nan"),
        (lambda attempts: "soon", "returned 'soon'"),
        (lambda attempts: 1 / 0, "raised ZeroDivisionError"),
        (lambda attempts: 10**400, "returned 1000"),
        (lambda attempts: 1e12, "returned 1000000000000.0"),
        (lambda attempts: timedelta.max, "from 0 to 365 days"),
        (lambda attempts: timedelta(days=366), "from 0 to 365 days"),
    ],
)
async def test_a_broken_backoff_falls_back_to_nodes_formula(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
    backoff: Any,
    logged: str,
) -> None:
    @task("far", backoff=backoff)
    async def far(payload: Any) -> None:
        raise RuntimeError("try later")

    job = await utils.add_job("far", {})
    with caplog.at_level(logging.ERROR, logger="graphile_worker.worker"):
        summary = await Worker(options(driver, [far], fail_job_batch_delay=0)).run_once()

    assert summary == RunOnceSummary(failed=1)
    row = _stored(sync_connection, job.id)
    assert row["attempts"] == 1 and row["locked_by"] is None
    assert 0 < _delay_of(sync_connection, job.id) <= 2.8
    assert any(logged in record.getMessage() for record in caplog.records)


async def test_a_handler_class_takes_its_backoff_from_the_class(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @dataclasses.dataclass
    class Slow:
        IDENTIFIER: ClassVar[str] = "slow"
        BACKOFF: ClassVar[Any] = staticmethod(lambda attempts: 900)

        async def run(self) -> None:
            raise RuntimeError("later")

    job = await utils.add_job(Slow())
    await Worker(options(driver, [Slow])).run_once()

    assert 890 <= _delay_of(sync_connection, job.id) <= 900


async def test_one_batched_statement_records_each_kind_of_failure(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @task("kinds", backoff=lambda attempts: 1000)
    async def kinds(payload: dict[str, str]) -> None:
        if payload["kind"] == "permanent":
            raise PermanentJobError("no")
        raise RuntimeError("later")

    @task("plain_failure")
    async def plain_failure(payload: Any) -> None:
        raise RuntimeError("later")

    permanent = await utils.add_job("kinds", {"kind": "permanent"})
    backed_off = await utils.add_job("kinds", {"kind": "later"})
    plain = await utils.add_job("plain_failure", {})
    finals = _Finals()
    summary = await Worker(
        options(
            driver,
            [kinds, plain_failure],
            concurrency=3,
            fail_job_batch_delay=0.2,
            hooks=[finals],
        )
    ).run_once()

    assert summary == RunOnceSummary(failed=3, permanently_failed=1)
    assert finals.jobs == [permanent.id]
    assert _stored(sync_connection, permanent.id)["attempts"] == 25
    assert 990 <= _delay_of(sync_connection, backed_off.id) <= 1000
    assert 0 < _delay_of(sync_connection, plain.id) <= 2.8


async def test_an_interceptor_can_fail_a_job_for_good(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    from graphile_worker.hooks import Failed, Outcome, Plugin

    def give_up(job: Any, ctx: Any, outcome: Outcome) -> Outcome:
        if isinstance(outcome, Failed):
            return Failed(PermanentJobError(f"given up: {outcome.error}"))
        return outcome

    @task("failing")
    async def failing(payload: Any) -> None:
        raise RuntimeError("broken")

    fails: list[Any] = []

    class Fails(Observer):
        def on_job_fail(self, event: Any) -> None:
            fails.append((event.next_run_at, event.job.attempts, event.job.max_attempts))

    job = await utils.add_job("failing", {})
    summary = await Worker(
        options(driver, [failing], hooks=[Plugin("give_up", after_job_run=[give_up]), Fails()])
    ).run_once()

    assert summary == RunOnceSummary(failed=1, permanently_failed=1)
    assert fails == [(None, 25, 25)]  # observers see the job as stored
    assert _stored(sync_connection, job.id)["last_error"] == "given up: broken"
