"""Recording how jobs ended, one at a time or in batches, then counting and telling hooks.

A job's own task hands its :class:`~graphile_worker.worker._execute.Attempt` to
:meth:`OutcomeRecorder.record`. Without batching, that call writes the outcome and
returns; with ``complete_job_batch_delay``/``fail_job_batch_delay`` it only queues the
outcome in a :class:`~graphile_worker.worker._batcher.Batcher`, so the job's slot is free
at once, and the batcher writes many outcomes in one statement. Either way the
``JobComplete``/``JobFail``/``JobPermanentlyFail`` hooks fire once the outcome is in the
database (``JobFail`` carries the ``run_at`` the database chose), and the counters behind
:class:`~graphile_worker.worker.RunOnceSummary` count recorded outcomes only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from .._error_text import error_text
from ..errors import DatabaseError
from ..hooks import JobComplete, JobFail, JobPermanentlyFail
from ..sql.worker import FailureSpec, Released
from ._batcher import Batcher
from ._execute import log_outcome

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..hooks._dispatch import Hooks
    from ..spec import Job
    from ._execute import Attempt
    from ._fetch import JobSource

__all__ = ["OutcomeRecorder"]


# Not frozen, for the same reason as Attempt: one per finished job.
@dataclasses.dataclass(slots=True)
class _Success:
    job: Job
    duration: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Failure:
    job: Job
    error: BaseException
    spec: FailureSpec


_AnyBatcher: TypeAlias = "Batcher[_Success, set[int]] | Batcher[_Failure, dict[int, Released]]"


def _success_id(item: _Success) -> int:
    return item.job.id


def _failure_id(item: _Failure) -> int:
    return item.job.id


class OutcomeRecorder:
    """Writes outcomes for one run and keeps its counts.

    Args:
        source: Runs the statements.
        hooks: Told about each recorded outcome.
        worker_id: For the hook events.
        logger: The worker's logger, for database trouble.
        job_logger: Where the one line per job goes (``<logger>.jobs``), so that it can be
            silenced on its own.
        complete_delay: ``complete_job_batch_delay`` (``None``: no batching).
        fail_delay: ``fail_job_batch_delay`` (``None``: no batching).
        settled: Called after each batch (the runner then looks for jobs again).
    """

    def __init__(
        self,
        *,
        source: JobSource,
        hooks: Hooks,
        worker_id: str,
        logger: logging.Logger,
        job_logger: logging.Logger,
        complete_delay: float | None,
        fail_delay: float | None,
        settled: Callable[[], None],
    ) -> None:
        self._source = source
        self._hooks = hooks
        self._worker_id = worker_id
        self._logger = logger
        self._job_logger = job_logger
        self.completed = self.failed = self.permanently_failed = 0
        self._completions: Batcher[_Success, set[int]] | None = None
        self._failures: Batcher[_Failure, dict[int, Released]] | None = None
        if complete_delay is not None:
            self._completions = Batcher(
                name="complete",
                delay=complete_delay,
                record=self._write_completions,
                recorded=self._completions_recorded,
                describe=_success_id,
                settled=settled,
                logger=logger,
            )
        if fail_delay is not None:
            self._failures = Batcher(
                name="fail",
                delay=fail_delay,
                record=self._write_failures,
                recorded=self._failures_recorded,
                describe=_failure_id,
                settled=settled,
                logger=logger,
            )
        self._batchers: tuple[_AnyBatcher, ...] = tuple(
            batcher for batcher in (self._completions, self._failures) if batcher is not None
        )

    async def start(self, group: TaskGroup) -> None:
        """Start the batchers' background tasks in ``group`` (nothing without batching)."""
        for batcher in self._batchers:
            await group.start(batcher.run)

    @property
    def troubled(self) -> bool:
        """Whether a batch is being retried after a failure (claim nothing meanwhile)."""
        # Asked before every job taken from memory: a plain loop, no generator.
        for batcher in self._batchers:  # noqa: SIM110
            if batcher.troubled:
                return True
        return False

    @property
    def unrecorded(self) -> int:
        """Outcomes waiting in a batch or being written."""
        return sum(batcher.unrecorded for batcher in self._batchers)

    async def drain(self) -> None:
        """Write every outcome still waiting and stop the batchers; call shielded."""
        for batcher in self._batchers:
            await batcher.drain()

    # ---------------------------------------------------------------------- recording

    async def record(self, job: Job, attempt: Attempt) -> None:
        """Log the job's line, then record its outcome (or queue it for the next batch)."""
        log_outcome(self._job_logger, job, attempt)
        if attempt.kind == "completed":
            success = _Success(job, attempt.duration)
            if self._completions is not None:
                self._completions.add(success)
                return
            try:
                deleted = await self._write_completions([success])
            except DatabaseError as database_error:
                self._lost(job, database_error)
                return
            await self._completions_recorded([success], deleted)
            return
        error = attempt.error
        assert error is not None
        failure = _Failure(
            job, error, FailureSpec(job.id, error_text(error), attempt.replacement_payload)
        )
        if self._failures is not None:
            self._failures.add(failure)
            return
        try:
            recorded = await self._write_failures([failure])
        except DatabaseError as database_error:
            self._lost(job, database_error)
            return
        await self._failures_recorded([failure], recorded)

    def _lost(self, job: Job, error: DatabaseError) -> None:
        self._logger.error(
            "Could not record the outcome of job %s (%s): %s; it stays locked by %s "
            "until the stale-lock reset frees it",
            job.id,
            job.task_identifier,
            error,
            self._worker_id,
        )

    # A batcher retries by itself; a lone outcome retries inside JobSource (its default).
    async def _write_completions(self, items: list[_Success]) -> set[int]:
        jobs = [item.job for item in items]
        if self._completions is not None:
            return await self._source.complete(jobs, retry_delays=())
        return await self._source.complete(jobs)

    async def _write_failures(self, items: list[_Failure]) -> dict[int, Released]:
        specs = [item.spec for item in items]
        if self._failures is not None:
            return await self._source.fail(specs, retry_delays=())
        return await self._source.fail(specs)

    async def _completions_recorded(self, items: list[_Success], deleted: set[int]) -> None:
        self.completed += len(items)
        if self._hooks:
            for item in items:
                await self._hooks.notify(JobComplete(self._worker_id, item.job, item.duration))

    async def _failures_recorded(
        self, items: list[_Failure], recorded: dict[int, Released]
    ) -> None:
        # Count every attempt first, so the counts are right even if a hook is slow.
        for item in items:
            self.failed += 1
            if item.job.attempts >= item.job.max_attempts:
                self.permanently_failed += 1
        if not self._hooks:
            return
        for item in items:
            job, error = item.job, item.error
            final = job.attempts >= job.max_attempts
            released = recorded.get(job.id)
            next_run_at = None if final or released is None else released.run_at
            await self._hooks.notify(JobFail(self._worker_id, job, error, next_run_at))
            if final:
                await self._hooks.notify(JobPermanentlyFail(self._worker_id, job, error))
