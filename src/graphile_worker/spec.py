"""Value types for adding and reading jobs: :class:`JobSpec`, :class:`JobKeyMode`, :class:`Job`.

Everything here is plain data. A :class:`JobSpec` checks itself when it is built and the
payload is checked when the job is added, so a job that PostgreSQL would reject
(or silently truncate) fails with :class:`~graphile_worker.InvalidJobSpecError` before any
SQL runs. The limits mirror the columns of Node graphile-worker's schema (migration 11 and
later): ``smallint`` priority and ``max_attempts``, job keys of at most 512 characters, task
identifiers and queue names of at most 128.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, runtime_checkable

from ._validate import (
    check_aware_datetime,
    check_flags,
    check_job_key,
    check_job_key_mode,
    check_max_attempts,
    check_mode_has_key,
    check_priority,
    check_queue_name,
)
from .errors import InvalidJobSpecError

__all__ = [
    "JSON",
    "CleanupTask",
    "Job",
    "JobKeyMode",
    "JobKeyModeName",
    "JobSpec",
    "TypedPayload",
]

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
"""A decoded JSON value, as payloads come back from the database."""


class JobKeyMode(str, Enum):
    """What adding a job does when a job with the same ``job_key`` already exists.

    The values are the strings Node graphile-worker's ``add_job`` SQL function accepts.
    """

    REPLACE = "replace"
    """Overwrite the waiting job (payload, run_at, everything); a job that is already
    running is left alone and a new one is queued."""
    PRESERVE_RUN_AT = "preserve_run_at"
    """Like ``REPLACE`` but keep the waiting job's ``run_at`` (debouncing)."""
    UNSAFE_DEDUPE = "unsafe_dedupe"
    """Add nothing if any job with the key exists, even a running or permanently failed one.
    The new information may then never be acted upon; use only when that is acceptable."""


_JOB_KEY_MODES = tuple(JobKeyMode)

JobKeyModeName: TypeAlias = Literal["replace", "preserve_run_at", "unsafe_dedupe"]
"""The plain-string spellings :class:`JobSpec` accepts for ``job_key_mode``."""


class CleanupTask(str, Enum):
    """The maintenance jobs :meth:`~graphile_worker.WorkerUtils.cleanup` can run (Node's names)."""

    GC_TASK_IDENTIFIERS = "GC_TASK_IDENTIFIERS"
    """Forget task identifiers that no job refers to any more."""
    GC_JOB_QUEUES = "GC_JOB_QUEUES"
    """Forget named queues that no job refers to and no worker holds."""
    DELETE_PERMAFAILED_JOBS = "DELETE_PERMAFAILED_JOBS"
    """Delete jobs that used all their attempts and are not locked."""


@runtime_checkable
class TypedPayload(Protocol):
    """A payload that knows which task it is for.

    Any class (usually a dataclass or a pydantic model) with a class attribute
    ``IDENTIFIER`` qualifies, so ``add_job(SendEmail(to="a@b.c"))`` needs no task name::

        @dataclass
        class SendEmail:
            IDENTIFIER: ClassVar[str] = "send_email"
            to: str
    """

    IDENTIFIER: ClassVar[str]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """How and when to run a job; every field is optional (Node's ``TaskSpec``).

    Attributes:
        queue_name: Jobs sharing a queue name run one at a time, in order. Avoid
            high-cardinality names (ids, timestamps): each needs a row and a cleanup.
        run_at: The earliest time the job may run (default: now). Must be timezone-aware.
        max_attempts: How many times the job may be tried before it fails for good
            (default 25).
        job_key: A unique name for the job, so that adding it again updates or
            deduplicates it and ``remove_job`` can find it.
        job_key_mode: What a repeated ``job_key`` does; see :class:`JobKeyMode`. Needs a
            ``job_key``. ``None`` means ``REPLACE`` for ``add_job`` and "whatever the
            batch says" for ``add_jobs``.
        priority: Lower numbers run first (default 0).
        flags: Names a worker can refuse to run (``forbidden_flags``); stored as a JSON
            object with one ``true`` member per flag.
    """

    queue_name: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    job_key_mode: JobKeyMode | JobKeyModeName | None = None
    priority: int | None = None
    flags: Collection[str] | None = None

    def __post_init__(self) -> None:
        error = InvalidJobSpecError
        if self.queue_name is not None:
            check_queue_name(self.queue_name, error=error)
        if self.run_at is not None:
            check_aware_datetime("run_at", self.run_at, error=error)
        if self.max_attempts is not None:
            check_max_attempts(self.max_attempts, error=error)
        if self.priority is not None:
            check_priority(self.priority, error=error)
        if self.job_key is not None:
            check_job_key(self.job_key, error=error)
        if self.job_key_mode is not None:
            mode = check_job_key_mode(self.job_key_mode, _JOB_KEY_MODES, error=error)
            object.__setattr__(self, "job_key_mode", mode)
            check_mode_has_key(mode, self.job_key, error=error)
        if self.flags is not None:
            object.__setattr__(self, "flags", check_flags(self.flags, error=error))


# ---------------------------------------------------------------------------------------- jobs


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One job as stored by graphile-worker (Node's ``Job`` interface, in Python types).

    Rows come from ``_private_jobs`` (what ``add_job`` and friends return) or from the
    ``jobs`` view; the view has no ``payload``, ``task_id``, ``job_queue_id`` or
    ``is_available``, so a job read from it has ``None`` there.

    ``flags`` is the set of flag names (the database keeps ``{"flag": true, ...}`` or
    NULL; both read as a set, empty for NULL). Jobs compare equal field by field and hash
    by ``id``.
    """

    id: int
    task_identifier: str
    queue_name: str | None
    payload: JSON
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    key: str | None
    locked_at: datetime | None
    locked_by: str | None
    revision: int
    flags: frozenset[str]
    task_id: int | None = None
    job_queue_id: int | None = None
    is_available: bool | None = None

    def __hash__(self) -> int:
        return hash(self.id)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Decode a row whose ``json``/``jsonb`` columns the driver already decoded."""
        flags = row.get("flags")
        return cls(
            id=row["id"],
            task_identifier=row["task_identifier"],
            queue_name=row.get("queue_name"),
            payload=row.get("payload"),
            priority=row["priority"],
            run_at=row["run_at"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            last_error=row["last_error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            key=row["key"],
            locked_at=row["locked_at"],
            locked_by=row["locked_by"],
            revision=row["revision"],
            flags=frozenset(flags) if flags else frozenset(),
            task_id=row.get("task_id"),
            job_queue_id=row.get("job_queue_id"),
            is_available=row.get("is_available"),
        )

    @property
    def is_permanently_failed(self) -> bool:
        """Whether every attempt was used, so no worker will run the job again."""
        return self.attempts >= self.max_attempts
