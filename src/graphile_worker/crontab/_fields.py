"""The five time fields and the ``fill`` time phrase of a crontab line, read and written.

Reading follows Node graphile-worker's ``cronMatcher.js`` exactly, so that one crontab file
means the same to both: a field is a comma list of ``n``, ``a-b`` (``b`` greater than ``a``)
and ``*`` or ``*/n``; ``*/n`` counts from the field's lowest value; day of week 7 is Sunday
(stored as 0). Writing produces the canonical form :meth:`CronItem.to_line` uses, which
Node reads back to the same sets.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Final

__all__ = [
    "FIELDS",
    "FieldError",
    "FieldSpec",
    "format_time_phrase",
    "parse_field",
    "parse_time_phrase",
    "render_field",
]


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """One time field: its name in messages and its range of values."""

    name: str
    plural: str
    low: int
    high: int
    sunday_alias: bool = False
    """Day of week: ``high + 1`` (7) is accepted and means ``low`` (0, Sunday)."""

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    @property
    def described_range(self) -> str:
        if self.sunday_alias:
            return f"{self.plural} are {self.low}-{self.high + 1}; 0 and 7 are Sunday"
        return f"{self.plural} are {self.low}-{self.high}"

    @property
    def top(self) -> int:
        """The largest value the text may use (7 for day of week)."""
        return self.high + 1 if self.sunday_alias else self.high

    def normalise(self, value: int) -> int:
        return self.low if self.sunday_alias and value == self.high + 1 else value


MINUTE = FieldSpec("minute", "minutes", 0, 59)
HOUR = FieldSpec("hour", "hours", 0, 23)
DAY_OF_MONTH = FieldSpec("day of month", "days of month", 1, 31)
MONTH = FieldSpec("month", "months", 1, 12)
DAY_OF_WEEK = FieldSpec("day of week", "days of week", 0, 6, sunday_alias=True)
FIELDS: Final = (MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK)
"""In line order."""


class FieldError(ValueError):
    """A field (or one part of it) is invalid; ``offset`` is where, within the field."""

    def __init__(self, message: str, offset: int = 0, text: str | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.text = text


_NUMBER: Final = re.compile(r"[0-9]+")
_RANGE: Final = re.compile(r"([0-9]+)-([0-9]+)")
_WILDCARD: Final = re.compile(r"\*(?:/([0-9]+))?")
_STEPPED_RANGE: Final = re.compile(r"([0-9]+)-([0-9]+)/([0-9]+)")
_STEPPED_NUMBER: Final = re.compile(r"([0-9]+)/([0-9]+)")


def parse_field(spec: FieldSpec, text: str) -> frozenset[int]:
    """The values a field's text selects, as Node's ``parseCrontabRange`` computes them.

    Raises:
        FieldError: for the first invalid part, with its offset within ``text``.
    """
    values: set[int] = set()
    offset = 0
    for part in text.split(","):
        try:
            values.update(_parse_part(spec, part))
        except FieldError as error:
            raise FieldError(str(error), offset, part) from None
        offset += len(part) + 1
    return frozenset(values)


def _number(digits: str) -> int:
    """``int(digits)``, clamped: a value too large for any field need not be exact."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 18 else 10**18


def _parse_part(spec: FieldSpec, part: str) -> Iterable[int]:
    if _NUMBER.fullmatch(part):
        value = _number(part)
        if not spec.low <= value <= spec.top:
            raise FieldError(f"{spec.name} {part!r} is out of range ({spec.described_range})")
        return (spec.normalise(value),)
    match = _RANGE.fullmatch(part)
    if match:
        start, end = _number(match.group(1)), _number(match.group(2))
        if end <= start:
            hint = f"; write {start} for a single value" if end == start else ""
            raise FieldError(
                f"invalid {spec.name} range {part!r}: the end must be greater than the start{hint}"
            )
        if start < spec.low or end > spec.top:
            raise FieldError(f"invalid {spec.name} range {part!r} ({spec.described_range})")
        return (spec.normalise(value) for value in range(start, end + 1))
    match = _WILDCARD.fullmatch(part)
    if match:
        step = _number(match.group(1)) if match.group(1) is not None else 1
        if step < 1:
            raise FieldError(f"invalid {spec.name} step {part!r}: the step must be at least 1")
        return range(spec.low, spec.high + 1, step)
    raise FieldError(_unsupported(spec, part))


def _unsupported(spec: FieldSpec, part: str) -> str:
    # Node's grammar has no stepped ranges ("0-30/10") nor "5/15"; say what to write instead
    # so that the file stays readable by Node workers too.
    stepped = _STEPPED_RANGE.fullmatch(part)
    if stepped:
        start, end, step = (_number(group) for group in stepped.groups())
        if spec.low <= start <= end <= spec.high and 0 < step <= spec.size:
            listed = ",".join(str(value) for value in range(start, end + 1, step))
            return (
                f"stepped ranges like {part!r} are not part of the crontab format; "
                f"list the {spec.plural} instead: {listed}"
            )
        return f"stepped ranges like {part!r} are not part of the crontab format"
    if _STEPPED_NUMBER.fullmatch(part):
        return f"{part!r} is not part of the crontab format; use '*/n' or list the {spec.plural}"
    if not part:
        return f"empty {spec.name} in a comma list"
    return f"unsupported {spec.name} syntax {part!r}; use a number, a range 'a-b', '*' or '*/n'"


def render_field(spec: FieldSpec, values: frozenset[int]) -> str:
    """The shortest usual spelling of ``values``: ``*``, ``*/n`` or a list of runs."""
    if len(values) == spec.size:
        return "*"
    ordered = sorted(values)
    if len(ordered) > 1:
        step = ordered[1] - ordered[0]
        if ordered[0] == spec.low and values == frozenset(range(spec.low, spec.high + 1, step)):
            return f"*/{step}"
    parts: list[str] = []
    run_start = previous = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        if previous - run_start >= 2:
            parts.append(f"{run_start}-{previous}")
        else:
            parts.extend(str(number) for number in range(run_start, previous + 1))
        if value is not None:
            run_start = previous = value
    return ",".join(parts)


# ------------------------------------------------------------------------- time phrases

_UNIT_SECONDS: Final = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_TIME_PHRASE: Final = re.compile(r"(?:[0-9]+[smhdw])+")
_TIME_PHRASE_PART: Final = re.compile(r"([0-9]+)([smhdw])")
_MAX_SECONDS: Final = timedelta.max.days * 86400 + 86399


def parse_time_phrase(phrase: str) -> timedelta:
    """``"1w2d3h4m5s"`` as a timedelta (Node's ``parseTimePhrase``; units may repeat).

    Raises:
        ValueError: the phrase is malformed or longer than a timedelta can hold.
    """
    if not _TIME_PHRASE.fullmatch(phrase):
        raise ValueError(
            f"{phrase!r} is not a time phrase; write numbers with the units w, d, h, m or s, "
            "such as 1d or 2h30m"
        )
    seconds = sum(
        _number(quantity) * _UNIT_SECONDS[unit]
        for quantity, unit in _TIME_PHRASE_PART.findall(phrase)
    )
    if seconds > _MAX_SECONDS:
        raise ValueError(f"time phrase {phrase!r} is longer than {timedelta.max.days} days")
    return timedelta(seconds=seconds)


def format_time_phrase(period: timedelta) -> str:
    """The canonical time phrase for a whole number of seconds, largest unit first."""
    # Whole seconds from the parts: total_seconds() is a float and rounds long periods.
    remaining = period.days * 86400 + period.seconds
    parts: list[str] = []
    for unit, size in _UNIT_SECONDS.items():
        quantity, remaining = divmod(remaining, size)
        if quantity:
            parts.append(f"{quantity}{unit}")
    return "".join(parts) or "0s"
