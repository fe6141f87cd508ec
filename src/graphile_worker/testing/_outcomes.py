"""What happened to each job of a test run: :class:`JobOutcome`, and the observer that collects it.

``Worker.run_once`` reports counts; a test wants to know which job failed, with which
exception, on which attempt. The collector is an ordinary
:class:`~graphile_worker.hooks.Observer`, so an outcome is exactly what the worker told
its hooks once it had written that outcome to the database: nothing is inferred from the
table afterwards, and the worker needs no testing mode.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal, TypeAlias, final

from .._error_text import error_text
from ..hooks import JobComplete, JobFail, JobInterrupted, Observer

if TYPE_CHECKING:
    from datetime import datetime

    from ..spec import JSON, Job

__all__ = ["JobOutcome", "OutcomeCollector", "OutcomeStatus"]

OutcomeStatus: TypeAlias = Literal["completed", "failed", "permanently_failed", "interrupted"]
"""How a job's last attempt in the run ended.

``"failed"`` jobs are still in the queue and will be retried after their back-off;
``"permanently_failed"`` ones failed for good (their last attempt, a ``PermanentJobError``
or a payload that cannot be decoded) and stay in the table, failed.
"""


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobOutcome:
    """One job's fate in a test run: its last attempt's result, and every error on the way.

    Attributes:
        job: The job as claimed for its last attempt in the run (``attempts`` counts that
            attempt; ``run_at`` is when it was due, not its back-off).
        status: How that attempt ended; see :data:`OutcomeStatus`.
        error: Why the last attempt failed (the handler's own exception object, a
            :class:`~graphile_worker.PayloadDecodeError`, ...); ``None`` when it succeeded.
        errors: The error of every failed attempt in the run, oldest first; with
            ``retry_failed`` a job that failed twice and then succeeded has two.
        next_run_at: When a ``"failed"`` job may run again, as the database decided.
    """

    __module__ = "graphile_worker.testing"

    job: Job
    status: OutcomeStatus
    error: BaseException | None = None
    errors: tuple[BaseException, ...] = ()
    next_run_at: datetime | None = None

    @property
    def id(self) -> int:
        """The job's id."""
        return self.job.id

    @property
    def task_identifier(self) -> str:
        """The job's task."""
        return self.job.task_identifier

    @property
    def payload(self) -> JSON:
        """The job's payload as stored (JSON, before the task decoded it)."""
        return self.job.payload

    @property
    def attempts(self) -> int:
        """Attempts the job has used in all, counting those before the run."""
        return self.job.attempts

    @property
    def succeeded(self) -> bool:
        """Whether the last attempt succeeded (the job was removed from the queue)."""
        return self.status == "completed"

    @property
    def error_message(self) -> str | None:
        """The last error as the worker recorded it in ``last_error``; ``None`` on success."""
        return None if self.error is None else error_text(self.error)

    def __repr__(self) -> str:
        # Assertion diffs show this; the whole Job (sixteen fields) would bury what matters.
        error = "" if self.error is None else f", error={self.error!r}"
        return (
            f"JobOutcome(id={self.id}, task={self.task_identifier!r}, status={self.status!r}, "
            f"attempts={self.attempts}{error})"
        )


class OutcomeCollector(Observer):
    """Collects a :class:`JobOutcome` per job from the worker's events, in claim order.

    Several runs may report into one collector (a retry is another ``run_once``): a job's
    entry is then updated in place, keeping its errors.
    """

    def __init__(self) -> None:
        self._outcomes: dict[int, JobOutcome] = {}

    def on_job_complete(self, event: JobComplete) -> None:
        self._record(event.job, "completed")

    def on_job_fail(self, event: JobFail) -> None:
        # next_run_at is None exactly when the job failed for good.
        status: OutcomeStatus = "failed" if event.next_run_at is not None else "permanently_failed"
        self._record(event.job, status, event.error, event.next_run_at)

    def on_job_interrupted(self, event: JobInterrupted) -> None:
        self._record(event.job, "interrupted", next_run_at=event.retry_at)

    def outcomes(self) -> list[JobOutcome]:
        """Every job's latest outcome, in the order the jobs were first claimed."""
        return list(self._outcomes.values())

    def _record(
        self,
        job: Job,
        status: OutcomeStatus,
        error: BaseException | None = None,
        next_run_at: datetime | None = None,
    ) -> None:
        previous = self._outcomes.get(job.id)
        errors = () if previous is None else previous.errors
        if error is not None:
            errors = (*errors, error)
        self._outcomes[job.id] = JobOutcome(
            job=job, status=status, error=error, errors=errors, next_run_at=next_run_at
        )
