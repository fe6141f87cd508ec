"""Lifecycle events, and :class:`Observer`, the base class of hooks that watch them.

Events are frozen records of what happened (a job claimed, a job failed, a cron minute
scheduled); an observer overrides the ``on_*`` methods of the events it cares about.
:data:`EVENT_METHODS` routes each event type to its method, which is how the worker
dispatches only to what an observer overrides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Final, TypeAlias, final

from ..recovery import RecoveredJob
from ..spec import Job

__all__ = [
    "EVENT_METHODS",
    "CronScheduled",
    "CronTick",
    "Event",
    "JobComplete",
    "JobFail",
    "JobFetch",
    "JobInterrupted",
    "JobPermanentlyFail",
    "JobStart",
    "JobsClaimed",
    "LocalQueueFetched",
    "LocalQueueInit",
    "LocalQueueModeChange",
    "LocalQueueRefetchDelay",
    "LocalQueueReturned",
    "Observer",
    "ObserverResult",
    "OutcomesWritten",
    "WorkerInit",
    "WorkerRecovered",
    "WorkerShutdown",
    "WorkerStart",
]


@final
@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInit:
    """A worker was built and is about to connect; nothing has touched the database yet."""

    __module__ = "graphile_worker.hooks"

    worker_id: str


@final
@dataclasses.dataclass(frozen=True, slots=True)
class WorkerStart:
    """A worker is connected and migrated, and is about to look for jobs."""

    __module__ = "graphile_worker.hooks"

    worker_id: str


@final
@dataclasses.dataclass(frozen=True, slots=True)
class WorkerShutdown:
    """A worker stopped claiming jobs and is shutting down.

    Attributes:
        reason: Why, in words meant for logs (a signal, ``stop()``, an error).
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    reason: str


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobFetch:
    """A worker claimed (locked) a job; it may still be skipped by a ``before_job_run`` hook."""

    __module__ = "graphile_worker.hooks"

    worker_id: str
    job: Job


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobsClaimed:
    """One claim statement (the round trip that finds runnable jobs and locks them for this
    worker) came back, or failed.

    Sent for every claim, including those that find nothing; with a local queue, for each
    batch fetched into it, otherwise for each claim made for free slots. The times are
    wall-clock nanoseconds (``time.time_ns()``), the unit OpenTelemetry takes, so that an
    observer can describe the claim after the fact without timing it itself.

    Attributes:
        worker_id: The worker.
        requested: Jobs asked for (the free slots, or the room in the local queue).
        jobs: The jobs claimed, in the order they will start; empty when the claim failed.
        local_queue: Whether the claim fills the local queue rather than free slots.
        started_ns: When the statement was sent.
        ended_ns: When its jobs were decoded, or its error raised.
        error: Why the claim failed (a lost connection, a timeout), or ``None``. The
            error then goes on to the worker, which retries the claim later.
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    requested: int
    jobs: tuple[Job, ...]
    local_queue: bool
    started_ns: int
    ended_ns: int
    error: Exception | None = None

    @property
    def duration(self) -> float:
        """Seconds the claim took."""
        return (self.ended_ns - self.started_ns) / 1e9


@final
@dataclasses.dataclass(frozen=True, slots=True)
class OutcomesWritten:
    """One statement that records how jobs ended (``complete_jobs`` or ``fail_jobs``) came
    back, or failed.

    With ``complete_job_batch_delay``/``fail_job_batch_delay`` one statement records a
    batch; without, one job. A batch that fails for a passing reason is written again
    later, and each attempt is sent as an event of its own. Times are as in
    :class:`JobsClaimed`.

    Attributes:
        worker_id: The worker.
        action: ``"complete"`` (succeeded jobs, deleted) or ``"fail"`` (failed attempts,
            rescheduled or failed for good).
        job_ids: The jobs the statement was asked to record.
        written: How many of them the statement changed: completed jobs still in the
            table (a completion deletes the job whoever holds it, as in Node), failed
            attempts of jobs this worker still holds. Fewer means the others were handed
            back meanwhile (a recovery sweep gave this worker up, say). 0 when the
            statement failed.
        started_ns: When the statement was sent.
        ended_ns: When it came back, or raised.
        error: Why the statement failed, or ``None``.
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    action: str
    job_ids: tuple[int, ...]
    written: int
    started_ns: int
    ended_ns: int
    error: Exception | None = None

    @property
    def duration(self) -> float:
        """Seconds the statement took."""
        return (self.ended_ns - self.started_ns) / 1e9


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobStart:
    """A job's handler is about to be called (every ``before_job_run`` hook said :class:`Run`)."""

    __module__ = "graphile_worker.hooks"

    worker_id: str
    job: Job


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobComplete:
    """A job succeeded and was removed from the queue.

    Attributes:
        duration: Seconds the handler took.
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    job: Job
    duration: float


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobFail:
    """An attempt at a job failed; its ``last_error`` and back-off were recorded.

    Attributes:
        error: Why it failed (the handler's exception, a decoding or hook error).
        next_run_at: When the job may run again, or ``None`` when it will not be retried
            (a :class:`JobPermanentlyFail` then follows).
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    job: Job
    error: BaseException
    next_run_at: datetime | None


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobPermanentlyFail:
    """A job failed for good: its last attempt, a ``PermanentJobError``, or a payload that
    cannot be decoded. It stays in the table, failed, until someone acts on it; ``job`` is
    as stored then (``attempts >= max_attempts``)."""

    __module__ = "graphile_worker.hooks"

    worker_id: str
    job: Job
    error: BaseException


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobInterrupted:
    """A running job was cancelled by shutdown and released without spending an attempt.

    Attributes:
        retry_at: When the job becomes runnable again.
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    job: Job
    retry_at: datetime


@final
@dataclasses.dataclass(frozen=True, slots=True)
class CronTick:
    """The cron scheduler reached a minute (UTC) and is about to schedule what is due in it.

    Sent once for every minute while the worker runs, whether or not anything is due,
    including minutes caught up after a late wake-up (a busy event loop, a suspended
    machine, a clock set forward); backfilled minutes are reported by
    :class:`CronScheduled` alone.

    Attributes:
        timestamp: The minute, seconds zero.
        due: Identifiers of the cron items whose schedule matches it.
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    timestamp: datetime
    due: tuple[str, ...]


@final
@dataclasses.dataclass(frozen=True, slots=True)
class CronScheduled:
    """The cron scheduler offered the jobs due in one minute to the database.

    Every worker running the same crontab offers each minute; the database lets exactly
    one add each job, so across a fleet each identifier appears in ``scheduled`` once per
    minute and in the others' ``already_scheduled``.

    Attributes:
        timestamp: The minute the jobs are for (their ``run_at``).
        backfilled: Whether this is a start-up backfill of a minute missed while no worker
            ran (within the items' ``fill``).
        scheduled: Job id by cron identifier, for the jobs this worker added.
        already_scheduled: Identifiers whose job for this minute was added before, by
            another worker or an earlier run.
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    timestamp: datetime
    backfilled: bool
    scheduled: Mapping[str, int]
    already_scheduled: tuple[str, ...]


@final
@dataclasses.dataclass(frozen=True, slots=True)
class WorkerRecovered:
    """This worker's sweep gave up a dead worker and handed back what it locked.

    Attributes:
        worker_id: The sweeping worker.
        recovered_worker_id: The worker given up (it stopped sending heartbeats, or its
            supervisor saw it die).
        jobs: What happened to each of its jobs.
        unlocked_queues: The named queues the sweep unlocked (those of every worker it
            gave up in the same sweep).
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    recovered_worker_id: str
    jobs: tuple[RecoveredJob, ...]
    unlocked_queues: tuple[str, ...]


@final
@dataclasses.dataclass(frozen=True, slots=True)
class LocalQueueInit:
    """The worker's local queue is ready (``WorkerOptions.local_queue`` is set).

    Attributes:
        worker_id: The worker.
        size: Jobs a fetch claims at most, and memory holds at most.
        ttl: Seconds a job may wait in memory before it is handed back.
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    size: int
    ttl: float


@final
@dataclasses.dataclass(frozen=True, slots=True)
class LocalQueueModeChange:
    """The local queue changed mode: ``"POLLING"`` (memory empty), ``"WAITING"`` (jobs in
    memory), ``"TTL_EXPIRED"`` (memory handed back after its time to live) or
    ``"RELEASED"`` (the worker is stopping). Node graphile-worker's modes, by name.

    Attributes:
        worker_id: The worker.
        previous: The mode it left.
        mode: The mode it is in now.
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    previous: str
    mode: str


@final
@dataclasses.dataclass(frozen=True, slots=True)
class LocalQueueFetched:
    """A fetch (one batched claim) into the local queue came back.

    Attributes:
        worker_id: The worker.
        requested: Jobs asked for.
        fetched: Jobs claimed; fewer than asked means the queue had no more right now.
        held: Jobs in memory after the fetch.
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    requested: int
    fetched: int
    held: int


@final
@dataclasses.dataclass(frozen=True, slots=True)
class LocalQueueReturned:
    """Unstarted jobs went back from the local queue to the database, attempts refunded.

    Attributes:
        worker_id: The worker.
        job_ids: The jobs handed back.
        reason: Why: they outlived the time to live, the worker is stopping, or they carry
            a flag that is now forbidden.
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    job_ids: tuple[int, ...]
    reason: str


@final
@dataclasses.dataclass(frozen=True, slots=True)
class LocalQueueRefetchDelay:
    """The local queue's refetch delay (``LocalQueueOptions.refetch_delay``) changed.

    ``change`` is ``"started"`` (a fetch came back nearly empty, so fetches pause),
    ``"aborted"`` (enough new jobs were announced to end it early) or ``"expired"`` (it ran
    its course).

    Attributes:
        worker_id: The worker.
        change: ``"started"``, ``"aborted"`` or ``"expired"``.
        seconds: For ``"started"``: how long fetches pause. ``None`` otherwise.
        abort_threshold: For ``"started"``: how many announced jobs end it early (``None``
            when none would, and for the other changes).
    """

    __module__ = "graphile_worker.hooks"

    worker_id: str
    change: str
    seconds: float | None = None
    abort_threshold: float | None = None


Event: TypeAlias = (
    WorkerInit
    | WorkerStart
    | WorkerShutdown
    | JobFetch
    | JobStart
    | JobComplete
    | JobFail
    | JobPermanentlyFail
    | JobInterrupted
    | JobsClaimed
    | OutcomesWritten
    | CronTick
    | CronScheduled
    | WorkerRecovered
    | LocalQueueInit
    | LocalQueueModeChange
    | LocalQueueFetched
    | LocalQueueReturned
    | LocalQueueRefetchDelay
)
"""Every event an :class:`Observer` can be told about."""

ObserverResult: TypeAlias = "Awaitable[None] | None"
"""What an observer method returns: nothing, or an awaitable (``async def`` overrides)."""


# ---------------------------------------------------------------------------------- observers


class Observer:
    """Base class for observers: override the events you care about, as ``def`` or ``async def``.

    Every method is a no-op here. The worker only calls the methods a subclass
    overrides, so an observer that watches one event costs nothing on the others. An
    exception from an observer is logged (on the worker's logger, ``graphile_worker.worker``
    unless ``WorkerOptions.logger`` names another) and otherwise ignored; cancellation is
    never swallowed.

    One observer instance sees every job, and with ``concurrency`` above 1 the events of
    different jobs interleave, so keep per-job state keyed by ``event.job.id``.
    """

    __module__ = "graphile_worker.hooks"

    def on_worker_init(self, event: WorkerInit) -> ObserverResult:
        """Called once when the worker starts up, before it connects."""
        return None

    def on_worker_start(self, event: WorkerStart) -> ObserverResult:
        """Called once when the worker is ready and starts looking for jobs."""
        return None

    def on_worker_shutdown(self, event: WorkerShutdown) -> ObserverResult:
        """Called once when the worker begins to shut down."""
        return None

    def on_job_fetch(self, event: JobFetch) -> ObserverResult:
        """Called for every job the worker claims."""
        return None

    def on_jobs_claimed(self, event: JobsClaimed) -> ObserverResult:
        """Called after every claim statement, whether it found jobs, none, or failed."""
        return None

    def on_outcomes_written(self, event: OutcomesWritten) -> ObserverResult:
        """Called after every statement that records outcomes, or its failed attempt."""
        return None

    def on_job_start(self, event: JobStart) -> ObserverResult:
        """Called just before a job's handler runs."""
        return None

    def on_job_complete(self, event: JobComplete) -> ObserverResult:
        """Called after a job succeeded."""
        return None

    def on_job_fail(self, event: JobFail) -> ObserverResult:
        """Called after every failed attempt."""
        return None

    def on_job_permanently_fail(self, event: JobPermanentlyFail) -> ObserverResult:
        """Called when a job failed for good."""
        return None

    def on_job_interrupted(self, event: JobInterrupted) -> ObserverResult:
        """Called when shutdown cancelled a running job and released it."""
        return None

    def on_cron_tick(self, event: CronTick) -> ObserverResult:
        """Called for every minute the cron scheduler reaches."""
        return None

    def on_cron_scheduled(self, event: CronScheduled) -> ObserverResult:
        """Called after the cron scheduler offered a minute's jobs to the database."""
        return None

    def on_worker_recovered(self, event: WorkerRecovered) -> ObserverResult:
        """Called after this worker's sweep recovered the jobs of a dead worker."""
        return None

    def on_local_queue_init(self, event: LocalQueueInit) -> ObserverResult:
        """Called once when the local queue is ready."""
        return None

    def on_local_queue_mode_change(self, event: LocalQueueModeChange) -> ObserverResult:
        """Called when the local queue changes mode."""
        return None

    def on_local_queue_fetched(self, event: LocalQueueFetched) -> ObserverResult:
        """Called after each fetch into the local queue, with its size."""
        return None

    def on_local_queue_returned(self, event: LocalQueueReturned) -> ObserverResult:
        """Called after unstarted jobs were handed back from the local queue."""
        return None

    def on_local_queue_refetch_delay(self, event: LocalQueueRefetchDelay) -> ObserverResult:
        """Called when the refetch delay starts, is aborted, or expires."""
        return None


EVENT_METHODS: Final[dict[type[Event], str]] = {
    WorkerInit: "on_worker_init",
    WorkerStart: "on_worker_start",
    WorkerShutdown: "on_worker_shutdown",
    JobFetch: "on_job_fetch",
    JobStart: "on_job_start",
    JobComplete: "on_job_complete",
    JobFail: "on_job_fail",
    JobPermanentlyFail: "on_job_permanently_fail",
    JobInterrupted: "on_job_interrupted",
    JobsClaimed: "on_jobs_claimed",
    OutcomesWritten: "on_outcomes_written",
    CronTick: "on_cron_tick",
    CronScheduled: "on_cron_scheduled",
    WorkerRecovered: "on_worker_recovered",
    LocalQueueInit: "on_local_queue_init",
    LocalQueueModeChange: "on_local_queue_mode_change",
    LocalQueueFetched: "on_local_queue_fetched",
    LocalQueueReturned: "on_local_queue_returned",
    LocalQueueRefetchDelay: "on_local_queue_refetch_delay",
}
"""Which :class:`Observer` method each event type is routed to."""
