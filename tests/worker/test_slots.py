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
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from graphile_worker.spec import Job
from graphile_worker.worker._slots import YIELD_EVERY, Slots

pytestmark = pytest.mark.anyio

JOBS = 2000


def fake_job() -> Job:
    return Job.__new__(Job)


async def run_never_waiting_jobs(
    slot_count: int, after_job: Callable[[Slots, int], None] = lambda slots, done: None
) -> tuple[int, list[int]]:
    """Run JOBS jobs that never suspend on ``slot_count`` slots, beside another task that
    only waits for its turn, again and again (as a claim loop or a batcher does).

    Returns how many jobs ran, and how many had run each time the other task got a turn.
    ``after_job`` is called after each job with the slots and the count so far.
    """
    memory = deque(range(JOBS))
    ran = 0
    turns_seen: list[int] = []
    all_done = anyio.Event()

    async def run_job(job: object) -> None:
        nonlocal ran
        ran += 1  # never suspends
        after_job(slots, ran)
        if not memory:
            all_done.set()

    def take_nowait() -> Job | None:
        if not memory:
            return None
        memory.popleft()
        return fake_job()

    slots = Slots(count=slot_count, run_job=run_job, take_nowait=take_nowait, idle=lambda: None)

    async def other_task() -> None:
        while not all_done.is_set():
            await anyio.lowlevel.checkpoint()
            turns_seen.append(ran)

    async with anyio.create_task_group() as group:
        group.start_soon(other_task)
        await anyio.lowlevel.checkpoint()  # the other task is waiting for its turn now
        slots.start(group)
        slots.hand_out([fake_job()])
        await all_done.wait()
        slots.close()
    return ran, turns_seen


async def test_jobs_that_never_wait_still_let_other_tasks_run() -> None:
    ran, seen_by_other_task = await run_never_waiting_jobs(slot_count=3)

    assert ran == JOBS + 1
    # The other task got turns while jobs were being run, not only once memory was empty,
    # and never waited longer than each slot's streak of jobs (twice over on trio, which
    # may run the other task first in one round and last in the next).
    during = [count for count in seen_by_other_task if 0 < count < JOBS]
    assert len(during) >= JOBS // (3 * YIELD_EVERY) - 1
    gaps = [after - before for before, after in itertools.pairwise(seen_by_other_task)]
    assert max(gaps) <= 2 * 3 * YIELD_EVERY


async def test_a_slot_yields_after_its_job_when_asked() -> None:
    def ask_every_tenth_job(slots: Slots, done: int) -> None:
        if done % 10 == 0:
            slots.yield_soon()  # as the runner does when the local queue runs low

    _, other_task_saw = await run_never_waiting_jobs(slot_count=1, after_job=ask_every_tenth_job)

    # With one slot, the other task runs right after every tenth job, far more often
    # than the every-YIELD_EVERY fallback alone would let it.
    assert YIELD_EVERY > 10
    gaps = [after - before for before, after in itertools.pairwise(other_task_saw)]
    assert gaps and max(gaps) <= 2 * 10
    assert len(other_task_saw) >= JOBS // 10 - 1
