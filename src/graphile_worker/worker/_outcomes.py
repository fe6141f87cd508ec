"""Recording how jobs ended, one at a time or in batches, then counting and telling hooks.

A job's own task hands its :class:`~graphile_worker.worker._execute.Attempt` to
:meth:`OutcomeRecorder.record`. Without batching, that call writes the outcome and
returns; with ``complete_job_batch_delay``/``fail_job_batch_delay`` it only queues the
outcome in a :class:`~graphile_worker.worker._batcher.Batcher`, so the job's slot is free
at once, and the batcher writes many outcomes in one statement. Either way the
``JobComplete``/``JobFail``/``JobPermanentlyFail`` hooks fire once the outcome is in the
database (``JobFail`` carries the ``run_at`` the database chose), and the counters behind
:class:`~graphile_worker.worker.RunOnceSummary` count recorded outcomes only.

An outcome that cannot be written for a passing reason is never dropped at once: without
batching it goes to a batcher of its own, which retries it in the background for
``outcome_retry_window`` seconds exactly as a batch is retried. While anything is owed,
:attr:`OutcomeRecorder.troubled` tells the runner to claim nothing more.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from .._error_text import error_text
from .._log_fields import job_fields
from ..errors import DatabaseError
from ..hooks import JobComplete, JobFail, JobPermanentlyFail
from ..sql.worker import FailureSpec, Released
from ._batcher import GIVEN_UP_FATE, RETRY_MAX_DELAY, RETRY_WINDOW, Batcher, worth_retrying
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
_Item = TypeVar("_Item", _Success, _Failure)


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
        retry_window: ``outcome_retry_window``: seconds an outcome that cannot be written
            is retried before it is given up.
        retry_max_delay: ``outcome_retry_max_delay``: longest wait between two attempts.
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
        retry_window: float = RETRY_WINDOW,
        retry_max_delay: float = RETRY_MAX_DELAY,
    ) -> None:
        self._source = source
        self._hooks = hooks
        self._worker_id = worker_id
        self._logger = logger
        self._job_logger = job_logger
        self._retry_window = retry_window
        self.completed = self.failed = self.permanently_failed = 0
        self._batch_completions = complete_delay is not None
        self._batch_failures = fail_delay is not None
        # Without batching, a batcher still holds the outcomes whose own write failed.
        self._completions: Batcher[_Success, set[int]] = Batcher(
            name="complete",
            delay=complete_delay or 0.0,
            record=self._write_completions,
            recorded=self._completions_recorded,
            describe=_success_id,
            settled=settled,
            logger=logger,
            retry_window=retry_window,
            retry_max_delay=retry_max_delay,
            retry_only=complete_delay is None,
            worker_id=worker_id,
        )
        self._failures: Batcher[_Failure, dict[int, Released]] = Batcher(
            name="fail",
            delay=fail_delay or 0.0,
            record=self._write_failures,
            recorded=self._failures_recorded,
            describe=_failure_id,
            settled=settled,
            logger=logger,
            retry_window=retry_window,
            retry_max_delay=retry_max_delay,
            retry_only=fail_delay is None,
            worker_id=worker_id,
        )
        self._batchers: tuple[_AnyBatcher, ...] = (self._completions, self._failures)

    async def start(self, group: TaskGroup) -> None:
        """Start the batchers' background tasks in ``group``."""
        for batcher in self._batchers:
            await group.start(batcher.run)

    @property
    def troubled(self) -> bool:
        """Whether outcomes are owed that could not be written (claim nothing meanwhile)."""
        # Asked before every job taken from memory: a plain loop, no generator.
        for batcher in self._batchers:  # noqa: SIM110
            if batcher.troubled:
                return True
        return False

    @property
    def unrecorded(self) -> int:
        """Outcomes waiting in a batch or being written."""
        return sum(batcher.unrecorded for batcher in self._batchers)

    def held_ids(self) -> set[int]:
        """The jobs whose outcome is waiting to be written: still locked, and ours."""
        return {job_id for batcher in self._batchers for job_id in batcher.held_ids()}

    async def drain(self) -> None:
        """Write every outcome still waiting and stop the batchers; call shielded.

        Outcomes being retried get a last, bounded round (see
        :meth:`~graphile_worker.worker._batcher.Batcher.drain`), so a stop during an
        outage ends.
        """
        for batcher in self._batchers:
            await batcher.drain()

    # ---------------------------------------------------------------------- recording

    async def record(self, job: Job, attempt: Attempt) -> None:
        """Log the job's line, then record its outcome (or queue it for the next batch)."""
        log_outcome(self._job_logger, job, attempt, self._worker_id)
        if attempt.kind == "completed":
            success = _Success(job, attempt.duration)
            # While something is owed, the database is not answering: join the queue.
            if self._batch_completions or self.troubled:
                self._completions.add(success)
                return
            try:
                deleted = await self._write_completions([success])
            except DatabaseError as database_error:
                self._write_failed(self._completions, success, database_error)
                return
            await self._completions_recorded([success], deleted)
            return
        error = attempt.error
        assert error is not None
        failure = _Failure(
            job,
            error,
            FailureSpec(
                job.id,
                error_text(error),
                attempt.replacement_payload,
                attempt.delay,
                attempt.permanent,
            ),
        )
        if self._batch_failures or self.troubled:
            self._failures.add(failure)
            return
        try:
            recorded = await self._write_failures([failure])
        except DatabaseError as database_error:
            self._write_failed(self._failures, failure, database_error)
            return
        await self._failures_recorded([failure], recorded)

    def _write_failed(
        self, batcher: Batcher[_Item, Any], item: _Item, error: DatabaseError
    ) -> None:
        """A lone outcome could not be written: retry it in the background, or give it up."""
        job = item.job
        if not worth_retrying(error):
            self._logger.error(
                "Could not record the outcome of job %s (%s): %s. Giving up on it (this worker "
                "is %s): %s",
                job.id,
                job.task_identifier,
                error,
                self._worker_id,
                GIVEN_UP_FATE,
                extra=job_fields(job, self._worker_id),
            )
            return
        self._logger.warning(
            "Could not record the outcome of job %s (%s): %s; retrying for up to %.0fs, and "
            "claiming no new jobs until it is written",
            job.id,
            job.task_identifier,
            error,
            self._retry_window,
            extra=job_fields(job, self._worker_id),
        )
        batcher.add(item)

    # One attempt each: the batchers do the retrying, in both modes.
    async def _write_completions(self, items: list[_Success]) -> set[int]:
        return await self._source.complete([item.job for item in items], retry_delays=())

    async def _write_failures(self, items: list[_Failure]) -> dict[int, Released]:
        return await self._source.fail([item.spec for item in items], retry_delays=())

    async def _completions_recorded(self, items: list[_Success], deleted: set[int]) -> None:
        self.completed += len(items)
        if self._hooks and self._hooks.watching(JobComplete):
            for item in items:
                await self._hooks.notify(JobComplete(self._worker_id, item.job, item.duration))

    async def _failures_recorded(
        self, items: list[_Failure], recorded: dict[int, Released]
    ) -> None:
        # Count every attempt first, so the counts are right even if a hook is slow.
        for item in items:
            self.failed += 1
            if _final(item, recorded.get(item.job.id)):
                self.permanently_failed += 1
        if not self._hooks:
            return
        for item in items:
            job, error = item.job, item.error
            released = recorded.get(job.id)
            final = _final(item, released)
            if final and item.spec.permanent and job.attempts < job.max_attempts:
                # Failed for good with attempts left: observers see the job as stored.
                job = dataclasses.replace(job, attempts=job.max_attempts)
            next_run_at = None if final or released is None else released.run_at
            await self._hooks.notify(JobFail(self._worker_id, job, error, next_run_at))
            if final:
                await self._hooks.notify(JobPermanentlyFail(self._worker_id, job, error))


def _final(item: _Failure, released: Released | None) -> bool:
    """Whether the failure recorded for ``item`` leaves its job failed for good.

    Read from the row the statement returned when there is one (``max_attempts`` may have
    been changed since the claim); from the claimed job and the failure otherwise.
    """
    if released is not None and released.max_attempts is not None:
        return released.attempts >= released.max_attempts
    return item.spec.permanent or item.job.attempts >= item.job.max_attempts
