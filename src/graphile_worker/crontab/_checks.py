"""Validation shared by crontab lines, ``CronItem`` and the builder.

Each check raises :class:`~graphile_worker.CrontabError` with a message and no location;
the caller knows the location (a line and column, or a builder call) and adds it. The
rules every job option follows, wherever it is given (ranges, lengths, NUL characters),
are :mod:`graphile_worker._validate`'s; this module adds what the crontab grammar alone
restricts, with Node graphile-worker's patterns (``cronConstants.js``), so that a value
Node would accept only to fail when adding the job fails here, when the crontab is loaded.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Final

from .. import _validate
from ..errors import CrontabError
from ..spec import JSON, JobKeyMode
from ._fields import FieldSpec
from ._json5 import MAX_DEPTH

__all__ = [
    "CRON_JOB_KEY_MODES",
    "IDENTIFIER_PATTERN",
    "QUEUE_NAME_PATTERN",
    "TASK_IDENTIFIER_PATTERN",
    "check_backfill_period",
    "check_identifier",
    "check_job_key",
    "check_job_key_mode",
    "check_max_attempts",
    "check_mode_has_key",
    "check_payload",
    "check_priority",
    "check_queue_name",
    "check_task_identifier",
    "check_values",
]

# Node's cronConstants.js: what a crontab line may spell.
TASK_IDENTIFIER_PATTERN: Final = re.compile(r"[_a-zA-Z][_a-zA-Z0-9:/_-]*")
IDENTIFIER_PATTERN: Final = re.compile(r"[_a-zA-Z][-_a-zA-Z0-9]*")
QUEUE_NAME_PATTERN: Final = re.compile(r"[-a-zA-Z0-9_:]+")
_LINE_BREAKS: Final = frozenset("\n\r\u2028\u2029")
CRON_JOB_KEY_MODES: Final = (JobKeyMode.REPLACE, JobKeyMode.PRESERVE_RUN_AT)
"""Node's crontab grammar allows only these two (``jobKeyMode=replace|preserve_run_at``)."""


def _fail(message: str) -> CrontabError:
    return CrontabError(message)


def check_task_identifier(value: object) -> str:
    identifier = _validate.check_task_identifier(value, error=CrontabError)
    if not TASK_IDENTIFIER_PATTERN.fullmatch(identifier):
        raise _fail(
            f"invalid task identifier {identifier!r}; in a crontab it starts with a letter or "
            "'_' and has only letters, digits and _ - : /"
        )
    return identifier


def check_identifier(value: object, task_identifier: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"cron identifier must be a str, not {type(value).__name__} ({value!r})")
    if value != task_identifier and not IDENTIFIER_PATTERN.fullmatch(value):
        raise _fail(
            f"invalid cron identifier {value!r}; it starts with a letter or '_' and has only "
            "letters, digits, '_' and '-'"
        )
    return value


def check_queue_name(value: object) -> str:
    name = _validate.check_queue_name(value, name="queue name", error=CrontabError)
    if not QUEUE_NAME_PATTERN.fullmatch(name):
        raise _fail(
            f"queue name {name!r} may only have letters, digits, '_', '-' and ':' "
            "(the crontab format allows no others)"
        )
    return name


def check_job_key(value: object) -> str:
    key = _validate.check_job_key(value, name="job key", error=CrontabError)
    # Node reads jobKey with /^(.*)$/, whose dot stops at line terminators.
    if _LINE_BREAKS.intersection(key):
        raise _fail(f"job key {key!r} contains a line break")
    return key


def check_job_key_mode(value: object) -> JobKeyMode:
    return _validate.check_job_key_mode(
        value, CRON_JOB_KEY_MODES, name="job key mode", error=CrontabError
    )


def check_mode_has_key(mode: object, job_key: object) -> None:
    _validate.check_mode_has_key(
        mode, job_key, mode_name="job key mode", key_name="job key", error=CrontabError
    )


def check_max_attempts(value: object) -> int:
    return _validate.check_max_attempts(value, name="max attempts", error=CrontabError)


def check_priority(value: object) -> int:
    return _validate.check_priority(value, error=CrontabError)


def check_backfill_period(value: object) -> timedelta:
    if not isinstance(value, timedelta):
        raise _fail(f"fill must be a timedelta, not {type(value).__name__} ({value!r})")
    if value < timedelta(0):
        raise _fail(f"fill must not be negative, not {value}")
    if value.microseconds:
        raise _fail(f"fill must be a whole number of seconds, not {value}")
    return value


def check_payload(value: object) -> dict[str, JSON] | None:
    """``None`` or a JSON object that PostgreSQL can store and Node can read back."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(f"cron payload must be a JSON object (a dict), not {type(value).__name__}")
    _check_json(value, "payload", 1)
    return value


def _check_json(value: object, path: str, depth: int) -> None:
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            raise _fail(f"payload nests deeper than {MAX_DEPTH} levels")
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(f"{path} has a key that is not a str: {key!r}")
            _validate.check_encodable(f"{path} key", key, error=CrontabError)
            _check_json(item, f"{path}[{key!r}]", depth + 1)
    elif isinstance(value, list):
        if depth > MAX_DEPTH:
            raise _fail(f"payload nests deeper than {MAX_DEPTH} levels")
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str):
        _validate.check_encodable(path, value, error=CrontabError)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(f"{path} is {value}, which JSON cannot hold")
    elif isinstance(value, int):
        if abs(value).bit_length() > 13_000:
            raise _fail(f"{path} is an integer too large to write as JSON")
    elif value is not None:
        raise _fail(
            f"{path} is a {type(value).__name__}, which is not JSON; use dict, list, str, "
            "int, float, bool or None"
        )


def check_values(spec: FieldSpec, values: object) -> frozenset[int]:
    if isinstance(values, (str, bytes)) or not isinstance(
        values, (set, frozenset, list, tuple, range)
    ):
        raise _fail(f"{spec.plural} must be a set of ints, not {values!r:.60}")
    normalised: set[int] = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(f"{spec.plural} must be ints, not {value!r}")
        if not spec.low <= value <= spec.top:
            raise _fail(f"{spec.name} {value} is out of range ({spec.described_range})")
        normalised.add(spec.normalise(value))
    if not normalised:
        raise _fail(f"{spec.plural} must not be empty")
    return frozenset(normalised)
