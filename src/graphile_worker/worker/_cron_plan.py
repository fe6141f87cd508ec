"""The cron scheduler's decisions, without I/O: which minutes, which items, which jobs.

Everything here mirrors Node graphile-worker 0.18.0's ``cron.ts`` so that a Node scheduler
and ours, sharing ``_private_known_crontabs``, agree on every minute:

* the live loop starts at the first whole minute at or after the start time (a start at
  exactly ``10:00:00.000`` schedules 10:00 itself), and handles minutes strictly one after
  another: a wake-up before the minute is only a reason to sleep again, a wake-up after it
  catches up minute by minute, and those catch-up jobs are *not* marked ``backfilled``;
* at start-up, minutes before the start time are backfilled for items that were known
  already, within each item's ``fill`` period, and never before the item's
  ``last_execution`` (or ``known_since`` when it never ran);
* each job's ``run_at`` is its minute and its payload carries ``_cron: {ts, backfilled}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

from ..sql.cron import CronJobSpec, KnownCrontab

if TYPE_CHECKING:
    from ..crontab import CronItem

__all__ = [
    "ONE_MINUTE",
    "BackfillStep",
    "backfill_steps",
    "ceil_minute",
    "floor_minute",
    "iso_minute",
    "job_spec",
    "timer_check",
    "unknown_identifiers",
]

ONE_MINUTE = timedelta(minutes=1)

TimerCheck = Literal["early", "on_time", "late"]


def floor_minute(moment: datetime) -> datetime:
    """The UTC minute containing ``moment``."""
    return moment.astimezone(timezone.utc).replace(second=0, microsecond=0)


def ceil_minute(moment: datetime) -> datetime:
    """The first UTC minute at or after ``moment`` (Node's ``unsafeRoundToMinute(ts, true)``)."""
    floor = floor_minute(moment)
    return floor if floor == moment else floor + ONE_MINUTE


def iso_minute(minute: datetime) -> str:
    """``minute`` as JavaScript's ``Date.toISOString()`` writes it: ``...T10:00:00.000Z``."""
    utc = minute.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def job_spec(item: CronItem, minute: datetime, *, backfilled: bool) -> CronJobSpec:
    """The job ``item`` asks for at ``minute``; ``run_at`` is the minute itself."""
    mode = item.job_key_mode
    return CronJobSpec(
        identifier=item.identifier,
        task_identifier=item.task_identifier,
        payload=item.job_payload(minute, backfilled=backfilled),
        run_at=iso_minute(minute),
        queue_name=item.queue_name,
        max_attempts=item.max_attempts,
        priority=item.priority,
        job_key=item.job_key,
        job_key_mode=None if mode is None else mode.value,
    )


def timer_check(expected: datetime, now: datetime) -> TimerCheck:
    """Whether a wake-up meant for minute ``expected`` came early, on time or late.

    Node compares the minute the clock is in with the minute it waited for: "early" (the
    clock was set back, or a timer fired too soon) means sleep again; "late" (a slow event
    loop, a suspended machine, the clock set forward) means schedule ``expected`` now and
    carry on with the next minute at once, until caught up.
    """
    current = floor_minute(now)
    if current < expected:
        return "early"
    return "late" if current > expected else "on_time"


def unknown_identifiers(items: Iterable[CronItem], known: Mapping[str, KnownCrontab]) -> list[str]:
    """Identifiers no scheduler has registered yet, in crontab order."""
    return [item.identifier for item in items if item.identifier not in known]


@dataclass(frozen=True, slots=True)
class BackfillStep:
    """One minute of a start-up backfill and the items due in it."""

    minute: datetime
    items: tuple[CronItem, ...]


def backfill_steps(
    items: Sequence[CronItem], known: Mapping[str, KnownCrontab], start: datetime
) -> Iterator[BackfillStep]:
    """The minutes before ``start`` to backfill, oldest first, with the items due in each.

    Node's ``registerAndBackfillItems``: walk from ``start`` minus the largest ``fill``
    (rounded up to a minute) to just before ``start``; an item is due in a minute when it
    was known before this start, the minute is within its own ``fill``, the minute is not
    before its ``last_execution`` (else ``known_since``), and its schedule matches. The
    minute equal to ``last_execution`` is offered again; the database refuses it, so
    nothing is doubled. Minutes are handled oldest first because each one moves
    ``last_execution`` forward.
    """
    largest = max((item.backfill_period for item in items), default=timedelta(0))
    if largest <= timedelta(0):
        return
    candidates: list[tuple[CronItem, datetime]] = []
    for item in items:
        record = known.get(item.identifier)
        if record is not None and item.backfill_period > timedelta(0):
            candidates.append((item, record.last_execution or record.known_since))
    if not candidates:
        return
    minute = ceil_minute(start - largest)
    # Minutes before every item's not-before time can hold nothing; skip them at once
    # rather than test each (a week of fill is ten thousand minutes).
    minute = max(minute, ceil_minute(min(not_before for _, not_before in candidates)))
    while minute < start:
        ago = start - minute
        due = tuple(
            item
            for item, not_before in candidates
            if item.backfill_period >= ago and minute >= not_before and item.matches(minute)
        )
        if due:
            yield BackfillStep(minute, due)
        minute += ONE_MINUTE
