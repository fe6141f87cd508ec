"""Every value a request brings, checked and turned into what the queue API takes.

Pure functions over the query string or form fields: nothing here touches the database or
the request object, so a bad value is always a :class:`FormError` with a message naming
the field and the accepted forms, which the page shows with status 400. The rules for
names, keys and numbers are the library's own (:mod:`graphile_worker._validate`), so the
admin accepts exactly what ``add_job`` and ``list_jobs`` accept.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal, Protocol, TypeAlias

from .._json import loads
from .._validate import (
    check_flags,
    check_job_key,
    check_queue_name,
    check_task_identifier,
)
from ..errors import ConfigurationError
from ..inspection import JobState
from ..spec import JobKeyMode, JobSpec

__all__ = [
    "ACTIONS",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Action",
    "FormError",
    "JobFilters",
    "NewJob",
    "Values",
    "flash_message",
    "job_id",
    "one",
    "parse_add",
    "parse_filters",
    "parse_moment",
    "parse_page",
    "parse_time_bound",
    "positive_int",
]

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
_BIGINT_MAX: Final = 2**63 - 1
_MAX_AGE: Final = timedelta(days=36_525)
"""The longest duration accepted (a century): longer ones overflow PostgreSQL intervals."""

Action: TypeAlias = Literal["retry", "cancel", "delete"]
ACTIONS: Final[tuple[Action, ...]] = ("retry", "cancel", "delete")

_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_DURATION = re.compile(r"([0-9]{1,9})\s*([smhdw])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class FormError(ConfigurationError):
    """A query or form value that cannot be used; the message names the field and the fix."""


class Values(Protocol):
    """The query string or the form fields: Starlette's ``QueryParams`` and ``FormData``."""

    def getlist(self, key: Any, /) -> Sequence[object]: ...


def _texts(values: Values, name: str) -> list[str]:
    """Every non-empty value of ``name`` (browsers send empty inputs as ``name=``)."""
    found = []
    for value in values.getlist(name):
        if not isinstance(value, str):
            raise FormError(f"{name} must be text, not a file upload")
        if "\x00" in value:
            raise FormError(f"{name} contains a NUL character, which PostgreSQL text refuses")
        if value.strip():
            found.append(value)
    return found


def one(values: Values, name: str) -> str | None:
    """The value of a field that may be given at most once, or ``None`` if it is blank."""
    found = _texts(values, name)
    if len(found) > 1:
        raise FormError(f"{name} was given {len(found)} times; give it once")
    return found[0] if found else None


def positive_int(name: str, text: str, *, high: int = _BIGINT_MAX, low: int = 1) -> int:
    """A whole number from ``low`` to ``high``, written in plain ASCII digits."""
    stripped = text.strip()
    if not _INTEGER.fullmatch(stripped):
        raise FormError(f"{name} must be a whole number, not {text!r:.40}")
    number = int(stripped)
    if not low <= number <= high:
        raise FormError(f"{name} must be between {low} and {high}, not {number}")
    return number


def job_id(text: str) -> int | None:
    """The job id in a path segment, or ``None`` when it cannot be one (a 404, not a 400)."""
    if not _INTEGER.fullmatch(text) or text.startswith(("+", "-")):
        return None
    number = int(text)
    return number if 1 <= number <= _BIGINT_MAX else None


def parse_moment(name: str, text: str) -> datetime:
    """An ISO 8601 time (``2026-01-31T09:30:00Z``, or a form's ``datetime-local`` value).

    Without an offset it is taken as UTC, the time zone every page shows.
    """
    stripped = text.strip()
    try:
        moment = datetime.fromisoformat(stripped.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise FormError(
            f"{name} {text!r:.60} is not an ISO 8601 time; write for example "
            "2026-01-31T09:30:00Z (a time without an offset is taken as UTC)"
        ) from None
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=timezone.utc)
    # PostgreSQL cannot hold a time that overflows once in UTC, and asyncpg sends Python's
    # first and last instants as -infinity/infinity, which no page could read back.
    try:
        in_range = _EARLIEST <= moment.astimezone(timezone.utc) < _LATEST
    except OverflowError:
        in_range = False
    if not in_range:
        raise _OutOfRange(
            f"{name} {text!r:.60} is out of range; give a time from the year 2 to 9999 (UTC)"
        )
    return moment


class _OutOfRange(FormError):
    """A well-formed time the database cannot take: its own message, not "not a time"."""


_EARLIEST: Final = datetime(2, 1, 1, tzinfo=timezone.utc)
_LATEST: Final = datetime(9999, 12, 31, tzinfo=timezone.utc)


def _duration(text: str) -> timedelta | None:
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not parts or "".join(number + unit for number, unit in parts) != compact:
        return None
    return timedelta(seconds=sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts))


def parse_time_bound(name: str, text: str) -> datetime | timedelta:
    """``older_than``/``newer_than``: an age (``10m``, ``2h``, ``3d``, ``1h30m``) or a moment."""
    age = _duration(text)
    if age is not None:
        if age > _MAX_AGE:
            raise FormError(f"{name} {text!r:.40} is too long; give at most 36525d (a century)")
        return age
    try:
        return parse_moment(name, text)
    except _OutOfRange:
        raise
    except FormError:
        raise FormError(
            f"{name} {text!r:.60} is neither a duration (10m, 2h, 3d, 1h30m) nor an ISO 8601 "
            "time (2026-01-31T09:30:00Z)"
        ) from None


def parse_page(values: Values) -> tuple[int, int | None]:
    """``limit`` (default 50, at most 500) and ``after`` (a job id) of the jobs page."""
    limit_text = one(values, "limit")
    after_text = one(values, "after")
    limit = DEFAULT_LIMIT if limit_text is None else positive_int("limit", limit_text, high=500)
    after = None if after_text is None else positive_int("after", after_text)
    return limit, after


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobFilters:
    """The filters of the jobs page, checked; the same fields select a bulk action's jobs."""

    states: tuple[JobState, ...] = ()
    task: str | None = None
    queue: str | None = None
    key: str | None = None
    flags: tuple[str, ...] = ()
    older_than: str | None = None
    newer_than: str | None = None
    older_bound: datetime | timedelta | None = None
    newer_bound: datetime | timedelta | None = None

    @property
    def empty(self) -> bool:
        """Whether no filter is set, so every job matches."""
        return self.query() == []

    def query(self) -> list[tuple[str, str]]:
        """The filters as query parameters, in a fixed order: for links and hidden fields."""
        pairs = [("state", state.value) for state in self.states]
        for name in ("task", "queue", "key"):
            value = getattr(self, name)
            if value is not None:
                pairs.append((name, value))
        pairs += [("flag", flag) for flag in self.flags]
        if self.older_than is not None:
            pairs.append(("older_than", self.older_than))
        if self.newer_than is not None:
            pairs.append(("newer_than", self.newer_than))
        return pairs

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``list_jobs`` and ``job_ids``."""
        return {
            "state": self.states or None,
            "task": self.task,
            "queue": self.queue,
            "key": self.key,
            "flags": self.flags or None,
            "older_than": self.older_bound,
            "newer_than": self.newer_bound,
        }

    def describe(self) -> str:
        """The filters in words, for confirmation pages: ``state failed, task send_email``."""
        if self.empty:
            return "no filter (every job)"
        words = []
        if self.states:
            words.append("state " + " or ".join(state.value for state in self.states))
        for name, value in (("task", self.task), ("queue", self.queue), ("key", self.key)):
            if value is not None:
                words.append(f"{name} {value}")
        if self.flags:
            words.append("flags " + ", ".join(self.flags))
        if self.older_than is not None:
            words.append(f"created before {self._when(self.older_than, 'ago')}")
        if self.newer_than is not None:
            words.append(f"created after {self._when(self.newer_than, 'ago')}")
        return ", ".join(words)

    @staticmethod
    def _when(text: str, suffix: str) -> str:
        return f"{text.strip()} {suffix}" if _duration(text) is not None else text.strip()


def parse_filters(values: Values) -> JobFilters:
    """The job filters in a query string or form.

    Raises:
        FormError: a value is not a state, a name is too long, a time cannot be read, or a
            single-valued field is repeated.
    """
    known = {state.value: state for state in JobState}
    states: list[JobState] = []
    for text in _texts(values, "state"):
        state = known.get(text.strip().lower())
        if state is None:
            allowed = ", ".join(known)
            raise FormError(f"state {text!r:.40} is not a job state; choose from {allowed}")
        if state not in states:
            states.append(state)
    task = one(values, "task")
    queue = one(values, "queue")
    key = one(values, "key")
    older_than = one(values, "older_than")
    newer_than = one(values, "newer_than")
    flags = tuple(dict.fromkeys(_texts(values, "flag")))
    if task is not None:
        check_task_identifier(task, error=FormError)
    if queue is not None:
        check_queue_name(queue, name="queue", error=FormError)
    if key is not None:
        check_job_key(key, name="key", error=FormError)
    check_flags(flags, name="flag", error=FormError)
    return JobFilters(
        states=tuple(sorted(states, key=list(JobState).index)),
        task=task,
        queue=queue,
        key=key,
        flags=flags,
        older_than=older_than,
        newer_than=newer_than,
        older_bound=None if older_than is None else parse_time_bound("older_than", older_than),
        newer_bound=None if newer_than is None else parse_time_bound("newer_than", newer_than),
    )


_FLASH_VERBS: Final = {
    "retry": "Retried",
    "cancel": "Cancelled",
    "delete": "Deleted",
}


def flash_message(values: Values) -> str | None:
    """The message a redirect after a change asked for (``done=retry&changed=3&skipped=1``).

    Only codes and counts travel in the URL, never text, so a crafted link cannot make the
    admin display words of someone else's choosing.
    """
    done = one(values, "done")
    if done is None:
        return None
    changed_text = one(values, "changed") or "0"
    skipped_text = one(values, "skipped") or "0"
    changed = positive_int("changed", changed_text, low=0)
    skipped = positive_int("skipped", skipped_text, low=0)
    if done in _FLASH_VERBS:
        verb = _FLASH_VERBS[done]
        if changed or not skipped:
            message = f"{verb} {changed} job(s)."
        else:
            message = f"Nothing was {verb.lower()}."
        if skipped:
            message += (
                f" Skipped {skipped} job(s): locked by a worker, or already gone. Jobs a "
                "worker holds are never changed; wait for it, or force-unlock a dead worker."
            )
        return message
    if done == "add":
        return "Job added."
    if done == "unlock":
        queues = positive_int("queues", one(values, "queues") or "0", low=0)
        return f"Released {changed} job(s) and {queues} queue(s)."
    raise FormError(f"done {done!r:.40} is not a known result; choose from retry, cancel, delete")


ADD_FIELDS: Final[tuple[str, ...]] = (
    "task",
    "payload",
    "queue",
    "run_at",
    "max_attempts",
    "priority",
    "job_key",
    "job_key_mode",
    "flags",
)
"""The fields of the add-job form, named as ``JobSpec`` names them where it does."""


@dataclasses.dataclass(frozen=True, slots=True)
class NewJob:
    """A checked add-job form: what ``add_job(task, payload, spec=spec)`` takes."""

    task: str
    payload: object
    spec: JobSpec


def _payload(text: str | None) -> object:
    if text is None:
        return {}
    try:
        return loads(text)
    except ValueError as error:
        raise FormError(f"payload is not valid JSON: {error}") from None


def parse_add(values: Values) -> NewJob:
    """The add-job form, checked as ``add_job`` would check it.

    Raises:
        FormError: a field is missing, malformed or out of range.
        InvalidJobSpecError: the options do not fit together (a mode without a key).
    """
    task = one(values, "task")
    if task is None:
        raise FormError("task is required: the identifier of the task that runs the job")
    check_task_identifier(task, error=FormError)
    payload = _payload(one(values, "payload"))
    queue = one(values, "queue")
    job_key = one(values, "job_key")
    # Checked here too, so that messages name the form's fields rather than JobSpec's.
    if queue is not None:
        check_queue_name(queue, name="queue", error=FormError)
    if job_key is not None:
        check_job_key(job_key, name="job_key", error=FormError)
    run_at_text = one(values, "run_at")
    attempts_text = one(values, "max_attempts")
    priority_text = one(values, "priority")
    mode_text = one(values, "job_key_mode")
    flags_text = one(values, "flags")
    modes = {mode.value: mode for mode in JobKeyMode}
    if mode_text is not None and mode_text.strip() not in modes:
        raise FormError(
            f"job_key_mode {mode_text!r:.40} is not a mode; choose from {', '.join(modes)}"
        )
    flags = [] if flags_text is None else [flag.strip() for flag in flags_text.split(",")]
    spec = JobSpec(
        queue_name=queue,
        run_at=None if run_at_text is None else parse_moment("run_at", run_at_text),
        max_attempts=(
            None
            if attempts_text is None
            else positive_int("max_attempts", attempts_text, high=32767)
        ),
        priority=(
            None
            if priority_text is None
            else positive_int("priority", priority_text, low=-32768, high=32767)
        ),
        job_key=job_key,
        job_key_mode=None if mode_text is None else modes[mode_text.strip()],
        flags=[flag for flag in flags if flag] or None,
    )
    return NewJob(task, payload, spec)
