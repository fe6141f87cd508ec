"""The demo's tasks: one of each kind of handler graphile-worker supports, and the job mix.

Each task shows one feature and records what it saw in :class:`DemoState` (reached through
``ctx.extensions``, the worker's application state), so the summary can show that the
feature worked rather than just claim it:

* ``demo_greet``: a handler class whose dataclass instances are the payload (typed jobs);
* ``demo_thumbnail``: a plain ``def`` doing blocking work, run in a worker thread;
* ``demo_flaky``: fails its first attempt, then succeeds on the retry Node's back-off
  schedules (``exp(1)`` = 2.7 seconds later);
* ``demo_reminder``: queued with a ``run_at`` a few seconds ahead; records how late it ran;
* ``demo_ledger``: jobs in the serial queue ``demo-ledger``; records whether two ever
  overlapped and whether they ran in the order they were queued;
* ``demo_cron``: not queued by the demo but by the worker's cron scheduler, from the
  one-line crontab :data:`DEMO_CRONTAB`; records each job's ``_cron`` payload.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from ..spec import JobSpec
from ..task import task

if TYPE_CHECKING:
    from ..utils import JobInput
    from ..worker import WorkerContext

__all__ = [
    "CRON_TASK",
    "DEMO_CRONTAB",
    "LEDGER_QUEUE",
    "TASKS",
    "DemoState",
    "Greeting",
    "JobMix",
    "SimulatedOutage",
    "plan_jobs",
]

LEDGER_QUEUE = "demo-ledger"
CRON_TASK = "demo_cron"
DEMO_CRONTAB = f"* * * * * {CRON_TASK} ?fill=5m"
"""Every minute, backfilling up to five minutes a stopped worker missed."""


@dataclass
class DemoState:
    """What the tasks observed while running; read by the summary at the end."""

    ledger_running: int = 0
    ledger_max_running: int = 0
    ledger_order: list[int] = field(default_factory=list)
    reminder_lateness: list[float] = field(default_factory=list)
    thumbnail_threads: set[int] = field(default_factory=set)
    cron_runs: list[tuple[str, bool]] = field(default_factory=list)
    """``(_cron.ts, _cron.backfilled)`` of every ``demo_cron`` job, in the order they ran."""
    cron_expected: int = 0
    cron_caught_up: anyio.Event = field(default_factory=anyio.Event)
    """Set once ``cron_expected`` cron jobs have run (create the state inside the loop)."""


class SimulatedOutage(RuntimeError):
    """The failure ``demo_flaky`` raises on purpose; the demo keeps its traceback out of the log."""


def _state(ctx: WorkerContext) -> DemoState:
    state = ctx.extensions["demo"]
    assert isinstance(state, DemoState)
    return state


@dataclass
class Greeting:
    """A typed payload that is also its own handler: ``add_jobs([Greeting(name=...)])``."""

    IDENTIFIER: ClassVar[str] = "demo_greet"
    name: str

    async def run(self, ctx: WorkerContext) -> None:
        # Stand-in for a little network I/O; jobs overlap up to the worker's concurrency.
        await anyio.sleep(random.uniform(0.001, 0.01))


@task("demo_thumbnail")
def make_thumbnail(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """Blocking work in a plain ``def``: the worker runs it in a thread, off the event loop."""
    time.sleep(0.02)
    _state(ctx).thumbnail_threads.add(threading.get_ident())


@task("demo_flaky")
async def flaky(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """Fails its first attempt on purpose; the retry (attempt 2) succeeds."""
    if ctx.job.attempts <= 1:
        raise SimulatedOutage(f"simulated outage for order {payload.get('order')!r}")
    await anyio.sleep(0.001)


@task("demo_reminder")
async def reminder(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """A delayed job: records how long after its ``run_at`` it actually started."""
    late = datetime.now(timezone.utc) - ctx.job.run_at
    _state(ctx).reminder_lateness.append(max(late.total_seconds(), 0.0))


@task("demo_ledger")
async def ledger_entry(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """A job of the serial queue: checks that no other one runs at the same time."""
    state = _state(ctx)
    state.ledger_running += 1
    state.ledger_max_running = max(state.ledger_max_running, state.ledger_running)
    try:
        sequence = payload["sequence"]
        assert isinstance(sequence, int)
        state.ledger_order.append(sequence)
        await anyio.sleep(0.002)
    finally:
        state.ledger_running -= 1


@task(CRON_TASK)
async def cron_minute(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """A cron job: the scheduler adds one per minute, with the minute in ``_cron``."""
    cron = payload["_cron"]
    assert isinstance(cron, dict)
    state = _state(ctx)
    state.cron_runs.append((str(cron["ts"]), bool(cron["backfilled"])))
    if len(state.cron_runs) >= state.cron_expected:
        state.cron_caught_up.set()


TASKS: tuple[object, ...] = (Greeting, make_thumbnail, flaky, reminder, ledger_entry, cron_minute)


@dataclass(frozen=True)
class JobMix:
    """How many jobs of each task the demo queues for a given total."""

    greet: int
    thumbnail: int
    ledger: int
    flaky: int
    reminder: int

    @classmethod
    def for_total(cls, total: int) -> JobMix:
        """Split ``total`` (at least 10) so that every task gets some and greetings the rest."""
        reminder = max(1, total // 50)
        flaky = max(1, total // 20)
        ledger = max(2, total // 10)
        thumbnail = max(1, total // 5)
        greet = total - reminder - flaky - ledger - thumbnail
        return cls(greet, thumbnail, ledger, flaky, reminder)

    @property
    def total(self) -> int:
        """All jobs of the mix."""
        return self.greet + self.thumbnail + self.ledger + self.flaky + self.reminder


def plan_jobs(mix: JobMix, *, delay: float, now: datetime | None = None) -> list[JobInput]:
    """The jobs to queue, interleaved the way a real application would produce them."""
    now = now or datetime.now(timezone.utc)
    later = JobSpec(run_at=now + timedelta(seconds=delay))
    jobs: list[JobInput] = []
    jobs += [Greeting(name=f"user-{number}") for number in range(mix.greet)]
    jobs += [
        ("demo_thumbnail", {"image": f"photo-{number}.jpg"}) for number in range(mix.thumbnail)
    ]
    jobs += [("demo_flaky", {"order": number}) for number in range(mix.flaky)]
    jobs += [("demo_reminder", {"note": number}, later) for number in range(mix.reminder)]
    random.shuffle(jobs)
    # Ledger entries are spread through the batch but numbered in list order: add_jobs keeps
    # that order, and a serial queue runs its jobs in the order they were queued, which is
    # what the summary checks.
    ledger_spec = JobSpec(queue_name=LEDGER_QUEUE)
    positions = sorted(random.sample(range(len(jobs) + mix.ledger), mix.ledger))
    for sequence, position in enumerate(positions):
        jobs.insert(position, ("demo_ledger", {"sequence": sequence}, ledger_spec))
    return jobs
