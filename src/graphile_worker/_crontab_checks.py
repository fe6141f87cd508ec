"""Validation shared by crontab lines, ``CronItem`` and the builder.

Each check raises :class:`~graphile_worker.CrontabError` with a message and no location;
the caller knows the location (a line and column, or a builder call) and adds it. The
patterns are Node graphile-worker's (``cronConstants.js``); the numeric limits are the
jobs table's, so that a value Node would accept only to fail when adding the job fails
here, when the crontab is loaded.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Final

from ._crontab_fields import FieldSpec
from ._crontab_json5 import MAX_DEPTH
from .errors import CrontabError
from .spec import (
    JSON,
    MAX_JOB_KEY_LENGTH,
    MAX_NAME_LENGTH,
    SMALLINT_MAX,
    SMALLINT_MIN,
    JobKeyMode,
)

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
    if not isinstance(value, str):
        raise _fail(f"task identifier must be a str, not {type(value).__name__} ({value!r})")
    if not TASK_IDENTIFIER_PATTERN.fullmatch(value):
        raise _fail(
            f"invalid task identifier {value!r}; in a crontab it starts with a letter or '_' "
            "and has only letters, digits and _ - : /"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise _fail(f"task identifier must be at most {MAX_NAME_LENGTH} characters")
    return value


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
    if not isinstance(value, str):
        raise _fail(f"queue name must be a str, not {type(value).__name__} ({value!r})")
    if not QUEUE_NAME_PATTERN.fullmatch(value):
        raise _fail(
            f"queue name {value!r} may only have letters, digits, '_', '-' and ':' "
            "(the crontab format allows no others)"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise _fail(f"queue name must be at most {MAX_NAME_LENGTH} characters")
    return value


def check_job_key(value: object) -> str:
    if not isinstance(value, str):
        raise _fail(f"job key must be a str, not {type(value).__name__} ({value!r})")
    if not value:
        raise _fail("job key must not be empty")
    if _LINE_BREAKS.intersection(value):
        raise _fail(f"job key {value!r} contains a line break")
    if "\x00" in value:
        raise _fail(f"job key {value!r} contains a NUL character, which PostgreSQL refuses")
    if len(value) > MAX_JOB_KEY_LENGTH:
        raise _fail(f"job key must be at most {MAX_JOB_KEY_LENGTH} characters")
    _check_encodable("job key", value)
    return value


def check_job_key_mode(value: object) -> JobKeyMode:
    try:
        mode = JobKeyMode(value)
    except ValueError:
        mode = None
    if mode not in CRON_JOB_KEY_MODES:
        raise _fail(
            f"job key mode {getattr(value, 'value', value)!r} cannot be used; a cron item "
            "may use 'replace' or 'preserve_run_at'"
        )
    assert mode is not None
    return mode


def _check_smallint(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    if not low <= value <= SMALLINT_MAX:
        raise _fail(f"{name} must be between {low} and {SMALLINT_MAX}, not {value}")
    return value


def check_max_attempts(value: object) -> int:
    # The jobs table checks max_attempts >= 1: Node accepts max=0 and then fails every run.
    return _check_smallint("max attempts", value, 1)


def check_priority(value: object) -> int:
    return _check_smallint("priority", value, SMALLINT_MIN)


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
            _check_encodable(f"{path} key", key)
            _check_json(item, f"{path}[{key!r}]", depth + 1)
    elif isinstance(value, list):
        if depth > MAX_DEPTH:
            raise _fail(f"payload nests deeper than {MAX_DEPTH} levels")
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str):
        _check_encodable(path, value)
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


def _check_encodable(what: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(f"{what} {text!r:.60} contains an unpaired surrogate") from None


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
