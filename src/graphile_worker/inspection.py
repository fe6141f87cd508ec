"""Read-only views of the queue: job states, pages of jobs, counts, queues and lock holders.

These are the values :meth:`WorkerUtils.get_job`, :meth:`~WorkerUtils.list_jobs`,
:meth:`~WorkerUtils.stats`, :meth:`~WorkerUtils.queues` and
:meth:`~WorkerUtils.lock_holders` return (and their :class:`SyncWorkerUtils` twins). Each
is a snapshot taken in one statement; nothing here talks to the database.

Job states are decided by the database clock and the columns Node graphile-worker keeps
(migration 11 defines ``is_available`` as ``locked_at is null and attempts <
max_attempts``). Four of them split every job exactly once: a job is ``LOCKED``,
``FAILED``, or available and then ``READY`` or ``SCHEDULED`` by its ``run_at``.
``RETRYING`` is an overlay on the available ones (a job waiting for its next attempt is
also ready or scheduled), so its count is never added to the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import Enum
from typing import final

from .spec import Job

__all__ = [
    "JobActivity",
    "JobCounts",
    "JobPage",
    "JobState",
    "KnownCrontab",
    "LockHolder",
    "QueueInfo",
    "QueueStats",
]


class JobState(str, Enum):
    """What a job is doing now; the values are what ``list_jobs(state=...)`` accepts as text.

    ``READY``, ``SCHEDULED``, ``LOCKED`` and ``FAILED`` never overlap and together cover
    every job. ``RETRYING`` overlaps ``READY`` and ``SCHEDULED``: it picks out the
    available jobs that have failed at least once and have attempts left.
    """

    READY = "ready"
    """Available (not locked, attempts left) and due: ``run_at <= now()``."""
    SCHEDULED = "scheduled"
    """Available but not due yet: ``run_at > now()``."""
    LOCKED = "locked"
    """Claimed by a worker (``locked_at`` is set), running or waiting for its lock to expire.
    A job on its last attempt is locked, not failed, until that attempt ends."""
    RETRYING = "retrying"
    """Available, tried before and failed: ``attempts > 0`` with a ``last_error``. Also
    ``READY`` or ``SCHEDULED``."""
    FAILED = "failed"
    """Permanently failed: not locked and ``attempts >= max_attempts``; no worker will run
    it again unless it is rescheduled."""

    @classmethod
    def of(cls, job: Job, now: datetime) -> JobState:
        """The state of a job already read, judged by ``now`` (the partitioning one:
        ``READY``, ``SCHEDULED``, ``LOCKED`` or ``FAILED``); the database's rules, in Python."""
        if job.locked_at is not None:
            return cls.LOCKED
        if job.attempts >= job.max_attempts:
            return cls.FAILED
        return cls.READY if job.run_at <= now else cls.SCHEDULED


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobPage:
    """One page of :meth:`~graphile_worker.WorkerUtils.list_jobs`, newest job first.

    Pass :attr:`next_after` back as ``after=`` for the next page. Pages are cut by job id,
    not by position, so jobs added or removed meanwhile never shift a page: later pages
    hold no job twice and skip none that existed when the first page was read (jobs added
    since are newer, so they would be on a first page, not on a later one).

    Attributes:
        jobs: The jobs on this page, by id, highest (newest) first.
        next_after: The ``after=`` value for the next page, or ``None`` on the last page.
    """

    jobs: tuple[Job, ...]
    next_after: int | None


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobCounts:
    """How many jobs are in each state, for a task, a queue or the whole schema.

    ``ready + scheduled + locked + failed`` is every job counted; ``retrying`` is a part of
    ``ready + scheduled`` (see :class:`JobState`).

    Attributes:
        ready: Available and due.
        scheduled: Available, ``run_at`` in the future.
        locked: Held by a worker.
        retrying: Available and waiting for another attempt after a failure.
        failed: Out of attempts and not locked.
        oldest_ready_at: The earliest ``run_at`` among ready jobs (``None`` if none are).
        oldest_ready_age: How long that job has been due, at the snapshot's time: a
            growing value means workers are not keeping up.
    """

    ready: int = 0
    scheduled: int = 0
    locked: int = 0
    retrying: int = 0
    failed: int = 0
    oldest_ready_at: datetime | None = None
    oldest_ready_age: timedelta | None = None

    @property
    def total(self) -> int:
        """Every job counted once (``retrying`` is already inside ready and scheduled)."""
        return self.ready + self.scheduled + self.locked + self.failed


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    """Job counts for the whole schema, per task identifier and per named queue.

    Attributes:
        as_of: The database's ``now()`` when the counts were taken; ages are measured
            from it.
        total: Every job.
        by_task: Per task identifier, for tasks that have jobs.
        by_queue: Per queue name, for named queues that have jobs; jobs without a queue
            name are only in ``total`` and ``by_task``.
    """

    as_of: datetime
    total: JobCounts
    by_task: Mapping[str, JobCounts]
    by_queue: Mapping[str, JobCounts]


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QueueInfo:
    """One named queue: who holds it and what it holds.

    A named queue runs one job at a time; while a worker runs one of its jobs, the worker
    holds the queue's lock and no other worker takes a job from it.

    Attributes:
        name: The queue name.
        locked_by: The worker id holding the queue, or ``None``.
        locked_at: When it took the lock, or ``None``.
        lock_age: How long it has held it, at ``as_of``.
        jobs: The queue's jobs by state.
        as_of: The database's ``now()`` when this was read.
    """

    name: str
    locked_by: str | None
    locked_at: datetime | None
    lock_age: timedelta | None
    jobs: JobCounts
    as_of: datetime


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LockHolder:
    """A worker id that holds job or queue locks, and whether it is known to be alive.

    Attributes:
        worker_id: The ``locked_by`` value (a Node worker's id, or one of ours).
        locked_jobs: Jobs it holds.
        locked_queues: Named queues it holds.
        oldest_lock_at: Its oldest lock, on a job or a queue.
        registered: Whether it is in this library's worker registry (see
            :meth:`~graphile_worker.WorkerUtils.list_workers`). Node workers never are.
        alive: For a registered worker, whether its heartbeat is fresh (within its own
            ``stale_after``); ``None`` when it is not registered, as nothing is known.
    """

    worker_id: str
    locked_jobs: int
    locked_queues: int
    oldest_lock_at: datetime
    registered: bool
    alive: bool | None


@final
@dataclasses.dataclass(frozen=True, slots=True)
class KnownCrontab:
    """A cron identifier some scheduler (Node's or ours) has registered.

    Attributes:
        identifier: The crontab entry's identifier (its ``id`` option, else its task).
        known_since: When a scheduler first saw it; a backfill never reaches before it.
        last_execution: The latest minute a job was scheduled for, by any scheduler, or
            ``None`` if none has been yet.
    """

    identifier: str
    known_since: datetime
    last_execution: datetime | None


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobActivity:
    """PostgreSQL's running totals of rows added to and removed from the jobs table.

    The counters (``n_tup_ins`` and ``n_tup_del`` of ``pg_stat_user_tables``) only grow,
    from the last statistics reset, so one reading says little: subtract two readings to
    get how many jobs were added and finished in between, which is how the admin's
    throughput chart works. Reading them costs nothing, unlike counting jobs. Each
    connection reports its changes to them a little later (up to about ten seconds on an
    idle connection), and a statistics reset (or a server crash) starts them again from
    zero.

    Attributes:
        as_of: The database's ``now()`` when they were read.
        added: Jobs inserted (``add_job`` and friends; a job key replacing a waiting job
            updates it instead, and is not counted).
        removed: Jobs deleted: completed by a worker, or removed (``complete_jobs``,
            ``remove_job``, cleanup of permanently failed jobs).
    """

    as_of: datetime
    added: int
    removed: int
