"""Concurrency slots: ``concurrency`` long-lived tasks, each running jobs one after another.

Starting a task per job costs more than a no-op job itself (anyio builds a cancel scope
and a task handle for each), so the runner starts its slots once and hands them jobs.
The claim loop puts claimed jobs in :class:`Slots`' ready line; an idle slot takes the
next one. A slot that finishes a job first asks ``take_nowait`` (the local queue's memory,
without waiting); only when that has nothing does it tell the runner it is idle, so that
while memory holds jobs the claim loop is not involved at all, as in Node, where each
worker asks the local queue for its next job.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..spec import Job

__all__ = ["YIELD_EVERY", "Slots"]

YIELD_EVERY = 64
"""Jobs a slot runs back to back, at most, before it lets the loop's other tasks run.

A job that never waits for anything (a quick ``async def``) never hands control back to
the event loop, so a slot could run everything in memory while the listener, the outcome
batchers and the claim loop wait. A slot therefore yields when the runner asks
(:meth:`Slots.yield_soon`: the local queue wants a top-up, which the claim loop must send
while the slots go on with what memory holds), and in any case every 64 jobs. Yielding
after every job or every few would cost a loop iteration each time: measured, a tenth to
a quarter more CPU per job."""


class Slots:
    """The slots of one run, and the line of jobs claimed for them but not started.

    Args:
        count: How many slots (the worker's ``concurrency``).
        run_job: Runs one job to its end; never raises except on cancellation.
        take_nowait: The next job from memory, or ``None`` (then the runner is told).
        idle: Called when a slot finds no job: the claim loop should look for more.
    """

    def __init__(
        self,
        *,
        count: int,
        run_job: Callable[[Job], Awaitable[None]],
        take_nowait: Callable[[], Job | None],
        idle: Callable[[], None],
    ) -> None:
        self._count = count
        self._run_job = run_job
        self._take_nowait = take_nowait
        self._idle = idle
        self._ready: deque[Job] = deque()
        self._arrived = anyio.Event()
        self._closed = False
        self._turns_due = 0

    def start(self, group: TaskGroup) -> None:
        """Start the slots in ``group``; they return once :meth:`close` was called."""
        for number in range(self._count):
            group.start_soon(self._slot, name=f"graphile_worker slot {number}")

    def hand_out(self, jobs: list[Job]) -> None:
        """Queue claimed jobs for the next idle slots."""
        self._ready.extend(jobs)
        arrived, self._arrived = self._arrived, anyio.Event()
        arrived.set()

    def yield_soon(self, turns: int = 1) -> None:
        """Let the loop's other tasks run after each of the next ``turns`` jobs.

        Several turns when the task that needs them has several steps to take before its
        work is on its way (a statement sent to a worker thread passes two or three
        checkpoints first).
        """
        self._turns_due = max(self._turns_due, turns)

    def close(self) -> list[Job]:
        """Start no more jobs; return those claimed but not started, for handing back."""
        self._closed = True
        unstarted = list(self._ready)
        self._ready.clear()
        self._arrived.set()
        return unstarted

    def _next(self) -> Job | None:
        if self._closed:
            return None
        if self._ready:
            return self._ready.popleft()
        return self._take_nowait()

    async def _slot(self) -> None:
        streak = 0
        while True:
            job = self._next()
            if job is not None:
                await self._run_job(job)
                streak += 1
                if self._turns_due or streak >= YIELD_EVERY:
                    if self._turns_due:
                        self._turns_due -= 1
                    streak = 0
                    await anyio.lowlevel.checkpoint()
                continue
            streak = 0
            self._idle()
            if self._closed:
                return
            await self._arrived.wait()
