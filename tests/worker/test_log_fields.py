"""Every log record about a job carries the job's fields, for structured logging."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from graphile_worker.spec import JobSpec
from graphile_worker.task import task
from graphile_worker.worker import Worker, WorkerContext

from .conftest import options

if TYPE_CHECKING:
    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio

FIELDS = ("job_id", "task_identifier", "queue_name", "attempt", "max_attempts", "worker_id")


@task("logs_ok")
async def succeed(payload: dict[str, Any], ctx: WorkerContext) -> None:
    ctx.logger.info("working on it", extra={"step": "one"})


@task("logs_fail")
def fail(payload: dict[str, Any]) -> None:
    raise RuntimeError("it broke")


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name, "<missing>") for name in FIELDS}


async def test_job_records_carry_the_jobs_fields(
    driver: DatabaseDriver, utils: WorkerUtils, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="graphile_worker")
    ok = await utils.add_job("logs_ok", {}, spec=JobSpec(queue_name="mail", max_attempts=3))
    bad = await utils.add_job("logs_fail", {}, spec=JobSpec(max_attempts=5))
    worker = Worker(options(driver, [succeed, fail]))
    summary = await worker.run_once()
    assert (summary.completed, summary.failed) == (1, 1)

    by_message = {record.getMessage(): record for record in caplog.records}
    [completed] = [r for m, r in by_message.items() if m.startswith("Completed task")]
    [failed] = [r for m, r in by_message.items() if m.startswith("Failed task")]
    [own] = [r for m, r in by_message.items() if m.endswith("working on it")]

    expected_ok = {
        "job_id": ok.id,
        "task_identifier": "logs_ok",
        "queue_name": "mail",
        "attempt": 1,
        "max_attempts": 3,
        "worker_id": worker.worker_id,
    }
    assert fields_of(completed) == expected_ok
    assert fields_of(own) == expected_ok
    assert own.step == "one"  # type: ignore[attr-defined]  # the task's own extra stays
    assert fields_of(failed) == {
        "job_id": bad.id,
        "task_identifier": "logs_fail",
        "queue_name": None,
        "attempt": 1,
        "max_attempts": 5,
        "worker_id": worker.worker_id,
    }
    for record in (completed, failed):
        duration = record.duration_ms  # type: ignore[attr-defined]
        assert isinstance(duration, float) and duration >= 0
    assert not hasattr(own, "duration_ms")
