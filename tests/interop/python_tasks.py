"""The Python twins of the Node harness's tasks (``harness.mjs``), for our worker.

Same identifiers, same behaviour, same tables, so either side can run any job of the suite
and the tests read one record of what happened:

* ``record``: succeed, recording the job;
* ``fail``: record the attempt, then raise ``payload["message"]`` (or a fixed message);
* ``hold``: record that it started, then keep the job (and its lock) until the test
  inserts its id into ``interop_release``; then succeed, or fail when told to;
* ``batch``: a batch job whose items that are objects with a ``fail`` message fail, so
  that only those are retried;
* ``fleet``: the mixed-fleet job: one ``interop_fleet`` row with the database clock at its
  start and end;
* ``typed_record`` (Python only): a handler class, so the payload is decoded into it.

The job is recorded in the shape Node's ``helpers.job`` has (``flags`` as an object of
``true`` members or null, times as ISO strings), so that :class:`~tests.interop.tables.Seen`
reads both sides alike.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, ClassVar

import anyio

from graphile_worker.errors import JobAbortedError
from graphile_worker.spec import Job
from graphile_worker.task import task
from graphile_worker.worker import RunOnceSummary, Worker, WorkerContext, WorkerOptions

__all__ = ["TASKS", "TypedRecord", "job_as_node_sees_it", "python_worker", "run_python_once"]

HOLD_LIMIT_SECONDS = 120.0

_RECORD = """
insert into public.interop_results
  (side, outcome, job_id, task_identifier, queue_name, locked_by, job)
values ('python', :outcome, :job_id, :task_identifier, :queue_name, :locked_by,
        CAST(:job AS jsonb))
"""


def job_as_node_sees_it(job: Job) -> dict[str, Any]:
    """``job`` in the JSON shape of Node's ``helpers.job``."""
    return {
        "id": str(job.id),
        "task_identifier": job.task_identifier,
        "queue_name": job.queue_name,
        "payload": job.payload,
        "priority": job.priority,
        "run_at": job.run_at.isoformat(),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
        "key": job.key,
        "locked_at": None if job.locked_at is None else job.locked_at.isoformat(),
        "locked_by": job.locked_by,
        "revision": job.revision,
        "flags": dict.fromkeys(sorted(job.flags), True) or None,
    }


async def _record(ctx: WorkerContext, outcome: str, **extra: Any) -> None:
    job = ctx.job
    async with ctx.transaction() as executor:
        await executor.execute(
            _RECORD,
            {
                "outcome": outcome,
                "job_id": job.id,
                "task_identifier": job.task_identifier,
                "queue_name": job.queue_name,
                "locked_by": job.locked_by,
                "job": json.dumps({**job_as_node_sees_it(job), **extra}),
            },
        )


@task("record")
async def record(payload: Any, ctx: WorkerContext) -> None:
    await _record(ctx, "ran")


@task("fail")
async def fail(payload: Any, ctx: WorkerContext) -> None:
    await _record(ctx, "failed")
    message = payload.get("message") if isinstance(payload, dict) else None
    raise RuntimeError(message if isinstance(message, str) else "deliberate failure from Python")


@task("hold")
async def hold(payload: Any, ctx: WorkerContext) -> None:
    await _record(ctx, "started")
    with anyio.move_on_after(HOLD_LIMIT_SECONDS) as scope:
        while True:
            if ctx.abort_requested:
                raise JobAbortedError("hold: worker is shutting down")
            async with ctx.transaction() as executor:
                outcome = await executor.fetchval(
                    "select outcome from public.interop_release where job_id = :job_id",
                    {"job_id": ctx.job.id},
                )
            if outcome is not None:
                break
            await anyio.sleep(0.02)
    if scope.cancelled_caught:
        raise RuntimeError("hold: never released")
    if outcome == "fail":
        await _record(ctx, "failed")
        raise RuntimeError("hold: released with failure")
    await _record(ctx, "ran")


@task("batch", batch=True)
async def batch(items: list[Any], ctx: WorkerContext) -> Sequence[BaseException | None]:
    await _record(ctx, "ran")
    return [
        RuntimeError(item["fail"])
        if isinstance(item, dict) and isinstance(item.get("fail"), str)
        else None
        for item in items
    ]


@dataclasses.dataclass(frozen=True)
class TypedRecord:
    """A handler class: jobs for ``typed_record`` are decoded into an instance and run."""

    IDENTIFIER: ClassVar[str] = "typed_record"
    text: str
    amount: float

    async def run(self, ctx: WorkerContext) -> None:
        await _record(ctx, "ran", decoded={"type": type(self).__name__, **dataclasses.asdict(self)})


_FLEET = """
insert into public.interop_fleet (n, job_id, side, queue_name, started_at, finished_at)
values (:n, :job_id, 'python', :queue_name,
        coalesce(CAST(CAST(:started_at AS text) AS timestamptz), clock_timestamp()),
        clock_timestamp())
"""


@task("fleet")
async def fleet(payload: Any, ctx: WorkerContext) -> None:
    queue = payload.get("q")
    started_at = None
    async with ctx.transaction() as executor:
        if queue is not None:
            started_at = await executor.fetchval("select clock_timestamp()::text")
            # Long enough that a second job of the same queue would visibly overlap.
            await anyio.sleep(0.001)
        await executor.execute(
            _FLEET,
            {
                "n": payload["n"],
                "job_id": ctx.job.id,
                "queue_name": queue,
                "started_at": started_at,
            },
        )


TASKS = [record, fail, hold, batch, fleet, TypedRecord]
"""Every task, for ``WorkerOptions(tasks=TASKS)``."""


def python_worker(url: str, schema: str, driver: str, **options: Any) -> Worker:
    """Our worker with the suite's tasks, embedded in the test (no signal handlers)."""
    return Worker(
        WorkerOptions(
            tasks=TASKS,
            database_url=url,
            driver=driver,
            schema=schema,
            install_signal_handlers=False,
            **options,
        )
    )


async def run_python_once(url: str, schema: str, driver: str, **options: Any) -> RunOnceSummary:
    """``run_once`` of :func:`python_worker`: every job runnable now, then return."""
    return await python_worker(url, schema, driver, **options).run_once()
