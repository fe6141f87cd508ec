"""Slots share the event loop: jobs that never wait do not starve the run's other tasks.

A claim loop topping up the local queue, the outcome batchers and the listener all run on
the same loop as the slots. A job that never suspends (a quick ``async def``) would keep
its slot running job after job from memory, and those tasks would get no turn until
memory ran dry; the slot lets them run every :data:`YIELD_EVERY` jobs, and at once when
the runner asks (:meth:`Slots.yield_soon`, when the local queue wants a top-up).
"""

from __future__ import annotations

import itertools
from collections import deque

import anyio
import anyio.lowlevel
import pytest

from graphile_worker.spec import Job
from graphile_worker.worker._slots import YIELD_EVERY, Slots

pytestmark = pytest.mark.anyio

JOBS = 2000


def fake_job(job_id: int) -> Job:
    return Job.__new__(Job)


async def test_jobs_that_never_wait_still_let_other_tasks_run() -> None:
    memory = deque(range(JOBS))
    ran: list[int] = []
    seen_by_other_task: list[int] = []
    all_done = anyio.Event()

    async def run_job(job: object) -> None:
        ran.append(len(ran))  # never suspends
        if not memory:
            all_done.set()

    def take_nowait() -> Job | None:
        return fake_job(memory.popleft()) if memory else None

    slots = Slots(count=3, run_job=run_job, take_nowait=take_nowait, idle=lambda: None)

    async def other_task() -> None:
        # What a claim loop or a batcher does: wait for its turn, again and again.
        while not all_done.is_set():
            await anyio.lowlevel.checkpoint()
            seen_by_other_task.append(len(ran))

    async with anyio.create_task_group() as group:
        group.start_soon(other_task)
        await anyio.lowlevel.checkpoint()  # the other task is waiting for its turn now
        slots.start(group)
        slots.hand_out([fake_job(-1)])
        await all_done.wait()
        slots.close()

    assert len(ran) == JOBS + 1
    # The other task got turns while jobs were being run, not only once memory was empty,
    # and never waited longer than each slot's streak of jobs (twice over on trio, which
    # may run the other task first in one round and last in the next).
    during = [count for count in seen_by_other_task if 0 < count < JOBS]
    assert len(during) >= JOBS // (3 * YIELD_EVERY) - 1
    gaps = [after - before for before, after in itertools.pairwise(seen_by_other_task)]
    assert max(gaps) <= 2 * 3 * YIELD_EVERY


async def test_a_slot_yields_after_its_job_when_asked() -> None:
    memory = deque(range(JOBS))
    ran: list[int] = []
    other_task_saw: list[int] = []
    all_done = anyio.Event()
    slots: Slots

    async def run_job(job: object) -> None:
        ran.append(len(ran))
        if len(ran) % 10 == 0:
            slots.yield_soon()  # as the runner does when the local queue runs low
        if not memory:
            all_done.set()

    def take_nowait() -> Job | None:
        return fake_job(memory.popleft()) if memory else None

    slots = Slots(count=1, run_job=run_job, take_nowait=take_nowait, idle=lambda: None)

    async def other_task() -> None:
        while not all_done.is_set():
            await anyio.lowlevel.checkpoint()
            other_task_saw.append(len(ran))

    async with anyio.create_task_group() as group:
        group.start_soon(other_task)
        await anyio.lowlevel.checkpoint()
        slots.start(group)
        slots.hand_out([fake_job(-1)])
        await all_done.wait()
        slots.close()

    # With one slot, the other task runs right after every tenth job, far more often
    # than the every-YIELD_EVERY fallback alone would let it.
    assert YIELD_EVERY > 10
    gaps = [after - before for before, after in itertools.pairwise(other_task_saw)]
    assert gaps and max(gaps) <= 2 * 10
    assert len(other_task_saw) >= JOBS // 10 - 1
