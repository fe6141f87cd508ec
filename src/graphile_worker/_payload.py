"""A job on its way in: the payload as JSON text, its task identifier and spec, checked.

Every way of adding a job (the utilities, the SQLAlchemy helpers, the worker's context,
cron) goes through :func:`prepare_job`, so they all refuse the same payloads with the same
:class:`~graphile_worker.InvalidJobSpecError` before any SQL runs. Node's ``add_job``
defaults (25 attempts, an empty object for no payload) live here too.

Beyond JSON's own types, a payload may hold values that have one obvious JSON form, each
written the way :mod:`graphile_worker.task._decode_values` reads it back (so a dataclass
goes in and comes out equal) and the way Node code can use it:

* ``datetime`` (aware only): ISO 8601 with its offset, UTC as ``Z``
  (``2024-01-02T03:04:05.678000Z``), which JavaScript's ``new Date(s)`` reads. Only the offset
  travels, not the zone's name (a ``ZoneInfo`` comes back as a fixed offset). A naive datetime
  is refused: the job may run on a machine in another time zone;
* ``date`` (``2024-01-02``), ``time`` (``03:04:05``, with an offset when it has one);
* ``timedelta``: an ISO 8601 duration (``P1DT2H3M4.5S``, ``-PT1S``), as pydantic writes it
  except that whole years stay days;
* ``UUID``: the canonical string; ``Decimal``: its string (``"1.10"``, not a lossy number);
* enums (``Enum``, ``Flag``; ``StrEnum``/``IntEnum`` already were): the member's value;
* ``set``/``frozenset``: an array, sorted when the items are, so that one set always gives one
  text (a job key's payload, a test's expected JSON); ``tuple``: an array;
* ``bytes``/``bytearray``: standard base64 with padding (Node: ``Buffer.from(s, "base64")``);
* dataclasses (their fields) and pydantic models (their own ``model_dump(mode="json")``).

The ``json.dumps`` hook only runs for values JSON cannot write itself, so payloads made of
JSON types pay nothing for this. Explaining a failure (which value, where, what to do) takes a
second walk over the payload, done only once encoding has failed.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from ._validate import check_task_identifier
from .errors import InvalidJobSpecError
from .spec import JobSpec

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_SPEC",
    "JOB_DECORATORS",
    "JobDecorator",
    "PreparedJob",
    "identifier_of",
    "payload_to_json",
    "prepare_job",
]

DEFAULT_MAX_ATTEMPTS = 25
"""Attempts a job gets when its spec does not say (Node's ``add_job`` default)."""

DEFAULT_SPEC = JobSpec()
"""The spec of a job added without one."""

JobDecorator = Callable[[str, str, JobSpec], str]
"""``decorator(identifier, payload_json, spec)``: the payload JSON to store instead."""

JOB_DECORATORS: list[JobDecorator] = []
"""Process-wide callbacks every job passes through on its way in (tracing registers one).

A list rather than hooks on each utility because jobs are added from many places (both
utilities, the SQLAlchemy helpers, ``ctx.add_job``) and a tracer must see them all; an
empty list costs one truth test per job. Batches skip their fast path while one is set.
"""

_SUPPORTED = (
    "str, int, float, bool, None, list, tuple, dict, set, frozenset, datetime (aware), date, "
    "time, timedelta, UUID, Decimal, bytes, an Enum, a dataclass or a pydantic model"
)


class _Unencodable(Exception):
    """Raised by the ``json.dumps`` hook; ``problem`` completes ``<path> ...`` in the message."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _encode_datetime(value: datetime) -> str:
    offset = value.utcoffset()
    if offset is None:
        raise _Unencodable(
            f"is a naive datetime ({value!r}); a job may run in another time zone than the one "
            "that queued it, so a payload datetime must carry its offset: use "
            "datetime.now(timezone.utc), or .replace(tzinfo=...) with the zone the wall-clock "
            "time is in"
        )
    text = value.isoformat()
    # isoformat writes UTC as +00:00; Z is what JavaScript's Date.toJSON() writes.
    return f"{text[:-6]}Z" if not offset else text


def _encode_time(value: time) -> str:
    text = value.isoformat()
    offset = value.utcoffset()
    return f"{text[:-6]}Z" if offset is not None and not offset else text


def _encode_timedelta(value: timedelta) -> str:
    """An ISO 8601 duration, exact to the microsecond (``-P1DT2H3M4.5S``).

    Days, never years or months (whose length varies), and the sign in front of the whole
    duration, as pydantic writes it, rather than Python's "minus one day plus 86,399 s".
    """
    micro = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micro < 0 else ""
    days, micro = divmod(abs(micro), 86_400_000_000)
    hours, micro = divmod(micro, 3_600_000_000)
    minutes, micro = divmod(micro, 60_000_000)
    seconds, micro = divmod(micro, 1_000_000)
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if micro:
        clock += f"{seconds}.{micro:06d}".rstrip("0") + "S"
    elif seconds or not (days or clock):
        clock += f"{seconds}S"
    return f"{sign}P{f'{days}D' if days else ''}{f'T{clock}' if clock else ''}"


def _encode_decimal(value: Decimal) -> str:
    if not value.is_finite():
        raise _Unencodable(
            f"is Decimal({str(value)!r}), which a JSON payload cannot carry; send null or a "
            "finite number instead"
        )
    return str(value)


def _encode_bytes(value: bytes | bytearray) -> str:
    return base64.b64encode(value).decode("ascii")


def _set_items(value: Iterable[object]) -> list[object]:
    """A set's items in an order that depends on the items only, not on hashing."""
    items: list[Any] = list(value)
    kinds = {type(item) for item in items}
    if kinds <= _NUMBERS or (len(kinds) == 1 and kinds <= _ORDERED):
        try:
            return sorted(items)
        except TypeError:  # aware and naive datetimes, say
            pass
    try:
        return sorted(items, key=_ENCODER.encode)
    except (_Unencodable, ValueError, TypeError, RecursionError):
        return items  # cannot be sent anyway; the error is reported about an item


_NUMBERS = frozenset({int, float, bool, Decimal})
_ORDERED = frozenset({str, bytes, date, datetime, time, timedelta, UUID})

_VALUE_ENCODERS: dict[type, Callable[[Any], object]] = {
    datetime: _encode_datetime,  # before date, its base class
    date: date.isoformat,
    time: _encode_time,
    timedelta: _encode_timedelta,
    UUID: str,
    Decimal: _encode_decimal,
    set: _set_items,
    frozenset: _set_items,
    bytes: _encode_bytes,
    bytearray: _encode_bytes,
}
"""How each value type is written (each function takes its own key's type, hence Any)."""

_ENCODERS: dict[type, Callable[[Any], object]] = dict(_VALUE_ENCODERS)
"""The encoder for each exact type met so far: after its first instance, a dataclass or an
enum costs the hook one dictionary lookup, not a series of checks (``dataclasses.fields``
alone is slower than writing a small dataclass)."""

_MAX_ENCODERS = 4096
"""Stop remembering new types past this many (classes made on the fly must not pile up)."""


def _to_jsonable(value: object) -> object:
    """``json.dumps`` hook: what JSON cannot write itself, as something it can."""
    encode = _ENCODERS.get(type(value))
    if encode is None:
        encode = _encoder_for(value)
    return encode(value)


def _encoder_for(value: object) -> Callable[[Any], object]:
    """Find how to write instances of ``type(value)``, and remember it."""
    if isinstance(value, type):  # a class where an instance belongs: explained, not cached
        raise _Unencodable(_unsupported(value))
    kind = type(value)
    encode: Callable[[Any], object]
    if dataclasses.is_dataclass(kind):
        encode = _dataclass_encoder(tuple(field.name for field in dataclasses.fields(kind)))
    elif callable(getattr(value, "model_dump", None)):
        # pydantic v2 (duck-typed, so pydantic stays optional); mode="json" turns datetimes,
        # UUIDs and the like into the strings the model's own serialisers choose.
        encode = _model_dump
    elif isinstance(value, enum.Enum):
        # str and int enums never get here: JSON writes them as their values already.
        encode = _enum_value
    elif isinstance(value, Mapping):
        encode = dict
    else:
        for base, encode in _VALUE_ENCODERS.items():  # noqa: B007 - kept when found
            if isinstance(value, base):  # a subclass (datetime is checked before date)
                break
        else:
            raise _Unencodable(_unsupported(value))
    if len(_ENCODERS) < _MAX_ENCODERS:
        _ENCODERS[kind] = encode
    return encode


def _dataclass_encoder(names: tuple[str, ...]) -> Callable[[Any], object]:
    def encode(value: object) -> object:
        return {name: getattr(value, name) for name in names}

    return encode


def _model_dump(value: Any) -> object:
    return value.model_dump(mode="json")


def _enum_value(value: enum.Enum) -> object:
    return value.value


def _unsupported(value: object) -> str:
    kind = type(value)
    if isinstance(value, type):
        if dataclasses.is_dataclass(value) or callable(getattr(value, "model_dump", None)):
            return (
                f"is the class {value.__qualname__} itself, not an instance of it; pass "
                f"{value.__qualname__}(...)"
            )
        return f"is the class {value.__module__}.{value.__qualname__}, which has no JSON form"
    return (
        f"is a {kind.__module__}.{kind.__qualname__} ({value!r:.80}), which has no JSON form; "
        f"convert it to one of: {_SUPPORTED}"
    )


_ENCODER = json.JSONEncoder(
    default=_to_jsonable, allow_nan=False, ensure_ascii=False, separators=(",", ":")
)
# One encoder for every call: json.dumps would build a new one each time, as its options are
# not the defaults. JSONEncoder keeps no state between calls, so threads may share it.


def payload_to_json(payload: object) -> str:
    """Serialise a job payload to JSON text for the ``json`` payload column.

    ``None`` becomes ``{}``, as in Node (``JSON.stringify(payload ?? {})``). Dataclasses
    and pydantic models (anything with ``model_dump``) become objects, also when nested;
    the module docstring lists the other types with a JSON form. NaN and infinities are
    refused because PostgreSQL's ``json`` type rejects them.

    Raises:
        InvalidJobSpecError: the payload (or something inside it) cannot be represented; the
            message names the place (``payload.items[2].when``) and what to do.
    """
    if payload is None:
        return "{}"
    try:
        text = _ENCODER.encode(payload)
    except (_Unencodable, ValueError, TypeError, RecursionError) as error:
        # ValueError: NaN (allow_nan=False), a circular reference, a pydantic serialiser's
        # complaint; TypeError: a dict key JSON cannot write.
        raise _explained(payload, error) from (None if isinstance(error, _Unencodable) else error)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _explained(payload, error) from None
    return text


def _explained(payload: object, error: BaseException) -> InvalidJobSpecError:
    """The error for a payload that failed to encode, found again by a walk that knows paths."""
    try:
        found = _first_problem(payload, "payload", set())
    except RecursionError:
        found = None
    if found is None:  # not found again (a serialiser that fails only sometimes, say)
        detail = error.problem if isinstance(error, _Unencodable) else str(error)
        return InvalidJobSpecError(f"payload cannot be sent as JSON: {detail}")
    path, problem = found
    return InvalidJobSpecError(f"payload cannot be sent as JSON: {path} {problem}")


def _key_path(path: str, key: object) -> str:
    return f"{path}.{key}" if isinstance(key, str) and key.isidentifier() else f"{path}[{key!r}]"


def _first_problem(value: object, path: str, ancestors: set[int]) -> tuple[str, str] | None:
    """Walk ``value`` as the encoder does: ``(path, problem)`` for the first thing it refuses."""
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, str):
        return None if _encodable_text(value) else (path, _SURROGATE)
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        problem = (
            f"is {value!r}, which JSON cannot carry (PostgreSQL's json type refuses NaN and "
            "infinities); send null or a string instead"
        )
        return path, problem
    if id(value) in ancestors:
        return path, "contains itself (a circular reference); a JSON payload must be a tree"
    ancestors.add(id(value))
    try:
        return _first_problem_inside(value, path, ancestors)
    finally:
        ancestors.discard(id(value))


def _first_problem_inside(value: object, path: str, ancestors: set[int]) -> tuple[str, str] | None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not (key is None or isinstance(key, (str, int, float))):
                problem = (
                    f"has the key {key!r:.60} ({type(key).__qualname__}), but JSON object "
                    "keys must be strings; convert the keys with str(...) first"
                )
                return path, problem
            if isinstance(key, float) and not math.isfinite(key):
                return path, f"has the key {key!r}, which JSON cannot carry"
            if isinstance(key, str) and not _encodable_text(key):
                return path, f"has a key with a lone surrogate character{_SURROGATE_FIX}"
            found = _first_problem(item, _key_path(path, key), ancestors)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _first_problem(item, f"{path}[{index}]", ancestors)
            if found is not None:
                return found
        return None
    if isinstance(value, (set, frozenset)):
        return _first_problem(_set_items(value), path, ancestors)
    try:
        converted = _to_jsonable(value)
    except _Unencodable as failure:
        return path, failure.problem
    except Exception as error:  # noqa: BLE001 - a model_dump that raised: reported, not lost
        how = "model_dump(mode='json')" if hasattr(value, "model_dump") else "converting it"
        return path, (
            f"is a {type(value).__qualname__}, and {how} raised {type(error).__name__}: {error}"
        )
    return _first_problem(converted, path, ancestors)


_SURROGATE_FIX = (
    ", which cannot be encoded as UTF-8; decode the text it came from with "
    "errors='replace' or fix it at the source"
)
_SURROGATE = f"is a string with a lone surrogate character{_SURROGATE_FIX}"


def _encodable_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def identifier_of(payload: object) -> str | None:
    """The task identifier a typed payload declares, or ``None`` for a plain payload."""
    identifier = getattr(type(payload), "IDENTIFIER", None)
    if identifier is None:
        return None
    return check_task_identifier(identifier, error=InvalidJobSpecError)


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedJob:
    """A job ready to bind: checked identifier, serialised payload and its spec."""

    identifier: str
    payload_json: str
    spec: JobSpec


def prepare_job(identifier: str, payload: object, spec: JobSpec | None) -> PreparedJob:
    """Check and serialise one job; the single place all ``add_job`` variants go through."""
    if spec is not None and not isinstance(spec, JobSpec):
        raise InvalidJobSpecError(
            f"spec must be a JobSpec, not {type(spec).__name__} ({spec!r:.80})"
        )
    identifier = check_task_identifier(identifier, error=InvalidJobSpecError)
    payload_json = payload_to_json(payload)
    if spec is None:
        spec = DEFAULT_SPEC
    if JOB_DECORATORS:
        for decorate in JOB_DECORATORS:
            payload_json = decorate(identifier, payload_json, spec)
    return PreparedJob(identifier=identifier, payload_json=payload_json, spec=spec)
