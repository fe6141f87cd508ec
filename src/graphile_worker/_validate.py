"""The checks that job options share, wherever they are given.

A job's options reach the database from a :class:`~graphile_worker.JobSpec`, from a crontab
line or :func:`~graphile_worker.cron` builder, from ``reschedule_jobs`` and from the worker's
``forbidden_flags``. Each rule lives here once, so that every way in accepts the same values
and says the same thing about a bad one. The limits are the columns of Node graphile-worker's
schema (migration 000011): ``smallint`` priority and ``max_attempts`` (at least 1), job keys
of 1 to 512 characters, task identifiers and queue names of at most 128.

The checks name the field as the caller's user spells it (``max_attempts`` in a
:class:`~graphile_worker.JobSpec`, ``max attempts`` in a crontab) and take ``error``, the
exception class to raise, so that each caller keeps its own place in the error tree
(:class:`~graphile_worker.InvalidJobSpecError`, :class:`~graphile_worker.CrontabError`).
A check returns the value it accepted, typed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from typing import Final, TypeAlias, TypeVar

from .errors import ConfigurationError

__all__ = [
    "MAX_JOB_KEY_LENGTH",
    "MAX_NAME_LENGTH",
    "SMALLINT_MAX",
    "SMALLINT_MIN",
    "ErrorType",
    "check_aware_datetime",
    "check_encodable",
    "check_flags",
    "check_job_key",
    "check_job_key_mode",
    "check_max_attempts",
    "check_mode_has_key",
    "check_priority",
    "check_queue_name",
    "check_smallint",
    "check_task_identifier",
    "check_text",
]

SMALLINT_MIN: Final = -32768
SMALLINT_MAX: Final = 32767
MAX_JOB_KEY_LENGTH: Final = 512
"""Node migration 000011: ``check (length(key) > 0 and length(key) <= 512)``."""
MAX_NAME_LENGTH: Final = 128
"""Node migration 000011: task identifiers and queue names are at most 128 characters."""

ErrorType: TypeAlias = type[ConfigurationError]
"""What a check raises, made with the message alone (``InvalidJobSpecError(message)``)."""

_Text = TypeVar("_Text", bound=str)


def check_smallint(name: str, value: object, *, low: int = SMALLINT_MIN, error: ErrorType) -> int:
    """``value`` if it is an int from ``low`` to 32767, the range of a ``smallint`` column."""
    # bool is an int subclass; ``max_attempts=True`` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    if not low <= value <= SMALLINT_MAX:
        raise error(f"{name} must be between {low} and {SMALLINT_MAX}, not {value!r}")
    return value


def check_priority(value: object, *, name: str = "priority", error: ErrorType) -> int:
    """A job priority: any ``smallint``, lower numbers running first."""
    return check_smallint(name, value, error=error)


def check_max_attempts(value: object, *, name: str = "max_attempts", error: ErrorType) -> int:
    """A positive ``smallint``: the jobs table checks ``max_attempts >= 1``.

    Node's crontab accepts ``max=0`` and its ``add_job`` sends it, only for the insert to
    fail; refusing it here shows the mistake before any SQL runs.
    """
    return check_smallint(name, value, low=1, error=error)


def check_encodable(name: str, text: str, *, error: ErrorType) -> None:
    """Refuse text with a lone surrogate, which UTF-8 (and so PostgreSQL) cannot hold."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{name} {text!r:.60} contains an unpaired surrogate") from None


def check_text(
    name: str, value: object, *, max_length: int, optional: bool = False, error: ErrorType
) -> str:
    """``value`` if it is a str PostgreSQL can store in a column of at most ``max_length``.

    ``optional`` says the field may be left out, which the message for an empty value then
    suggests instead.
    """
    if not isinstance(value, str):
        raise error(f"{name} must be a str, not {type(value).__name__} ({value!r})")
    if not value:
        hint = f"; to have no {name}, leave it out" if optional else ""
        raise error(f"{name} must not be empty{hint}")
    if len(value) > max_length:
        raise error(f"{name} must be at most {max_length} characters, not {len(value)}")
    if "\x00" in value:
        raise error(f"{name} {value!r:.60} contains a NUL character, which PostgreSQL text refuses")
    check_encodable(name, value, error=error)
    return value


def check_task_identifier(value: object, *, error: ErrorType) -> str:
    """A task identifier: non-empty text of at most 128 characters."""
    return check_text("task identifier", value, max_length=MAX_NAME_LENGTH, error=error)


def check_queue_name(value: object, *, name: str = "queue_name", error: ErrorType) -> str:
    """A queue name: non-empty text of at most 128 characters."""
    return check_text(name, value, max_length=MAX_NAME_LENGTH, optional=True, error=error)


def check_job_key(value: object, *, name: str = "job_key", error: ErrorType) -> str:
    """A job key: 1 to 512 characters."""
    return check_text(name, value, max_length=MAX_JOB_KEY_LENGTH, optional=True, error=error)


def check_job_key_mode(
    value: object, modes: Sequence[_Text], *, name: str = "job_key_mode", error: ErrorType
) -> _Text:
    """The member of ``modes`` (``JobKeyMode`` members) that ``value`` is or spells.

    ``JobKeyMode`` is a str enum, so ``"replace"`` and ``JobKeyMode.REPLACE`` both find
    ``JobKeyMode.REPLACE``. Callers pass the modes they allow: all of them for
    ``add_job``, only ``replace`` and ``preserve_run_at`` in a crontab, as in Node.
    """
    for mode in modes:
        if value == mode:
            return mode
    allowed = ", ".join(repr(_plain(mode)) for mode in modes)
    raise error(f"{name} must be one of {allowed}, not {_plain(value)!r}")


def check_mode_has_key(
    mode: object,
    job_key: object,
    *,
    mode_name: str = "job_key_mode",
    key_name: str = "job_key",
    error: ErrorType,
) -> None:
    """Refuse a job key mode without a job key: the mode would mean nothing."""
    if job_key is None:
        raise error(
            f"{mode_name} {_plain(mode)!r} needs a {key_name}; set the {key_name} or drop the mode"
        )


def check_flags(value: object, *, name: str = "flags", error: ErrorType) -> frozenset[str]:
    """``value``, a collection of flag names, as a frozenset.

    A lone str is refused: it is a collection of one-letter strings, certainly not what
    was meant.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        raise error(f"{name} must be a collection of str (a list or set), not {value!r:.80}")
    for flag in value:
        if not isinstance(flag, str):
            raise error(f"{name} must hold only str, not {type(flag).__name__} ({flag!r:.80})")
        if "\x00" in flag:
            raise error(
                f"{name} holds {flag!r:.80}, which contains a NUL character that PostgreSQL "
                "text refuses"
            )
        check_encodable(f"{name} item", flag, error=error)
    return frozenset(value)


def check_aware_datetime(name: str, value: object, *, error: ErrorType) -> datetime:
    """``value`` if it is a timezone-aware :class:`~datetime.datetime`.

    A naive datetime would be read in the *server's* time zone, which silently shifts jobs
    by hours when client and server disagree.
    """
    if not isinstance(value, datetime):
        raise error(f"{name} must be a datetime, not {type(value).__name__} ({value!r})")
    if value.tzinfo is None or value.utcoffset() is None:
        raise error(
            f"{name} {value!r} is a naive datetime; give it a time zone, for example "
            "datetime.now(timezone.utc)"
        )
    # Python's first and last moments are not times a driver sends as such: asyncpg writes
    # them as -infinity/infinity, which later reads back without a time zone.
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:
        utc = None
    if utc is None or utc.year < 2 or utc >= _LAST_MOMENT:
        raise error(
            f"{name} {value.isoformat()} is out of range; give a time from the year 2 to 9999 (UTC)"
        )
    return value


_LAST_MOMENT = datetime.max.replace(tzinfo=timezone.utc)


def _plain(value: object) -> object:
    """An enum member's value (``'replace'``), anything else as it is, for messages."""
    return getattr(value, "value", value)
