"""Interceptors: the protocols of hooks that change outcomes, and the results they return.

An interceptor answers with an explicit result type, so what happens next is never implied
by a return value of ``None`` or a raised exception: before a job is scheduled
(:class:`Schedule`, :class:`SkipSchedule`, :class:`FailSchedule`), before it runs
(:class:`Run`, :class:`SkipRun`, :class:`FailRun`) and after it ran (an :data:`Outcome`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias, final

from ..spec import JSON, Job, JobSpec

if TYPE_CHECKING:
    from ..context import WorkerContext

__all__ = [
    "RUN",
    "UNCHANGED",
    "AfterJobRun",
    "BeforeJobRun",
    "BeforeJobSchedule",
    "FailRun",
    "FailSchedule",
    "Failed",
    "Outcome",
    "Run",
    "RunDecision",
    "Schedule",
    "ScheduleDecision",
    "ScheduleRequest",
    "SkipRun",
    "SkipSchedule",
    "Succeeded",
]


class _Unchanged(enum.Enum):
    """Type of :data:`UNCHANGED`; an enum so that type checkers can narrow on it."""

    UNCHANGED = "UNCHANGED"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged.UNCHANGED
"""Marks a :class:`Schedule` payload that stays as it was (``None`` is a valid payload)."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """A job about to be added, as ``before_job_schedule`` interceptors see it."""

    __module__ = "graphile_worker.hooks"

    identifier: str
    payload: JSON
    spec: JobSpec


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """Go on scheduling the job, with a new payload and/or spec if given.

    ``Schedule()`` changes nothing. The next interceptor sees the changed request.
    """

    __module__ = "graphile_worker.hooks"

    payload: JSON | _Unchanged = UNCHANGED
    spec: JobSpec | None = None


@final
@dataclasses.dataclass(frozen=True, slots=True)
class SkipSchedule:
    """Do not add the job; adding it quietly does nothing."""

    __module__ = "graphile_worker.hooks"


@final
@dataclasses.dataclass(frozen=True, slots=True)
class FailSchedule:
    """Refuse to add the job: the caller gets a :class:`~graphile_worker.HookError`."""

    __module__ = "graphile_worker.hooks"

    reason: str


ScheduleDecision: TypeAlias = Schedule | SkipSchedule | FailSchedule
"""What a ``before_job_schedule`` interceptor returns."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """Run the job's handler (unless a later interceptor says otherwise)."""

    __module__ = "graphile_worker.hooks"


@final
@dataclasses.dataclass(frozen=True, slots=True)
class SkipRun:
    """Do not call the handler; the job counts as done and leaves the queue."""

    __module__ = "graphile_worker.hooks"


@final
@dataclasses.dataclass(frozen=True, slots=True)
class FailRun:
    """Do not call the handler; the attempt fails with ``reason`` as its ``last_error``.

    The job is retried with the usual back-off, like any failed attempt.
    """

    __module__ = "graphile_worker.hooks"

    reason: str


RunDecision: TypeAlias = Run | SkipRun | FailRun
"""What a ``before_job_run`` interceptor returns."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Succeeded:
    """The job is treated as a success: it is removed from the queue."""

    __module__ = "graphile_worker.hooks"


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """The job is treated as failed with ``error`` (retried with back-off, as usual)."""

    __module__ = "graphile_worker.hooks"

    error: BaseException


Outcome: TypeAlias = Succeeded | Failed
"""How a job ended; ``after_job_run`` interceptors may replace it."""

RUN: Final = Run()
"""The one :class:`Run`, returned when every interceptor lets a job run."""


# ---------------------------------------------------------------------- interceptor protocols


class BeforeJobSchedule(Protocol):
    """Called before a job is added; may change its payload or spec, skip it or refuse it."""

    def __call__(
        self, request: ScheduleRequest, /
    ) -> ScheduleDecision | Awaitable[ScheduleDecision]: ...


class BeforeJobRun(Protocol):
    """Called after a job is claimed, before its handler; may let it run, skip it or fail it."""

    def __call__(self, job: Job, ctx: WorkerContext, /) -> RunDecision | Awaitable[RunDecision]: ...


class AfterJobRun(Protocol):
    """Called after a job's handler returned or raised; returns the outcome that counts."""

    def __call__(
        self, job: Job, ctx: WorkerContext, outcome: Outcome, /
    ) -> Outcome | Awaitable[Outcome]: ...


# mypy counts a class attribute in a Protocol body as a member, so these are set afterwards.
for _protocol in (BeforeJobSchedule, BeforeJobRun, AfterJobRun):
    _protocol.__module__ = "graphile_worker.hooks"
