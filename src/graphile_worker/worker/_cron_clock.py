"""The clock the cron scheduler reads and sleeps on: the system's, or one a test moves by hand.

The scheduler asks only two things of a clock: what time it is (UTC) and "wake me when it
is at least this time". Everything else (which minute is due, whether a wake-up came too
early or late) is decided from those two answers, so a test can drive weeks of schedule
in milliseconds by moving a :class:`ManualCronClock`, and a production worker gets the
same decisions from :class:`SystemCronClock`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol, final, runtime_checkable

import anyio
import anyio.lowlevel

from ..errors import ConfigurationError

__all__ = ["CronClock", "ManualCronClock", "SystemCronClock"]

_TIMER_SLACK = timedelta(milliseconds=1)
"""Node sleeps one millisecond past the minute so that it wakes inside it, not just before."""


@runtime_checkable
class CronClock(Protocol):
    """What the cron scheduler needs from a clock (``WorkerOptions.cron_clock``)."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...

    async def sleep_until(self, moment: datetime) -> None:
        """Return once :meth:`now` has (probably) reached ``moment``.

        Returning early is allowed: the scheduler checks :meth:`now` again and goes back to
        sleep, as Node does when a timer fires too soon. Must be cancellable.
        """
        ...


# Set outside the body: mypy would count a class attribute there as a protocol member.
CronClock.__module__ = "graphile_worker.worker"


@final
class SystemCronClock:
    """The machine's wall clock, with anyio sleeps in between.

    anyio sleeps follow a monotonic clock, so when the wall clock is set back or forward
    while a sleep is pending, the scheduler wakes at the "wrong" wall time; it notices and
    sleeps again or catches up, minute by minute.
    """

    __module__ = "graphile_worker.worker"

    def now(self) -> datetime:
        """``datetime.now(timezone.utc)``."""
        return datetime.now(timezone.utc)

    async def sleep_until(self, moment: datetime) -> None:
        """Sleep until just after ``moment`` (at least a checkpoint, even when it is past)."""
        remaining = (moment - self.now() + _TIMER_SLACK).total_seconds()
        await anyio.sleep(max(remaining, 0.0))

    def __repr__(self) -> str:
        return "SystemCronClock()"


@final
class ManualCronClock:
    """A clock that stands still until told to move: for tests of cron schedules.

    Every :meth:`set` or :meth:`advance` wakes the scheduler to look at the new time.
    Moving it backwards is allowed too, to simulate a clock correction.
    Use it from the event loop that runs the worker (it is not thread-safe)::

        clock = ManualCronClock(datetime(2030, 1, 1, 9, 59, 30, tzinfo=timezone.utc))
        async with Worker(WorkerOptions(..., crontab="* * * * * tick", cron_clock=clock)):
            clock.advance(timedelta(minutes=1))  # the 10:00 job is scheduled

    Args:
        start: The initial time; must be timezone-aware.
    """

    __module__ = "graphile_worker.worker"

    def __init__(self, start: datetime) -> None:
        self._now = _aware("start", start)
        self._moved: anyio.Event | None = None

    def now(self) -> datetime:
        """The time last set."""
        return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (forwards or backwards) and wake every sleeper to look."""
        self._now = _aware("moment", moment)
        moved, self._moved = self._moved, None
        if moved is not None:
            moved.set()

    def advance(self, delta: timedelta) -> None:
        """Move forwards (or, with a negative ``delta``, backwards) by ``delta``."""
        self.set(self._now + delta)

    async def sleep_until(self, moment: datetime) -> None:
        """Return at once if ``moment`` has come, else at the next move of the clock.

        Any move wakes every sleeper, even one that leaves the time before ``moment`` (a
        clock set back): the scheduler must then see for itself that it woke too early
        and go back to sleep, which is what it does when a real timer fires early.
        """
        if self._now >= moment:
            await anyio.lowlevel.checkpoint()
            return
        if self._moved is None:
            self._moved = anyio.Event()
        await self._moved.wait()

    def __repr__(self) -> str:
        return f"ManualCronClock({self._now.isoformat()})"


def _aware(name: str, moment: datetime) -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ConfigurationError(f"{name} must be a timezone-aware datetime, not {moment!r}")
    return moment.astimezone(timezone.utc)
