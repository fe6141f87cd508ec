"""The sweep, written once as a plan of statements, and the calls that run it.

:func:`sweep_plan` holds every decision and does no I/O: it yields statements and, once, a
:class:`DecisionRequest` for the jobs it found, which the runner answers (with the worker's
``recover_job`` hooks, or the default). :func:`sweep` and :func:`sweep_sync` drive it inside
one transaction; :func:`list_workers` and :func:`list_workers_sync` read the registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Collection, Generator, Iterator, Sequence
from typing import Any

from ..drivers.base import AsyncExecutor, DatabaseDriver, Row, SyncExecutor
from ..errors import ConfigurationError, MigrationError, QueryError
from ..sql import DEFAULT_SCHEMA, quote_identifier
from ..sql import recovery as statements
from ..sql._statement import (
    Operation,
    Statement,
    drive_async,
    drive_sync,
    perform_async,
    perform_sync,
    run_async,
    run_sync,
)
from ._report import (
    RECOVERED_PREFIX,
    FailJob,
    RecoveredJob,
    RecoverLater,
    RecoverNow,
    RecoveryDecision,
    StaleJob,
    SweepReport,
    WorkerInfo,
)

__all__ = [
    "Decide",
    "DecisionRequest",
    "list_workers",
    "list_workers_sync",
    "sweep",
    "sweep_plan",
    "sweep_sync",
]

Decide = Callable[[StaleJob], "RecoveryDecision | Awaitable[RecoveryDecision]"]
"""Asked for each job of a dead worker; see :class:`~graphile_worker.recovery.RecoverJob`."""

_UNDEFINED_TABLE = "42P01"
_NOW = RecoverNow()


@dataclasses.dataclass(frozen=True, slots=True)
class DecisionRequest:
    """A step of :func:`sweep_plan`: answer with one decision per job, in order."""

    jobs: tuple[StaleJob, ...]


def _default_decision(job: StaleJob) -> RecoveryDecision:
    return _NOW


@dataclasses.dataclass(frozen=True, slots=True)
class _Worker:
    worker_id: str
    last_heartbeat_at: Any
    running: frozenset[int]
    past_long_threshold: bool
    recovery_delay: float


def _stale_job(row: Row, worker: _Worker) -> StaleJob:
    last_error = row["last_error"]
    return StaleJob(
        id=row["id"],
        task_identifier=row["task_identifier"],
        queue_name=row["queue_name"],
        worker_id=worker.worker_id,
        locked_at=row["locked_at"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        last_error=last_error,
        long_running=row["long_running"],
        started=row["id"] in worker.running,
        previously_recovered=last_error is not None and last_error.startswith(RECOVERED_PREFIX),
    )


def _message(job: StaleJob, worker: _Worker, decision: RecoveryDecision, dead: bool) -> str:
    why = (
        f"worker {worker.worker_id} was reported dead"
        if dead
        else f"worker {worker.worker_id} stopped sending heartbeats (last at "
        f"{worker.last_heartbeat_at.isoformat()})"
    )
    if isinstance(decision, FailJob):
        return f"{RECOVERED_PREFIX}{why}; failed for good: {decision.reason}"
    if job.started:
        attempt = "it was running, so the attempt counts"
    elif job.previously_recovered:
        attempt = "it was recovered before without a real attempt, so this one counts"
    else:
        attempt = "it had not been reported running, so the attempt was refunded"
    return f"{RECOVERED_PREFIX}{why}; {attempt}"


def sweep_plan(
    schema: str, *, dry_run: bool, dead: Collection[str]
) -> Generator[Statement | DecisionRequest, Any, SweepReport]:
    """Give up stale workers (and those in ``dead``) and hand back what they lock.

    Must run inside one transaction. In a dry run nothing is locked or written; the report
    says what would be done.
    """
    if not dry_run:
        taken = yield statements.bind_sweep_lock(schema)
        if not taken:
            return SweepReport(skipped=True)
    worker_rows: list[Row] = yield statements.bind_stale_workers(
        schema, dead=sorted(dead), lock=not dry_run
    )
    if not worker_rows:
        return SweepReport(dry_run=dry_run)
    workers = {
        row["worker_id"]: _Worker(
            worker_id=row["worker_id"],
            last_heartbeat_at=row["last_heartbeat_at"],
            running=frozenset(row["running_job_ids"] or ()),
            past_long_threshold=row["past_long_threshold"],
            recovery_delay=row["recovery_delay"],
        )
        for row in worker_rows
    }
    worker_ids = list(workers)
    job_rows: list[Row] = yield statements.bind_stale_jobs(
        schema, worker_ids=worker_ids, lock=not dry_run
    )
    deferred: list[RecoveredJob] = []
    candidates: list[StaleJob] = []
    for row in job_rows:
        worker = workers[row["locked_by"]]
        job = _stale_job(row, worker)
        if job.long_running and not worker.past_long_threshold:
            deferred.append(RecoveredJob(job, "deferred", attempt_spent=True))
        else:
            candidates.append(job)
    decisions: Sequence[RecoveryDecision] = ()
    if candidates:
        decisions = yield DecisionRequest(tuple(candidates))
    specs: list[dict[str, object]] = []
    planned: list[tuple[StaleJob, RecoveryDecision]] = []
    for job, decision in zip(candidates, decisions, strict=True):
        worker = workers[job.worker_id]
        if isinstance(decision, RecoverLater):
            delay = decision.delay
        elif isinstance(decision, (RecoverNow, FailJob)):
            delay = worker.recovery_delay
        else:
            raise ConfigurationError(
                f"a recover_job interceptor returned {decision!r:.80} for job {job.id}; "
                f"expected RecoverNow(), RecoverLater(delay) or FailJob(reason)"
            )
        planned.append((job, decision))
        specs.append(
            {
                "id": job.id,
                "worker_id": job.worker_id,
                "action": "fail" if isinstance(decision, FailJob) else "recover",
                "spend": job.spends_attempt,
                "delay": delay,
                "message": _message(job, worker, decision, job.worker_id in dead).replace(
                    "\x00", "\\0"
                ),
            }
        )
    if dry_run:
        done = [
            RecoveredJob(
                job,
                "failed" if isinstance(decision, FailJob) else "recovered",
                attempt_spent=job.spends_attempt or isinstance(decision, FailJob),
            )
            for job, decision in planned
        ]
        return SweepReport(dry_run=True, workers=tuple(worker_ids), jobs=tuple(done + deferred))
    written: dict[int, Row] = {}
    if specs:
        rows = yield statements.bind_recover_jobs(schema, specs)
        written = {row["id"]: row for row in rows}
    recovered = [
        RecoveredJob(
            job,
            "failed" if isinstance(decision, FailJob) else "recovered",
            attempt_spent=job.spends_attempt or isinstance(decision, FailJob),
            run_at=written[job.id]["run_at"],
        )
        for job, decision in planned
        if job.id in written
    ]
    queue_rows = yield statements.bind_unlock_queues(schema, worker_ids=worker_ids)
    forgotten_rows = yield statements.bind_forget_workers(schema, worker_ids=worker_ids)
    return SweepReport(
        workers=tuple(worker_ids),
        jobs=tuple(recovered + deferred),
        unlocked_queues=tuple(sorted(row["queue_name"] for row in queue_rows)),
        forgotten_workers=tuple(row["worker_id"] for row in forgotten_rows),
    )


@contextlib.contextmanager
def _registry_required(schema: str) -> Iterator[None]:
    """Turn "no such table" into the error that says how to get the registry (every call)."""
    try:
        yield
    except QueryError as error:
        if error.sqlstate != _UNDEFINED_TABLE:
            raise
        raise MigrationError(
            f"schema {schema!r} has no worker registry ({statements.WORKER_REGISTRY_TABLE}); "
            f"run 'graphile-worker migrate' (or migrate()) with this version to add it"
        ) from error


async def sweep(
    executor: DatabaseDriver | AsyncExecutor,
    *,
    schema: str = DEFAULT_SCHEMA,
    dry_run: bool = False,
    dead: Collection[str] = (),
    decide: Decide | None = None,
    in_transaction: bool = False,
) -> SweepReport:
    """Give up workers whose heartbeat is older than their ``stale_after`` and recover their
    jobs (see :mod:`graphile_worker.recovery` for what happens to each).

    Args:
        executor: A driver (the sweep opens its own transaction), or with
            ``in_transaction=True`` any async executor inside a transaction you opened.
        schema: The graphile-worker schema.
        dry_run: Lock and write nothing; report what would be done.
        dead: Worker ids known to be dead (a supervisor saw the process exit): given up now,
            however recent their heartbeat.
        decide: Asked for each job (default: :class:`RecoverNow` for all).
        in_transaction: Run inside the caller's transaction.

    Raises:
        MigrationError: the schema has no worker registry (migrate it with this version).
        DatabaseError: the database failed; nothing was changed.
    """
    quote_identifier(schema)
    choose = decide or _default_decision

    async def run(current: AsyncExecutor) -> SweepReport:
        async def perform(step: Statement | DecisionRequest) -> Any:
            if isinstance(step, DecisionRequest):
                answers = []
                for job in step.jobs:
                    answer = choose(job)
                    if inspect.isawaitable(answer):
                        answer = await answer
                    answers.append(answer)
                return answers
            return await perform_async(step, current)

        return await drive_async(sweep_plan(schema, dry_run=dry_run, dead=dead), perform)

    with _registry_required(schema):
        if in_transaction:
            return await run(executor)
        if not isinstance(executor, DatabaseDriver):
            raise ConfigurationError(
                "sweep() needs a DatabaseDriver to open its transaction; pass "
                "in_transaction=True to run inside a transaction you already opened"
            )
        async with executor.transaction() as transaction:
            return await run(transaction)


def sweep_sync(
    executor: SyncExecutor,
    *,
    schema: str = DEFAULT_SCHEMA,
    dry_run: bool = False,
    dead: Collection[str] = (),
    decide: Callable[[StaleJob], RecoveryDecision] | None = None,
    in_transaction: bool = False,
) -> SweepReport:
    """:func:`sweep` over a blocking connection (autocommit, or ``in_transaction=True``)."""
    quote_identifier(schema)
    choose = decide or _default_decision

    def perform(step: Statement | DecisionRequest) -> Any:
        if isinstance(step, DecisionRequest):
            return [choose(job) for job in step.jobs]
        return perform_sync(step, executor)

    plan = sweep_plan(schema, dry_run=dry_run, dead=dead)
    with _registry_required(schema):
        if in_transaction:
            return drive_sync(plan, perform)
        executor.execute("begin")
        try:
            report = drive_sync(plan, perform)
        except BaseException:
            executor.execute("rollback")
            raise
        executor.execute("commit")
        return report


def _worker_info(row: Row) -> WorkerInfo:
    return WorkerInfo(
        worker_id=row["worker_id"],
        hostname=row["hostname"],
        pid=row["pid"],
        library_version=row["library_version"],
        started_at=row["started_at"],
        last_heartbeat_at=row["last_heartbeat_at"],
        heartbeat_interval=row["heartbeat_interval"],
        stale_after=row["stale_after"],
        long_running_stale_after=row["long_running_stale_after"],
        recovery_delay=row["recovery_delay"],
        running_jobs=row["running_jobs"],
        locked_jobs=row["locked_jobs"],
        stale=row["stale"],
        checked_at=row["checked_at"],
    )


def _list_plan(schema: str) -> Operation[list[WorkerInfo]]:
    rows: list[Row] = yield statements.bind_list_workers(schema)
    return [_worker_info(row) for row in rows]


async def list_workers(
    executor: DatabaseDriver | AsyncExecutor, *, schema: str = DEFAULT_SCHEMA
) -> list[WorkerInfo]:
    """Every registered worker, oldest first, with what it locks and whether it is stale.

    Node workers, and ours with recovery off, do not register and are not listed.

    Raises:
        MigrationError: the schema has no worker registry (migrate it with this version).
    """
    with _registry_required(schema):
        return await run_async(_list_plan(schema), executor)


def list_workers_sync(executor: SyncExecutor, *, schema: str = DEFAULT_SCHEMA) -> list[WorkerInfo]:
    """:func:`list_workers` over a blocking connection."""
    with _registry_required(schema):
        return run_sync(_list_plan(schema), executor)
