"""The typed cron builder: ``cron(send_digest).daily_at(4, 30).fill(days=1).build()``.

Every call checks its arguments at once and returns a new builder, so a half-configured
builder can be shared and extended (``base = cron("report").queue("reports")``). The
result is the same :class:`CronItem` the equivalent crontab line parses to, and its
``to_line()`` is that line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Final, Literal, TypeVar

from .._job_defaults import TASK_ATTRIBUTE
from .._payload import payload_to_json
from ..errors import CrontabError, InvalidJobSpecError
from ..spec import JSON, JobKeyMode
from ..task import Task
from ._checks import (
    check_backfill_period,
    check_identifier,
    check_job_key,
    check_job_key_mode,
    check_max_attempts,
    check_payload,
    check_priority,
    check_queue_name,
    check_task_identifier,
)
from ._fields import (
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    FIELDS,
    HOUR,
    MINUTE,
    MONTH,
    FieldError,
    FieldSpec,
    parse_field,
    parse_time_phrase,
)
from ._item import CronItem

__all__ = ["CronBuilder", "TaskReference", "Weekday", "cron"]

TaskReference = str | Task | Callable[..., object] | type
"""What :func:`cron` accepts: a task identifier, a :class:`~graphile_worker.Task`, a function
decorated with ``@task``, or a handler class with an ``IDENTIFIER``."""

Weekday = int | str
"""0-7 (0 and 7 are Sunday) or a name such as ``"mon"`` or ``"monday"``."""

_WEEKDAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WEEKDAY_NAMES: Final = {
    **{name: number for number, name in enumerate(_WEEKDAYS)},
    **{
        name: number
        for number, name in enumerate(
            ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
        )
    },
}
_MONTH_NAMES: Final = {
    **{
        name: number
        for number, name in enumerate(
            ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
            start=1,
        )
    },
    **{
        name: number
        for number, name in enumerate(
            (
                "january", "february", "march", "april", "may", "june", "july",
                "august", "september", "october", "november", "december",
            ),
            start=1,
        )
    },
}  # fmt: skip
_DAYS_IN_MONTH: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_UNITS: Final = {"minute": MINUTE, "minutes": MINUTE, "hour": HOUR, "hours": HOUR}

_T = TypeVar("_T")
_Schedule = tuple[frozenset[int], frozenset[int], frozenset[int], frozenset[int], frozenset[int]]
_ALL: Final = tuple(frozenset(range(spec.low, spec.high + 1)) for spec in FIELDS)


def cron(task: TaskReference) -> CronBuilder:
    """Start a cron item for ``task``; add a schedule, options, then call ``build()``.

    Raises:
        CrontabError: ``task`` names no task, or its identifier cannot appear in a crontab
            (letters, digits and ``_ - : /``, starting with a letter or ``_``).
    """
    identifier = _task_identifier(task)
    try:
        check_task_identifier(identifier)
    except CrontabError as error:
        raise CrontabError(f"cron({identifier!r}): {error.message}") from None
    return CronBuilder(_task=identifier)


def _task_identifier(task: object) -> str:
    if isinstance(task, str):
        return task
    if isinstance(task, Task):
        return task.identifier
    marked = getattr(task, TASK_ATTRIBUTE, None)
    if isinstance(marked, Task):
        return marked.identifier
    if isinstance(task, type):
        declared = getattr(task, "IDENTIFIER", None)
        if isinstance(declared, str):
            return declared
    raise CrontabError(
        f"cron() needs a task identifier, a Task, a function decorated with @task or a "
        f"handler class with an IDENTIFIER, not {task!r:.80}"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class CronBuilder:
    """An immutable, partly built :class:`CronItem`; make one with :func:`cron`.

    Schedule methods (one per builder): :meth:`every_minute`, :meth:`every`,
    :meth:`hourly_at`, :meth:`daily_at`, :meth:`weekly_on`, :meth:`monthly_on`,
    :meth:`yearly_on`, :meth:`expression`. Option methods: :meth:`id`, :meth:`fill`,
    :meth:`max_attempts`, :meth:`queue`, :meth:`priority`, :meth:`job_key`,
    :meth:`payload`. All times are UTC. Anything that takes cron items also takes a
    builder and calls :meth:`build` itself.
    """

    # Users import it from the package; reprs and docs should say so.
    __module__ = "graphile_worker.crontab"

    _task: str
    _schedule: _Schedule | None = None
    _identifier: str | None = None
    _backfill_period: timedelta = timedelta(0)
    _max_attempts: int | None = None
    _queue_name: str | None = None
    _priority: int | None = None
    _job_key: str | None = None
    _job_key_mode: JobKeyMode | None = None
    _payload: dict[str, JSON] | None = dataclasses.field(default=None, hash=False)

    def __repr__(self) -> str:
        if self._schedule is None:
            return f"<CronBuilder for {self._task!r}, no schedule yet>"
        return f"<CronBuilder {self.build().to_line()!r}>"

    def _fail(self, call: str, message: str) -> CrontabError:
        return CrontabError(f"cron({self._task!r}).{call}: {message}")

    # ---------------------------------------------------------------------- schedules

    def _scheduled(
        self,
        call: str,
        minutes: Iterable[int] | None = None,
        hours: Iterable[int] | None = None,
        days_of_month: Iterable[int] | None = None,
        months: Iterable[int] | None = None,
        days_of_week: Iterable[int] | None = None,
    ) -> CronBuilder:
        if self._schedule is not None:
            raise self._fail(
                call, "this builder already has a schedule; start again from cron(...)"
            )
        given = (minutes, hours, days_of_month, months, days_of_week)
        schedule = tuple(
            everything if values is None else frozenset(values)
            for values, everything in zip(given, _ALL, strict=True)
        )
        return dataclasses.replace(self, _schedule=schedule)  # type: ignore[arg-type]

    def _value(self, call: str, spec: FieldSpec, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(call, f"{spec.name} must be an int, not {value!r}")
        if not spec.low <= value <= spec.top:
            raise self._fail(call, f"{spec.name} {value} is out of range ({spec.described_range})")
        return spec.normalise(value)

    def every_minute(self) -> CronBuilder:
        """Run every minute (``* * * * *``)."""
        return self._scheduled("every_minute()")

    def every(
        self, interval: int, unit: Literal["minute", "minutes", "hour", "hours"]
    ) -> CronBuilder:
        """Run every ``interval`` minutes (from minute 0) or hours (at minute 0, from 00:00).

        ``interval`` must divide the hour (or the day) evenly: cron restarts its count
        each hour, so "every 7 minutes" would really run at minute 56 and again at 0.
        Use :meth:`expression` (``"*/7 * * * *"``) if that is what you want.
        """
        call = f"every({interval!r}, {unit!r})"
        spec = _UNITS.get(unit) if isinstance(unit, str) else None
        if spec is None:
            raise self._fail(call, "the unit must be 'minutes' or 'hours'")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise self._fail(call, f"the interval must be a positive int, not {interval!r}")
        if spec.size % interval:
            divisors = [n for n in range(1, spec.size + 1) if spec.size % n == 0]
            raise self._fail(
                call,
                f"{interval} does not divide {spec.size}, so the {spec.plural} would not be "
                f"evenly spaced; use one of {divisors}, or expression('*/{interval} ...') "
                "for a count that restarts every "
                f"{'hour' if spec is MINUTE else 'day'}",
            )
        if spec is MINUTE:
            return self._scheduled(call, minutes=range(0, 60, interval))
        return self._scheduled(call, minutes=(0,), hours=range(0, 24, interval))

    def hourly_at(self, minute: int) -> CronBuilder:
        """Run once an hour, at ``minute`` past (``M * * * *``)."""
        call = f"hourly_at({minute!r})"
        return self._scheduled(call, minutes=(self._value(call, MINUTE, minute),))

    def daily_at(self, hour: int, minute: int = 0) -> CronBuilder:
        """Run once a day at ``hour:minute`` UTC (``M H * * *``)."""
        call = f"daily_at({hour!r}, {minute!r})"
        return self._scheduled(
            call,
            minutes=(self._value(call, MINUTE, minute),),
            hours=(self._value(call, HOUR, hour),),
        )

    def weekly_on(
        self, weekday: Weekday | Iterable[Weekday], hour: int = 0, minute: int = 0
    ) -> CronBuilder:
        """Run on ``weekday`` (or each of several) at ``hour:minute`` UTC.

        Weekdays are 0-7 (0 and 7 are Sunday) or names: ``"mon"``, ``"monday"``, any case.
        ``weekly_on(["mon", "wed", "fri"], 9)`` runs three times a week.
        """
        call = f"weekly_on({weekday!r}, {hour!r}, {minute!r})"
        given = [weekday] if isinstance(weekday, (int, str)) else list(weekday)
        if not given:
            raise self._fail(call, "give at least one weekday")
        days = {self._weekday(call, day) for day in given}
        return self._scheduled(
            call,
            minutes=(self._value(call, MINUTE, minute),),
            hours=(self._value(call, HOUR, hour),),
            days_of_week=days,
        )

    def _weekday(self, call: str, day: object) -> int:
        if isinstance(day, str):
            number = _WEEKDAY_NAMES.get(day.lower())
            if number is None:
                raise self._fail(call, f"unknown weekday {day!r}; use 0-7 or a name such as 'mon'")
            return number
        return self._value(call, DAY_OF_WEEK, day)

    def monthly_on(self, day: int, hour: int = 0, minute: int = 0) -> CronBuilder:
        """Run on day ``day`` (1-31) of each month at ``hour:minute`` UTC.

        Months without that day are skipped, as in any cron: ``monthly_on(31)`` runs seven
        times a year.
        """
        call = f"monthly_on({day!r}, {hour!r}, {minute!r})"
        return self._scheduled(
            call,
            minutes=(self._value(call, MINUTE, minute),),
            hours=(self._value(call, HOUR, hour),),
            days_of_month=(self._value(call, DAY_OF_MONTH, day),),
        )

    def yearly_on(self, month: int | str, day: int, hour: int = 0, minute: int = 0) -> CronBuilder:
        """Run once a year on ``month`` (1-12 or a name like ``"jan"``) ``day``, UTC.

        February 29 is allowed and runs in leap years only; dates that never exist
        (April 31) are refused.
        """
        call = f"yearly_on({month!r}, {day!r}, {hour!r}, {minute!r})"
        if isinstance(month, str):
            number = _MONTH_NAMES.get(month.lower())
            if number is None:
                raise self._fail(call, f"unknown month {month!r}; use 1-12 or a name like 'jan'")
        else:
            number = self._value(call, MONTH, month)
        day_number = self._value(call, DAY_OF_MONTH, day)
        if day_number > _DAYS_IN_MONTH[number - 1]:
            raise self._fail(call, f"month {number} never has a day {day_number}")
        return self._scheduled(
            call,
            minutes=(self._value(call, MINUTE, minute),),
            hours=(self._value(call, HOUR, hour),),
            days_of_month=(day_number,),
            months=(number,),
        )

    def expression(self, text: str) -> CronBuilder:
        """Use a five-field crontab time expression, such as ``"*/15 9-17 * * 1-5"``.

        The grammar is the crontab file's (see :mod:`graphile_worker.crontab`).
        """
        call = f"expression({text!r})"
        if not isinstance(text, str):
            raise self._fail(call, "the expression must be a str")
        fields = text.split()
        if len(fields) != 5:
            raise self._fail(
                call,
                f"expected five fields (minute hour day-of-month month day-of-week), "
                f"found {len(fields)}",
            )
        sets: list[frozenset[int]] = []
        for spec, field in zip(FIELDS, fields, strict=True):
            if not set(field) <= set("0123456789*/,-"):
                raise self._fail(
                    call,
                    f"unsupported {spec.name} syntax {field!r}; use numbers, ranges 'a-b', "
                    "'*' or '*/n', separated by commas",
                )
            try:
                sets.append(parse_field(spec, field))
            except FieldError as error:
                raise self._fail(call, str(error)) from None
        return self._scheduled(call, *sets)

    # ------------------------------------------------------------------------ options

    def id(self, identifier: str) -> CronBuilder:
        """Name this item; needed when one task has several schedules.

        The database remembers each identifier's last run (for backfill and to schedule
        once across workers), so choose it once and keep it.
        """
        try:
            check_identifier(identifier, "")
        except CrontabError as error:
            raise self._fail(f"id({identifier!r})", error.message) from None
        return dataclasses.replace(self, _identifier=identifier)

    def fill(
        self,
        period: timedelta | str | None = None,
        *,
        weeks: int = 0,
        days: int = 0,
        hours: int = 0,
        minutes: int = 0,
        seconds: int = 0,
    ) -> CronBuilder:
        """Backfill runs missed within this period when a worker starts.

        Give a timedelta, a time phrase like ``"1d12h"``, or keywords:
        ``fill(days=1)``. Only items the database already knows are backfilled.
        """
        call = "fill(...)"
        try:
            if isinstance(period, str):
                total = parse_time_phrase(period)
            elif period is None or isinstance(period, timedelta):
                total = (period or timedelta(0)) + timedelta(
                    weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds
                )
            else:
                raise CrontabError(f"give a timedelta or a time phrase, not {period!r}")
            check_backfill_period(total)
        except (CrontabError, ValueError, OverflowError, TypeError) as error:
            message = error.message if isinstance(error, CrontabError) else str(error)
            raise self._fail(call, message) from None
        return dataclasses.replace(self, _backfill_period=total)

    def max_attempts(self, attempts: int) -> CronBuilder:
        """Override the jobs' ``max_attempts`` (1-32767)."""
        checked = self._option(f"max_attempts({attempts!r})", check_max_attempts, attempts)
        return dataclasses.replace(self, _max_attempts=checked)

    def queue(self, name: str) -> CronBuilder:
        """Run the jobs one at a time in the named queue."""
        checked = self._option(f"queue({name!r})", check_queue_name, name)
        return dataclasses.replace(self, _queue_name=checked)

    def priority(self, priority: int) -> CronBuilder:
        """Override the jobs' priority (lower numbers run first)."""
        checked = self._option(f"priority({priority!r})", check_priority, priority)
        return dataclasses.replace(self, _priority=checked)

    def job_key(
        self,
        key: str,
        mode: JobKeyMode | Literal["replace", "preserve_run_at"] = JobKeyMode.REPLACE,
    ) -> CronBuilder:
        """Add the jobs under ``key``, so a job still waiting is updated, not duplicated.

        ``mode`` is ``REPLACE`` (the default) or ``PRESERVE_RUN_AT``; the crontab format
        has no ``UNSAFE_DEDUPE``.
        """
        call = f"job_key({key!r}, {mode!r})"
        checked_key = self._option(call, check_job_key, key)
        checked_mode = self._option(call, check_job_key_mode, mode)
        return dataclasses.replace(self, _job_key=checked_key, _job_key_mode=checked_mode)

    def payload(self, payload: Mapping[str, object] | object) -> CronBuilder:
        """Merge this JSON object into each job's payload.

        A mapping, a dataclass or a pydantic model; it is copied through JSON now, so
        later changes to the original do not leak in and a value JSON cannot hold fails
        here rather than at run time.
        """
        call = "payload(...)"
        try:
            copied = json.loads(payload_to_json(payload))
        except InvalidJobSpecError as error:
            raise self._fail(call, str(error)) from None
        if not isinstance(copied, dict):
            raise self._fail(call, f"the payload must be a JSON object, not {payload!r:.60}")
        self._option(call, check_payload, copied)
        return dataclasses.replace(self, _payload=copied)

    def _option(self, call: str, check: Callable[[object], _T], value: object) -> _T:
        try:
            return check(value)
        except CrontabError as error:
            raise self._fail(call, error.message) from None

    # -------------------------------------------------------------------------- build

    def build(self) -> CronItem:
        """The finished :class:`CronItem`.

        Raises:
            CrontabError: no schedule method was called.
        """
        if self._schedule is None:
            raise self._fail(
                "build()",
                "no schedule; call every_minute(), every(), hourly_at(), daily_at(), "
                "weekly_on(), monthly_on(), yearly_on() or expression() first",
            )
        minutes, hours, days_of_month, months, days_of_week = self._schedule
        return CronItem(
            task_identifier=self._task,
            identifier=self._identifier or self._task,
            minutes=minutes,
            hours=hours,
            days_of_month=days_of_month,
            months=months,
            days_of_week=days_of_week,
            backfill_period=self._backfill_period,
            max_attempts=self._max_attempts,
            queue_name=self._queue_name,
            priority=self._priority,
            job_key=self._job_key,
            job_key_mode=self._job_key_mode,
            payload=self._payload,
        )
