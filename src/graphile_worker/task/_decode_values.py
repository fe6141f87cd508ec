"""Reading back the JSON forms :mod:`graphile_worker._payload` writes for non-JSON values.

Each parser takes the JSON value (usually a string) and returns the Python value, or raises
:class:`ValueError` saying what was wrong (empty when "not of that form" says it all);
:mod:`graphile_worker.task._decode` turns that into a decode failure naming the field. The
forms are spelled out here rather than left to ``datetime.fromisoformat`` and friends because
what those accept grows from one Python version to the next, and a payload must not decode on
one worker and fail on another. They accept what we write, what Node writes
(``Date.toJSON()``, ``Buffer.toString("base64")``), and what pydantic writes (ISO 8601
durations with years, ``Z`` for UTC).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Final
from uuid import UUID

__all__ = ["VALUE_FORMS", "ValueForm"]

_OFFSET = (
    r"(?:(?P<z>[Zz])|(?P<sign>[-+])(?P<oh>\d\d)"
    r"(?::?(?P<om>\d\d)(?::?(?P<os>\d\d)(?:\.(?P<of>\d{1,6}))?)?)?)"
)
_CLOCK = r"(?P<h>\d\d):(?P<m>\d\d)(?::(?P<s>\d\d)(?:[.,](?P<f>\d+))?)?"
_DATE = r"(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)"
_DATE_FORM: Final = re.compile(_DATE, re.ASCII)
_DATETIME_FORM: Final = re.compile(rf"{_DATE}[Tt ]{_CLOCK}{_OFFSET}?", re.ASCII)
_TIME_FORM: Final = re.compile(rf"{_CLOCK}{_OFFSET}?", re.ASCII)
_NUMBER = r"(\d+(?:[.,]\d+)?)"
_DURATION_FORM: Final = re.compile(
    rf"([-+])?P(?:{_NUMBER}Y)?(?:{_NUMBER}W)?(?:{_NUMBER}D)?"
    rf"(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?",
    re.ASCII,
)
# Microseconds per unit. A year is 365 days, as pydantic counts it when it writes one
# (``P1Y35D`` for 400 days). Months are refused: nobody we read writes them, and reading one
# as 30 days (pydantic's guess) would turn "P1M" into something its writer did not mean.
_DURATION_UNITS: Final = (
    365 * 86_400_000_000,
    7 * 86_400_000_000,
    86_400_000_000,
    3_600_000_000,
    60_000_000,
    1_000_000,
)
# Standard alphabet, padded to a multiple of four: what b64encode and Node write.
_BASE64_FORM: Final = re.compile(
    r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", re.ASCII
)


class _WrongForm(ValueError):
    """Not this type's JSON form at all; the "expected ..., got ..." message says enough."""


def _microseconds(fraction: str | None) -> int:
    # Digits past the sixth are dropped: Python keeps microseconds; other languages write
    # up to nanoseconds.
    return int(fraction[:6].ljust(6, "0")) if fraction else 0


def _offset(match: re.Match[str]) -> timezone | None:
    if match["z"]:
        return timezone.utc
    if not match["sign"]:
        return None
    offset = timedelta(
        hours=int(match["oh"]),
        minutes=int(match["om"] or 0),
        seconds=int(match["os"] or 0),
        microseconds=_microseconds(match["of"]),
    )
    if not offset:
        return timezone.utc
    return timezone(-offset if match["sign"] == "-" else offset)


def parse_datetime(value: object) -> datetime:
    if not isinstance(value, str) or (match := _DATETIME_FORM.fullmatch(value)) is None:
        raise _WrongForm
    zone = _offset(match)
    if zone is None:
        raise ValueError(
            "it has no UTC offset (without one it names a different instant in each time "
            "zone); write one, as Node's date.toJSON() does"
        )
    return datetime(
        int(match["y"]),
        int(match["mo"]),
        int(match["d"]),
        int(match["h"]),
        int(match["m"]),
        int(match["s"] or 0),
        _microseconds(match["f"]),
        tzinfo=zone,
    )


def parse_date(value: object) -> date:
    if not isinstance(value, str) or (match := _DATE_FORM.fullmatch(value)) is None:
        raise _WrongForm
    return date(int(match["y"]), int(match["mo"]), int(match["d"]))


def parse_time(value: object) -> time:
    if not isinstance(value, str) or (match := _TIME_FORM.fullmatch(value)) is None:
        raise _WrongForm
    return time(
        int(match["h"]),
        int(match["m"]),
        int(match["s"] or 0),
        _microseconds(match["f"]),
        tzinfo=_offset(match),
    )


def parse_timedelta(value: object) -> timedelta:
    if isinstance(value, bool):
        raise _WrongForm
    try:
        if isinstance(value, (int, float)):
            return timedelta(seconds=value)
        if not isinstance(value, str):
            raise _WrongForm
        match = _DURATION_FORM.fullmatch(value)
        if match is None or not any(match.groups()[1:]) or value.endswith("T"):
            months = "M" in value.partition("T")[0]
            if months and "P" in value:
                raise ValueError("months have no fixed length; write days")
            raise _WrongForm
        total = sum(
            Fraction(number.replace(",", ".")) * unit
            for number, unit in zip(match.groups()[1:], _DURATION_UNITS, strict=True)
            if number is not None
        )
        micro = round(total)
        return timedelta(microseconds=-micro if match[1] == "-" else micro)
    except OverflowError:
        raise ValueError("it is beyond timedelta's range (999,999,999 days)") from None


def parse_uuid(value: object) -> UUID:
    if not isinstance(value, str):
        raise _WrongForm
    return UUID(value)


def parse_decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise _WrongForm
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # The shortest text that reads back as this float: 0.1, not 0.1000000000000000055...
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise _WrongForm
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _WrongForm from None
    if not number.is_finite():
        raise ValueError("NaN and infinities are refused, as in JSON numbers")
    return number


def parse_bytes(value: object) -> bytes:
    if not isinstance(value, str) or _BASE64_FORM.fullmatch(value) is None:
        if isinstance(value, str) and ("-" in value or "_" in value):
            raise ValueError(
                "that looks like URL-safe base64 (- and _), which pydantic's base64 mode writes"
            )
        raise _WrongForm
    try:
        return binascii.a2b_base64(value)
    except binascii.Error as error:  # pragma: no cover - the pattern admits valid text only
        raise ValueError(str(error)) from None


def parse_bytearray(value: object) -> bytearray:
    return bytearray(parse_bytes(value))


ValueForm = tuple[Callable[[object], object], str]
"""A type's parser, and what its JSON form looks like (said in errors as "expected ...")."""

VALUE_FORMS: Final[dict[type, ValueForm]] = {
    datetime: (
        parse_datetime,
        "an ISO 8601 date and time with a UTC offset, like '2024-01-02T03:04:05.678Z'",
    ),
    date: (parse_date, "an ISO 8601 date, like '2024-01-02'"),
    time: (parse_time, "an ISO 8601 time, like '03:04:05' or '03:04:05.678+02:00'"),
    timedelta: (
        parse_timedelta,
        "an ISO 8601 duration, like 'P1DT2H3M4.5S', or a number of seconds",
    ),
    UUID: (parse_uuid, "a UUID string, like '123e4567-e89b-12d3-a456-426614174000'"),
    Decimal: (parse_decimal, "a decimal number: a string like '1.10', or a JSON number"),
    bytes: (parse_bytes, "standard base64 with padding, like 'aGk='"),
    bytearray: (parse_bytearray, "standard base64 with padding, like 'aGk='"),
}
"""The types with a JSON form of their own, by exact type (a subclass is not built)."""
