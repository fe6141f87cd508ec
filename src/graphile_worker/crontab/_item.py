"""``CronItem``: one validated schedule, whether it came from a crontab line or the builder.

The matcher runs for every item every minute (and for every minute of a backfill), so the
value sets are also kept as bitmasks and ``matches`` is a handful of shifts. ``next_runs``
walks the calendar a day at a time, skipping months that cannot match, and knows that the
Gregorian calendar (weekdays included) repeats every 400 years, so a schedule that can
never fire (``0 0 30 2 *``) ends the search instead of looping.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Final
from urllib.parse import quote

from ..errors import ConfigurationError
from ..spec import JSON, JobKeyMode
from ._checks import (
    check_backfill_period,
    check_identifier,
    check_job_key,
    check_job_key_mode,
    check_max_attempts,
    check_mode_has_key,
    check_payload,
    check_priority,
    check_queue_name,
    check_task_identifier,
    check_values,
)
from ._fields import (
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    HOUR,
    MINUTE,
    MONTH,
    format_time_phrase,
    render_field,
)

__all__ = ["CronItem"]

_UTC: Final = timezone.utc
_ONE_DAY: Final = timedelta(days=1)
_ONE_MINUTE: Final = timedelta(minutes=1)
_CALENDAR_CYCLE_DAYS: Final = 146097
"""Days in 400 Gregorian years, a whole number of weeks: every date pattern repeats."""


def _bits(values: frozenset[int]) -> int:
    return sum(1 << value for value in values)


# ------------------------------------------------------------------------------ CronItem

_ANY_DAY, _DAY_OF_MONTH_ONLY, _DAY_OF_WEEK_ONLY, _EITHER_DAY = range(4)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CronItem:
    """One recurring schedule: when to run which task, with which job options and payload.

    Build one with :func:`~graphile_worker.crontab.parse_crontab` or
    :func:`~graphile_worker.crontab.cron`; direct construction validates every field the
    same way. Two items are equal when they schedule the same jobs at the same minutes;
    ``source`` and ``line`` only say where an item came from.

    Attributes:
        task_identifier: The task each job runs.
        identifier: Unique among the items a worker runs; the database remembers when each
            identifier last ran, which is what makes backfill and multi-worker scheduling
            safe. Defaults to the task identifier in both the text form and the builder.
        minutes: UTC minutes 0-59 on which to run.
        hours: UTC hours 0-23.
        days_of_month: Days 1-31.
        months: Months 1-12.
        days_of_week: Days of the week 0-6, Sunday being 0 (7 is accepted and stored as 0).
        backfill_period: On start-up, jobs missed within this period are scheduled late
            (``fill``); zero turns backfill off.
        max_attempts: Overrides the jobs' ``max_attempts``.
        queue_name: Runs the jobs one at a time in this named queue.
        priority: Overrides the jobs' priority (lower runs first).
        job_key: Jobs are added with this key, so a job still waiting is updated
            rather than duplicated.
        job_key_mode: ``REPLACE`` (the default with a key) or ``PRESERVE_RUN_AT``.
        payload: A JSON object merged into each job's payload, or ``None``. Treat it as
            read-only.
        source: The crontab line (stripped) or, for built items, the canonical line.
        line: The 1-based line number in the crontab, ``None`` for built items.
    """

    # Users import it from the package; reprs and docs should say so.
    __module__ = "graphile_worker.crontab"

    task_identifier: str
    identifier: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    backfill_period: timedelta = timedelta(0)
    max_attempts: int | None = None
    queue_name: str | None = None
    priority: int | None = None
    job_key: str | None = None
    job_key_mode: JobKeyMode | None = None
    payload: dict[str, JSON] | None = dataclasses.field(default=None, hash=False)
    source: str = dataclasses.field(default="", compare=False)
    line: int | None = dataclasses.field(default=None, compare=False)
    _minute_bits: int = dataclasses.field(init=False, repr=False, compare=False)
    _hour_bits: int = dataclasses.field(init=False, repr=False, compare=False)
    _day_bits: int = dataclasses.field(init=False, repr=False, compare=False)
    _month_bits: int = dataclasses.field(init=False, repr=False, compare=False)
    _weekday_bits: int = dataclasses.field(init=False, repr=False, compare=False)
    _day_rule: int = dataclasses.field(init=False, repr=False, compare=False)
    _times: tuple[tuple[int, int], ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        task_identifier = check_task_identifier(self.task_identifier)
        check_identifier(self.identifier, task_identifier)
        fields = (MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK)
        names = ("minutes", "hours", "days_of_month", "months", "days_of_week")
        for spec, name in zip(fields, names, strict=True):
            set_(self, name, check_values(spec, getattr(self, name)))
        check_backfill_period(self.backfill_period)
        if self.max_attempts is not None:
            check_max_attempts(self.max_attempts)
        if self.queue_name is not None:
            check_queue_name(self.queue_name)
        if self.priority is not None:
            check_priority(self.priority)
        if self.job_key is not None:
            check_job_key(self.job_key)
            mode = JobKeyMode.REPLACE if self.job_key_mode is None else self.job_key_mode
            set_(self, "job_key_mode", check_job_key_mode(mode))
        elif self.job_key_mode is not None:
            check_mode_has_key(self.job_key_mode, self.job_key)
        check_payload(self.payload)

        set_(self, "_minute_bits", _bits(self.minutes))
        set_(self, "_hour_bits", _bits(self.hours))
        set_(self, "_day_bits", _bits(self.days_of_month))
        set_(self, "_month_bits", _bits(self.months))
        set_(self, "_weekday_bits", _bits(self.days_of_week))
        rule = (_DAY_OF_MONTH_ONLY if self.days_of_month_restricted else _ANY_DAY) | (
            _DAY_OF_WEEK_ONLY if self.days_of_week_restricted else _ANY_DAY
        )
        set_(self, "_day_rule", rule)
        times = itertools.product(sorted(self.hours), sorted(self.minutes))
        set_(self, "_times", tuple(times))
        if not self.source:
            set_(self, "source", self.to_line())

    # ----------------------------------------------------------------------- questions

    @property
    def days_of_month_restricted(self) -> bool:
        """Whether the day-of-month field leaves out any day.

        Node decides this by count, not spelling: ``*``, ``*/1`` and ``1-31`` all leave
        nothing out. When both day fields are restricted, a day matching *either* runs.
        """
        return len(self.days_of_month) != DAY_OF_MONTH.size

    @property
    def days_of_week_restricted(self) -> bool:
        """Whether the day-of-week field leaves out any weekday (see the day-of-month twin)."""
        return len(self.days_of_week) != DAY_OF_WEEK.size

    @property
    def expression(self) -> str:
        """The five time fields in canonical form, such as ``"0 4 * * 1"``."""
        return " ".join(
            render_field(spec, values)
            for spec, values in (
                (MINUTE, self.minutes),
                (HOUR, self.hours),
                (DAY_OF_MONTH, self.days_of_month),
                (MONTH, self.months),
                (DAY_OF_WEEK, self.days_of_week),
            )
        )

    def matches(self, moment: datetime) -> bool:
        """Whether the schedule runs in the UTC minute containing ``moment``.

        Seconds and smaller are ignored. ``moment`` must be timezone-aware: a naive
        datetime could be local time or UTC, and guessing would shift the schedule.

        Raises:
            ConfigurationError: ``moment`` is naive.
        """
        offset = moment.utcoffset()
        if offset is None:
            raise _naive("moment", moment)
        if offset:
            moment = moment.astimezone(_UTC)
        if not (
            self._minute_bits >> moment.minute
            & self._hour_bits >> moment.hour
            & self._month_bits >> moment.month
            & 1
        ):
            return False
        return self._day_matches(moment.day, moment.isoweekday() % 7)

    def _day_matches(self, day: int, weekday: int) -> bool:
        # Node's cronItemMatches: a restricted field must match; both restricted: either.
        rule = self._day_rule
        if rule == _ANY_DAY:
            return True
        day_ok = bool(self._day_bits >> day & 1)
        if rule == _DAY_OF_MONTH_ONLY:
            return day_ok
        weekday_ok = bool(self._weekday_bits >> weekday & 1)
        return weekday_ok if rule == _DAY_OF_WEEK_ONLY else day_ok or weekday_ok

    def next_runs(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` minutes (UTC, ascending) strictly after ``after``.

        Fewer come back only when the schedule has no more runs before the year 10000,
        as for ``0 0 30 2 *`` (the 30th of February), which returns ``[]``.

        Raises:
            ConfigurationError: ``after`` is naive or ``count`` is negative.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigurationError(f"count must be an int >= 0, not {count!r}")
        first = _utc_minute(after, "after")
        try:
            first += _ONE_MINUTE
        except OverflowError:
            return []
        return list(itertools.islice(self._runs_from(first), count))

    def runs_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every run with ``start <= run < end``, ascending (UTC minutes).

        This is what a backfill walks: the runs a stopped worker missed.

        Raises:
            ConfigurationError: ``start`` or ``end`` is naive.
        """
        stop = _utc(end, "end")
        first = _utc_minute(start, "start")
        if first < start:
            try:
                first += _ONE_MINUTE
            except OverflowError:
                return iter(())
        return itertools.takewhile(lambda run: run < stop, self._runs_from(first))

    def _runs_from(self, first: datetime) -> Iterator[datetime]:
        """Runs at or after ``first`` (a UTC minute), until none is left before 10000."""
        times = self._times
        day = first.date()
        skip = bisect.bisect_left(times, (first.hour, first.minute))
        last_hit = day
        month_bits = self._month_bits
        # With only the day of month restricted, nothing runs after its largest day.
        last_day = max(self.days_of_month) if self._day_rule == _DAY_OF_MONTH_ONLY else 31
        while (day - last_hit).days <= _CALENDAR_CYCLE_DAYS:
            if not month_bits >> day.month & 1 or day.day > last_day:
                following = _next_month(day)
                if following is None:
                    return
                day, skip = following, 0
                continue
            if self._day_matches(day.day, day.isoweekday() % 7):
                for hour, minute in times[skip:] if skip else times:
                    yield datetime(day.year, day.month, day.day, hour, minute, tzinfo=_UTC)
                last_hit = day
            skip = 0
            if day.year == 9999 and day.month == 12 and day.day == 31:
                return
            day += _ONE_DAY

    # ------------------------------------------------------------------------- output

    def to_line(self) -> str:
        """The item as one canonical crontab line; parsing it gives an equal item.

        Options use Node's spellings (``jobKey``, ``jobKeyMode``) and the payload is
        written as JSON, so Node graphile-worker reads the line the same way.
        """
        parts = [self.expression, self.task_identifier]
        options: list[str] = []
        if self.identifier != self.task_identifier:
            options.append(f"id={self.identifier}")
        if self.backfill_period:
            options.append(f"fill={format_time_phrase(self.backfill_period)}")
        if self.max_attempts is not None:
            options.append(f"max={self.max_attempts}")
        if self.queue_name is not None:
            options.append(f"queue={self.queue_name}")
        if self.priority is not None:
            options.append(f"priority={self.priority}")
        if self.job_key is not None:
            options.append(f"jobKey={quote(self.job_key, safe='')}")
            if self.job_key_mode is not JobKeyMode.REPLACE:
                assert self.job_key_mode is not None
                options.append(f"jobKeyMode={self.job_key_mode.value}")
        if options:
            parts.append("?" + "&".join(options))
        if self.payload is not None:
            parts.append(_payload_text(self.payload))
        return " ".join(parts)

    def job_payload(self, ts: datetime, *, backfilled: bool) -> dict[str, JSON]:
        """The payload of the job scheduled for ``ts``, exactly as Node builds it.

        The item's payload with ``_cron: {ts, backfilled}`` added (replacing any
        ``_cron`` of its own); ``ts`` is written as JavaScript's ``toISOString`` does,
        ``2024-01-01T04:00:00.000Z``, so handlers see the same text whichever worker
        scheduled the job.
        """
        moment = _utc(ts, "ts")
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"
        cron: dict[str, JSON] = {"ts": stamp, "backfilled": backfilled}
        return {**(self.payload or {}), "_cron": cron}


def _payload_text(payload: Mapping[str, JSON]) -> str:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # Node's line pattern stops at U+2028 and U+2029, which JSON leaves unescaped.
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _naive(name: str, value: datetime) -> ConfigurationError:
    return ConfigurationError(
        f"{name} {value!r} is a naive datetime; cron schedules are in UTC, so give it a "
        "time zone, for example datetime.now(timezone.utc)"
    )


def _utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise ConfigurationError(f"{name} must be a datetime, not {type(moment).__name__}")
    if moment.utcoffset() is None:
        raise _naive(name, moment)
    return moment.astimezone(_UTC)


def _utc_minute(moment: datetime, name: str) -> datetime:
    return _utc(moment, name).replace(second=0, microsecond=0)


def _next_month(day: date) -> date | None:
    if day.month == 12:
        return None if day.year == 9999 else date(day.year + 1, 1, 1)
    return date(day.year, day.month + 1, 1)
