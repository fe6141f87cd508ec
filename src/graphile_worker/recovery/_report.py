"""What a sweep sees and does: registered workers, the jobs of dead ones, and the decisions.

Whether a recovered job's attempt counts is decided here, for every caller alike. The claim
spent the attempt when it locked the job; a dead worker cannot say whether it then ran it,
so the rule works from what its last heartbeat reported:

* the job was **running** at the last heartbeat: it started, it may have done part of its
  work, so the attempt stays spent;
* otherwise (it waited in the local queue, or was claimed after that heartbeat) the attempt
  is **refunded**, unless the job was already recovered once since its last real attempt
  (``last_error`` starts with :data:`RECOVERED_PREFIX`): a job that kills its worker as soon
  as it starts is never reported running, and must not get free attempts forever.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from datetime import datetime
from typing import Literal, Protocol, TypeAlias, final

from ..errors import ConfigurationError

__all__ = [
    "RECOVERED_PREFIX",
    "FailJob",
    "RecoverJob",
    "RecoverLater",
    "RecoverNow",
    "RecoveredJob",
    "RecoveryDecision",
    "StaleJob",
    "SweepReport",
    "WorkerInfo",
]

RECOVERED_PREFIX = "Recovered: "
"""How ``last_error`` of a recovered job begins."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One registered worker, as :func:`list_workers` reads it.

    Attributes:
        worker_id: The id in ``locked_by`` of what it holds, and its connections'
            ``application_name``.
        hostname: The machine it runs on.
        pid: Its process id there.
        library_version: The graphile-worker (Python) version it runs.
        started_at: When it registered.
        last_heartbeat_at: Its latest heartbeat.
        heartbeat_interval: Seconds between its heartbeats.
        stale_after: Seconds of silence after which it is given up.
        long_running_stale_after: The same for its jobs flagged ``long-running``.
        recovery_delay: Seconds its recovered jobs wait before running again.
        running_jobs: Jobs it reported running at its latest heartbeat.
        locked_jobs: Jobs it locks now (running, waiting in its local queue, or claimed).
        stale: Whether it has been silent for longer than ``stale_after``: the next sweep
            gives it up.
        checked_at: The database's time when this was read.
    """

    __module__ = "graphile_worker.recovery"

    worker_id: str
    hostname: str
    pid: int
    library_version: str
    started_at: datetime
    last_heartbeat_at: datetime
    heartbeat_interval: float
    stale_after: float
    long_running_stale_after: float
    recovery_delay: float
    running_jobs: int
    locked_jobs: int
    stale: bool
    checked_at: datetime


@final
@dataclasses.dataclass(frozen=True, slots=True)
class StaleJob:
    """A job locked by a worker that was given up, before the sweep decides its fate.

    Attributes:
        id: The job's id.
        task_identifier: Its task.
        queue_name: Its named queue, or ``None``.
        worker_id: The worker that was given up.
        locked_at: When that worker claimed it.
        attempts: Attempts counted so far, this one included.
        max_attempts: The job's limit.
        last_error: Its ``last_error`` before recovery.
        long_running: It carries the ``long-running`` flag.
        started: The worker reported it running at its last heartbeat.
        previously_recovered: Its ``last_error`` says it was recovered before.
    """

    __module__ = "graphile_worker.recovery"

    id: int
    task_identifier: str
    queue_name: str | None
    worker_id: str
    locked_at: datetime | None
    attempts: int
    max_attempts: int
    last_error: str | None
    long_running: bool
    started: bool
    previously_recovered: bool

    @property
    def spends_attempt(self) -> bool:
        """Whether recovering it keeps the claim's attempt spent (see the module's rule)."""
        return self.started or self.previously_recovered


@final
@dataclasses.dataclass(frozen=True, slots=True)
class RecoverNow:
    """Hand the job back, runnable after its worker's ``recovery_delay`` (the default)."""

    __module__ = "graphile_worker.recovery"


@final
@dataclasses.dataclass(frozen=True, slots=True)
class RecoverLater:
    """Hand the job back, runnable only after ``delay`` seconds."""

    __module__ = "graphile_worker.recovery"

    delay: float

    def __post_init__(self) -> None:
        delay = self.delay
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
            raise ConfigurationError(
                f"RecoverLater needs a delay of 0 or more seconds, not {delay!r}"
            )


@final
@dataclasses.dataclass(frozen=True, slots=True)
class FailJob:
    """Fail the job for good (``attempts`` set to ``max_attempts``), with ``reason`` recorded."""

    __module__ = "graphile_worker.recovery"

    reason: str


RecoveryDecision: TypeAlias = RecoverNow | RecoverLater | FailJob
"""What a ``recover_job`` interceptor returns for a job of a dead worker."""


class RecoverJob(Protocol):
    """An interceptor asked, for each job of a dead worker, what to do with it.

    Called inside the sweep's transaction, so it should answer quickly; a job whose side
    effects cannot be repeated safely is a good candidate for :class:`FailJob`.
    """

    def __call__(self, job: StaleJob, /) -> RecoveryDecision | Awaitable[RecoveryDecision]: ...


RecoverJob.__module__ = "graphile_worker.recovery"


@final
@dataclasses.dataclass(frozen=True, slots=True)
class RecoveredJob:
    """What a sweep did (or, in a dry run, would do) with one job of a dead worker.

    Attributes:
        job: The job as the sweep found it.
        action: ``"recovered"`` (handed back), ``"failed"`` (failed for good) or
            ``"deferred"`` (a ``long-running`` job whose worker has not yet been silent for
            ``long_running_stale_after``: left locked for a later sweep).
        attempt_spent: Whether the claim's attempt stays counted.
        run_at: When it may run again; ``None`` in a dry run and for deferred jobs.
    """

    __module__ = "graphile_worker.recovery"

    job: StaleJob
    action: Literal["recovered", "failed", "deferred"]
    attempt_spent: bool
    run_at: datetime | None = None


@final
@dataclasses.dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep found and did.

    Attributes:
        dry_run: Nothing was written; ``jobs`` says what would have been done.
        skipped: Another sweep held the lock, so this one did nothing (never in a dry run).
        workers: The workers given up (stale, or named as dead by the caller).
        jobs: Each of their jobs and what happened to it.
        unlocked_queues: Named queues they locked, now unlocked.
        forgotten_workers: Workers removed from the registry (those that lock nothing
            more; a worker with deferred jobs stays until they are recovered).
    """

    __module__ = "graphile_worker.recovery"

    dry_run: bool = False
    skipped: bool = False
    workers: tuple[str, ...] = ()
    jobs: tuple[RecoveredJob, ...] = ()
    unlocked_queues: tuple[str, ...] = ()
    forgotten_workers: tuple[str, ...] = ()

    def jobs_of(self, worker_id: str) -> tuple[RecoveredJob, ...]:
        """The entries of :attr:`jobs` that belonged to ``worker_id``."""
        return tuple(entry for entry in self.jobs if entry.job.worker_id == worker_id)
