"""The local queue: jobs claimed in batches and handed to free slots from memory.

Node graphile-worker's ``LocalQueue`` shows the idea; this one fits our runner, whose
single claim loop asks for as many jobs as it has free slots. :meth:`LocalQueue.take`
answers from memory while memory holds jobs, and claims a whole batch (``size`` jobs) when
it is empty. The modes are Node's:

* ``POLLING``: nothing in memory; the next ``take`` fetches (unless a refetch delay is on);
* ``WAITING``: jobs in memory, handed out in the order they were claimed; jobs still there
  ``ttl`` seconds after their fetch are handed back to the database (``TTL_EXPIRED`` once
  memory is empty that way);
* ``TTL_EXPIRED``: handed back; the next ``take`` fetches again;
* ``RELEASED``: the worker is stopping; whatever was in memory has been handed back.

One departure from Node: Node fetches only once memory is empty, so every slot waits for
each fetch (a claim of hundreds of rows takes milliseconds, as long as running hundreds of
short jobs). Here, when the last fetch came back full (there is probably more) and memory
is down to half of ``size``, the claim loop tops memory up to ``size`` while the slots
keep running what is there. Memory never holds more than ``size`` jobs either way.

Handing back refunds the attempt the claim took and keeps ``run_at``, so the job keeps its
place in line, as Node's ``returnJobs`` does. A claim takes at most one job per named queue
and locks that queue until the job is settled, so serial queues stay serial however large
the batch.

Forbidden flags do not turn the local queue off (Node and the Rust crate bypass it for any
worker with forbidden flags): a fixed set goes into the batched claim itself, and a
function is asked again before each hand-out, any job in memory that carries a flag it now
forbids being handed back instead of run.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections import deque
from collections.abc import Collection
from time import monotonic
from typing import TYPE_CHECKING

import anyio

from ..errors import DatabaseError
from ..hooks import (
    LocalQueueFetched,
    LocalQueueInit,
    LocalQueueModeChange,
    LocalQueueRefetchDelay,
    LocalQueueReturned,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..hooks import Event
    from ..spec import Job
    from ._fetch import JobSource
    from ._local_queue_options import LocalQueueOptions

__all__ = ["LocalQueue", "LocalQueueMode"]


class LocalQueueMode(enum.Enum):
    """What the local queue is doing; see the module docstring."""

    POLLING = "POLLING"
    WAITING = "WAITING"
    TTL_EXPIRED = "TTL_EXPIRED"
    RELEASED = "RELEASED"


class LocalQueue:
    """Jobs claimed ahead of time for one run.

    The claim loop calls :meth:`take`, :meth:`refill`, :meth:`expire` and :meth:`release`;
    slots call :meth:`take_nowait`.

    Args:
        options: Size, time to live and refetch delay.
        source: Claims and hands back jobs.
        logger: Where hand-backs and their failures are reported.
        emit: Takes the local-queue events for observers (``None``: nobody watches, and
            no event is even built). Called synchronously, so it only collects them; the
            runner delivers them from its claim loop.
        worker_id: For the events.
    """

    def __init__(
        self,
        options: LocalQueueOptions,
        source: JobSource,
        logger: logging.Logger,
        *,
        emit: Callable[[Event], None] | None = None,
        worker_id: str = "",
    ) -> None:
        self._options = options
        self._source = source
        self._logger = logger
        self._emit = emit
        self._worker_id = worker_id
        # Each job with the moment (time.monotonic) it must be handed back, oldest first.
        self._jobs: deque[tuple[float, Job]] = deque()
        self.mode = LocalQueueMode.POLLING
        self._low_water = options.size // 2
        self._last_fetch_full = False
        self._refilling = False
        # The refetch delay: when it ends, how many announced jobs end it early, and how
        # many have been announced since the fetch that started it began.
        self._delay_until: float | None = None
        self._abort_threshold = math.inf
        self._announced = 0
        self.held_back = False
        """Whether the last :meth:`take` found memory empty and a refetch delay on, so
        fetched nothing: look again when the delay ends (:meth:`delay_left`)."""
        if emit is not None:
            emit(LocalQueueInit(worker_id, options.size, options.ttl))

    def _set_mode(self, mode: LocalQueueMode) -> None:
        previous = self.mode
        self.mode = mode
        if self._emit is not None and mode is not previous:
            self._emit(LocalQueueModeChange(self._worker_id, previous.value, mode.value))

    def _delay_ended(self, change: str) -> None:
        self._delay_until = None
        if self._emit is not None:
            self._emit(LocalQueueRefetchDelay(self._worker_id, change))

    def __len__(self) -> int:
        return len(self._jobs)

    # ----------------------------------------------------------------- wake-ups and timers

    def announce(self, count: int) -> None:
        """Count jobs announced by ``jobs:insert``; enough of them end a refetch delay."""
        self._announced += count
        if self._delay_until is not None and self._announced >= self._abort_threshold:
            self._delay_ended("aborted")

    def _delay_on(self) -> bool:
        if self._delay_until is None:
            return False
        if monotonic() >= self._delay_until:
            self._delay_ended("expired")
            return False
        return True

    def delay_left(self) -> float:
        """Seconds until the refetch delay ends (0 when none is on)."""
        if self._delay_until is None:
            return 0.0
        return max(0.0, self._delay_until - monotonic())

    def expiry_left(self) -> float | None:
        """Seconds until the oldest job in memory expires (``None`` when memory is empty)."""
        if not self._jobs:
            return None
        return max(0.0, self._jobs[0][0] - monotonic())

    @property
    def wants_refill(self) -> bool:
        """Whether memory is low while the database probably has more (see the module),
        and no top-up is in flight already."""
        return (
            0 < len(self._jobs) <= self._low_water
            and self._last_fetch_full
            and not self._refilling
            and self.mode is LocalQueueMode.WAITING
        )

    # ------------------------------------------------------------------------- hand-out

    async def take(self, limit: int) -> list[Job]:
        """Up to ``limit`` jobs to start now: from memory, else from a fetch of ``size``.

        Returns an empty list when the database has nothing runnable, or when a refetch
        delay is on (then :attr:`held_back` is set).

        A refetch delay only holds back fetches; it never wakes the claim loop by itself
        (as in Node): an empty fetch is followed by the usual poll, not by a fetch at the
        end of the delay.
        """
        self.held_back = False
        if self.mode is LocalQueueMode.RELEASED:
            return []
        flags: Collection[str] | None = None
        if self._source.flags_can_change:
            flags = await self._source.forbidden_flags()
            if flags and self._jobs:
                await self._hand_back_forbidden(flags)
        if self._jobs:
            return self._hand_out(limit)
        self._set_mode(LocalQueueMode.POLLING)
        if self._delay_on():
            self.held_back = True
            return []
        await self._fetch(flags, self._options.size)
        return self._hand_out(limit)

    def take_nowait(self) -> Job | None:
        """The next job in memory, at once; ``None`` when memory is empty, or when a
        forbidden-flags function must be asked first (:meth:`take` does that)."""
        jobs = self._jobs
        if not jobs or self._source.flags_can_change:
            return None
        job = jobs.popleft()[1]
        if not jobs:
            self._set_mode(LocalQueueMode.POLLING)
        return job

    async def refill(self) -> None:
        """Top memory up to ``size`` jobs (when :attr:`wants_refill`)."""
        self._refilling = True
        try:
            flags = await self._source.forbidden_flags() if self._source.flags_can_change else None
            await self._fetch(flags, self._options.size - len(self._jobs))
        finally:
            self._refilling = False

    def _hand_out(self, limit: int) -> list[Job]:
        jobs = self._jobs
        count = min(limit, len(jobs))
        taken = [jobs.popleft()[1] for _ in range(count)]
        if not jobs and self.mode is LocalQueueMode.WAITING:
            self._set_mode(LocalQueueMode.POLLING)
        return taken

    async def _fetch(self, flags: Collection[str] | None, limit: int) -> None:
        self._announced = 0  # announcements during the fetch count towards aborting a delay
        fetched = await self._source.claim(limit, flags=flags, local_queue=True)
        self._last_fetch_full = len(fetched) >= limit
        delay = self._options.refetch_delay
        if delay is not None and not self._last_fetch_full and len(fetched) <= delay.threshold:
            # Random, as in Node, so that a fleet of workers does not fetch in step.
            seconds = delay.duration * (0.5 + random.random())
            self._delay_until = monotonic() + seconds
            maximum = delay.max_abort_threshold or 5 * self._options.size
            self._abort_threshold = random.random() * maximum or math.inf
            if self._emit is not None:
                threshold = None if self._abort_threshold == math.inf else self._abort_threshold
                self._emit(LocalQueueRefetchDelay(self._worker_id, "started", seconds, threshold))
            self.announce(0)  # enough may have been announced during the fetch
        if fetched and self.mode is not LocalQueueMode.RELEASED:
            expires_at = monotonic() + self._options.ttl
            self._jobs.extend((expires_at, job) for job in fetched)
            self._set_mode(LocalQueueMode.WAITING)
        elif fetched:
            # Released while the claim was in flight (a shutdown): straight back.
            await self._hand_back(fetched, "the worker is stopping")
        if self._emit is not None:
            self._emit(LocalQueueFetched(self._worker_id, limit, len(fetched), len(self._jobs)))

    # ---------------------------------------------------------------------- hand-backs

    async def expire(self) -> None:
        """Hand back the jobs that have waited in memory for ``ttl`` seconds."""
        jobs = self._jobs
        now = monotonic()
        if not jobs or jobs[0][0] > now:
            return
        # Out of memory before the hand-back is awaited: meanwhile a slot that frees up
        # must not take a job that is on its way back to the database. Jobs are kept in
        # the order they were fetched, so the expired ones are at the front.
        expired: list[Job] = []
        while jobs and jobs[0][0] <= now:
            expired.append(jobs.popleft()[1])
        if await self._hand_back(expired, "waited longer than the local queue's ttl"):
            if not self._jobs and self.mode is LocalQueueMode.WAITING:
                self._set_mode(LocalQueueMode.TTL_EXPIRED)
            return
        if self.mode is LocalQueueMode.RELEASED:
            # The worker began to stop meanwhile and handed back what memory held then.
            self._report_stuck(expired)
            return
        # Still ours and still locked: keep them (first in line again), and try again after
        # another ttl.
        later = monotonic() + self._options.ttl
        self._jobs = deque(
            [(later, job) for job in expired]
            + [(max(expires_at, later), job) for expires_at, job in self._jobs]
        )
        self._set_mode(LocalQueueMode.WAITING)

    async def release(self) -> None:
        """Stop for good: hand back everything in memory; call in a shielded scope."""
        if self.mode is LocalQueueMode.RELEASED:
            return
        self._set_mode(LocalQueueMode.RELEASED)
        self._delay_until = None
        jobs = [job for _, job in self._jobs]
        self._jobs.clear()
        if jobs and not await self._hand_back(jobs, "the worker is stopping"):
            self._report_stuck(jobs)

    def held_ids(self) -> list[int]:
        """The ids of the jobs waiting in memory."""
        return [job.id for _, job in self._jobs]

    def forget(self) -> int:
        """Drop what memory holds without handing it back; returns how many jobs.

        For when a sweep gave this worker up: the jobs were handed back for it, and other
        workers may already have claimed them, so running them here would run them twice.
        """
        dropped = len(self._jobs)
        self._jobs.clear()
        return dropped

    def _report_stuck(self, jobs: list[Job]) -> None:
        """Jobs that could not be handed back for good: nothing more will try."""
        self._logger.error(
            "Job(s) %s stay locked by this worker until the stale-lock reset frees them",
            ", ".join(str(job.id) for job in jobs),
        )

    async def _hand_back_forbidden(self, flags: Collection[str]) -> None:
        forbidden = frozenset(flags)
        refused = [job for _, job in self._jobs if job.flags & forbidden]
        if refused and await self._hand_back(refused, "they carry a flag now forbidden"):
            ids = {job.id for job in refused}
            self._jobs = deque(entry for entry in self._jobs if entry[1].id not in ids)

    async def _hand_back(self, jobs: list[Job], why: str) -> bool:
        """Return unstarted jobs to the database, refunding the attempt; ``False`` on failure."""
        if not jobs:
            return True
        with anyio.CancelScope(shield=True):
            try:
                await self._source.release(jobs, 0.0)
            except DatabaseError as error:
                self._logger.error(
                    "Could not hand back %d job(s) from the local queue (%s): %s",
                    len(jobs),
                    why,
                    error,
                )
                return False
        self._logger.debug("Handed back %d job(s) from the local queue: %s", len(jobs), why)
        if self._emit is not None:
            self._emit(LocalQueueReturned(self._worker_id, tuple(job.id for job in jobs), why))
        return True
