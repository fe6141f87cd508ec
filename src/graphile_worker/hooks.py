"""Hooks: observers that watch the worker, interceptors that change what it does, and plugins.

Two kinds of hook, deliberately kept apart because they fail differently:

* An :class:`Observer` is told about lifecycle events (:data:`Event`) and cannot change
  anything. An observer that raises is logged and ignored: metrics or tracing code must
  never stop a worker.
* An interceptor returns an explicit result type that says what happens next: before a job
  is scheduled (:class:`Schedule`, :class:`SkipSchedule`, :class:`FailSchedule`), before a
  job runs (:class:`Run`, :class:`SkipRun`, :class:`FailRun`) and after it ran (an
  :data:`Outcome`). Because interceptors decide outcomes, one that refuses or raises fails
  that job with a :class:`~graphile_worker.HookError`.

A :class:`Plugin` bundles observers and interceptors under one name. :class:`Hooks` is what
the worker holds: it flattens plugins in registration order, works out once which observer
overrides which event, and is falsy when there is nothing to call, so the worker's hot path
costs one truth test when no hooks are installed (trio's ``Instrument`` dispatch is the model).

Hooks may be plain ``def`` or ``async def``; both run on the event loop, in order, one after
the other. Keep them quick: hand slow work to a queue or a background task of your own.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias, TypeVar, final

from .errors import ConfigurationError, HookError
from .spec import JSON, Job, JobSpec

if TYPE_CHECKING:
    from .context import WorkerContext

__all__ = [
    "UNCHANGED",
    "AfterJobRun",
    "BeforeJobRun",
    "BeforeJobSchedule",
    "CronScheduled",
    "CronTick",
    "Event",
    "FailRun",
    "FailSchedule",
    "Failed",
    "Hooks",
    "JobComplete",
    "JobFail",
    "JobFetch",
    "JobInterrupted",
    "JobPermanentlyFail",
    "JobStart",
    "Observer",
    "ObserverResult",
    "Outcome",
    "Plugin",
    "Run",
    "RunDecision",
    "Schedule",
    "ScheduleDecision",
    "ScheduleRequest",
    "SkipRun",
    "SkipSchedule",
    "Succeeded",
    "WorkerInit",
    "WorkerShutdown",
    "WorkerStart",
]

_default_logger: Final = logging.getLogger("graphile_worker.hooks")

_T = TypeVar("_T")

# ------------------------------------------------------------------------------------- events


@final
@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInit:
    """A worker was built and is about to connect; nothing has touched the database yet."""

    worker_id: str


@final
@dataclasses.dataclass(frozen=True, slots=True)
class WorkerStart:
    """A worker is connected and migrated, and is about to look for jobs."""

    worker_id: str


@final
@dataclasses.dataclass(frozen=True, slots=True)
class WorkerShutdown:
    """A worker stopped claiming jobs and is shutting down.

    Attributes:
        reason: Why, in words meant for logs (a signal, ``stop()``, an error).
    """

    worker_id: str
    reason: str


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobFetch:
    """A worker claimed (locked) a job; it may still be skipped by a ``before_job_run`` hook."""

    worker_id: str
    job: Job


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobStart:
    """A job's handler is about to be called (every ``before_job_run`` hook said :class:`Run`)."""

    worker_id: str
    job: Job


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobComplete:
    """A job succeeded and was removed from the queue.

    Attributes:
        duration: Seconds the handler took.
    """

    worker_id: str
    job: Job
    duration: float


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobFail:
    """An attempt at a job failed; its ``last_error`` and back-off were recorded.

    Attributes:
        error: Why it failed (the handler's exception, a decoding or hook error).
        next_run_at: When the job may run again, or ``None`` when it will not be retried
            (a :class:`JobPermanentlyFail` then follows).
    """

    worker_id: str
    job: Job
    error: BaseException
    next_run_at: datetime | None


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobPermanentlyFail:
    """A job used its last attempt; it stays in the table, failed, until someone acts on it."""

    worker_id: str
    job: Job
    error: BaseException


@final
@dataclasses.dataclass(frozen=True, slots=True)
class JobInterrupted:
    """A running job was cancelled by shutdown and released without spending an attempt.

    Attributes:
        retry_at: When the job becomes runnable again.
    """

    worker_id: str
    job: Job
    retry_at: datetime


@final
@dataclasses.dataclass(frozen=True, slots=True)
class CronTick:
    """The cron scheduler reached a minute (UTC) and is about to schedule what is due in it.

    Sent once for every minute while the worker runs, whether or not anything is due,
    including minutes caught up after a late wake-up (a busy event loop, a suspended
    machine, a clock set forward); backfilled minutes are reported by
    :class:`CronScheduled` alone.

    Attributes:
        timestamp: The minute, seconds zero.
        due: Identifiers of the cron items whose schedule matches it.
    """

    worker_id: str
    timestamp: datetime
    due: tuple[str, ...]


@final
@dataclasses.dataclass(frozen=True, slots=True)
class CronScheduled:
    """The cron scheduler offered the jobs due in one minute to the database.

    Every worker running the same crontab offers each minute; the database lets exactly
    one add each job, so across a fleet each identifier appears in ``scheduled`` once per
    minute and in the others' ``already_scheduled``.

    Attributes:
        timestamp: The minute the jobs are for (their ``run_at``).
        backfilled: Whether this is a start-up backfill of a minute missed while no worker
            ran (within the items' ``fill``).
        scheduled: Job id by cron identifier, for the jobs this worker added.
        already_scheduled: Identifiers whose job for this minute was added before, by
            another worker or an earlier run.
    """

    worker_id: str
    timestamp: datetime
    backfilled: bool
    scheduled: Mapping[str, int]
    already_scheduled: tuple[str, ...]


Event: TypeAlias = (
    WorkerInit
    | WorkerStart
    | WorkerShutdown
    | JobFetch
    | JobStart
    | JobComplete
    | JobFail
    | JobPermanentlyFail
    | JobInterrupted
    | CronTick
    | CronScheduled
)
"""Every event an :class:`Observer` can be told about."""

ObserverResult: TypeAlias = "Awaitable[None] | None"
"""What an observer method returns: nothing, or an awaitable (``async def`` overrides)."""


# ---------------------------------------------------------------------------------- observers


class Observer:
    """Base class for observers: override the events you care about, as ``def`` or ``async def``.

    Every method is a no-op here. :class:`Hooks` only dispatches to methods a subclass
    overrides, so an observer that watches one event costs nothing on the others. An
    exception from an observer is logged (on the worker's logger, ``graphile_worker.worker``
    unless ``WorkerOptions.logger`` names another) and otherwise ignored; cancellation is
    never swallowed.

    One observer instance sees every job, and with ``concurrency`` above 1 the events of
    different jobs interleave, so keep per-job state keyed by ``event.job.id``.
    """

    def on_worker_init(self, event: WorkerInit) -> ObserverResult:
        """Called once when the worker starts up, before it connects."""
        return None

    def on_worker_start(self, event: WorkerStart) -> ObserverResult:
        """Called once when the worker is ready and starts looking for jobs."""
        return None

    def on_worker_shutdown(self, event: WorkerShutdown) -> ObserverResult:
        """Called once when the worker begins to shut down."""
        return None

    def on_job_fetch(self, event: JobFetch) -> ObserverResult:
        """Called for every job the worker claims."""
        return None

    def on_job_start(self, event: JobStart) -> ObserverResult:
        """Called just before a job's handler runs."""
        return None

    def on_job_complete(self, event: JobComplete) -> ObserverResult:
        """Called after a job succeeded."""
        return None

    def on_job_fail(self, event: JobFail) -> ObserverResult:
        """Called after every failed attempt."""
        return None

    def on_job_permanently_fail(self, event: JobPermanentlyFail) -> ObserverResult:
        """Called when a job failed its last attempt."""
        return None

    def on_job_interrupted(self, event: JobInterrupted) -> ObserverResult:
        """Called when shutdown cancelled a running job and released it."""
        return None

    def on_cron_tick(self, event: CronTick) -> ObserverResult:
        """Called for every minute the cron scheduler reaches."""
        return None

    def on_cron_scheduled(self, event: CronScheduled) -> ObserverResult:
        """Called after the cron scheduler offered a minute's jobs to the database."""
        return None


_EVENT_METHODS: Final[dict[type[Event], str]] = {
    WorkerInit: "on_worker_init",
    WorkerStart: "on_worker_start",
    WorkerShutdown: "on_worker_shutdown",
    JobFetch: "on_job_fetch",
    JobStart: "on_job_start",
    JobComplete: "on_job_complete",
    JobFail: "on_job_fail",
    JobPermanentlyFail: "on_job_permanently_fail",
    JobInterrupted: "on_job_interrupted",
    CronTick: "on_cron_tick",
    CronScheduled: "on_cron_scheduled",
}
"""Which :class:`Observer` method each event type is routed to."""


# --------------------------------------------------------------------------- interceptor results


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

    identifier: str
    payload: JSON
    spec: JobSpec


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """Go on scheduling the job, with a new payload and/or spec if given.

    ``Schedule()`` changes nothing. The next interceptor sees the changed request.
    """

    payload: JSON | _Unchanged = UNCHANGED
    spec: JobSpec | None = None


@final
@dataclasses.dataclass(frozen=True, slots=True)
class SkipSchedule:
    """Do not add the job; adding it quietly does nothing."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class FailSchedule:
    """Refuse to add the job: the caller gets a :class:`~graphile_worker.HookError`."""

    reason: str


ScheduleDecision: TypeAlias = Schedule | SkipSchedule | FailSchedule
"""What a ``before_job_schedule`` interceptor returns."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """Run the job's handler (unless a later interceptor says otherwise)."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class SkipRun:
    """Do not call the handler; the job counts as done and leaves the queue."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class FailRun:
    """Do not call the handler; the attempt fails with ``reason`` as its ``last_error``.

    The job is retried with the usual back-off, like any failed attempt.
    """

    reason: str


RunDecision: TypeAlias = Run | SkipRun | FailRun
"""What a ``before_job_run`` interceptor returns."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Succeeded:
    """The job is treated as a success: it is removed from the queue."""


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """The job is treated as failed with ``error`` (retried with back-off, as usual)."""

    error: BaseException


Outcome: TypeAlias = Succeeded | Failed
"""How a job ended; ``after_job_run`` interceptors may replace it."""

_RUN: Final = Run()


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


# ------------------------------------------------------------------------------------ plugins


class Plugin:
    """A named bundle of observers and interceptors, registered together.

    Build one directly::

        Plugin("audit", observers=[AuditObserver()], before_job_run=[check_quota])

    or subclass it, naming the plugin with a class attribute and passing bound methods to
    ``super().__init__()``. A subclass that also inherits :class:`Observer` observes
    events itself (before the observers it lists)::

        class Quota(Plugin, Observer):
            name = "quota"

            def __init__(self, limit: int) -> None:
                super().__init__(before_job_run=[self.check])
                self.limit = limit

            def check(self, job: Job, ctx: WorkerContext) -> RunDecision: ...

            def on_job_complete(self, event: JobComplete) -> None: ...

    The name appears in log lines and in the ``last_error`` of jobs the plugin fails.
    """

    name: str
    observers: tuple[Observer, ...]
    before_job_schedule: tuple[BeforeJobSchedule, ...]
    before_job_run: tuple[BeforeJobRun, ...]
    after_job_run: tuple[AfterJobRun, ...]

    def __init__(
        self,
        name: str | None = None,
        *,
        observers: Iterable[Observer] = (),
        before_job_schedule: Iterable[BeforeJobSchedule] = (),
        before_job_run: Iterable[BeforeJobRun] = (),
        after_job_run: Iterable[AfterJobRun] = (),
    ) -> None:
        if name is None:
            name = getattr(type(self), "name", None)
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                f"a Plugin needs a non-empty name (Plugin('my_plugin', ...) or a class "
                f"attribute name = 'my_plugin' on {_callable_name(type(self))}), not {name!r}"
            )
        self.name = name
        self.observers = tuple(_check_observer(name, observer) for observer in observers)
        self.before_job_schedule = _check_interceptors(
            name, "before_job_schedule", before_job_schedule
        )
        self.before_job_run = _check_interceptors(name, "before_job_run", before_job_run)
        self.after_job_run = _check_interceptors(name, "after_job_run", after_job_run)

    def __repr__(self) -> str:
        return f"<{_callable_name(type(self))} {self.name!r}>"


def _check_observer(plugin: str, observer: object) -> Observer:
    if isinstance(observer, Observer):
        return observer
    if isinstance(observer, type) and issubclass(observer, Observer):
        raise ConfigurationError(
            f"plugin {plugin!r} lists the class {_callable_name(observer)} as an observer; "
            f"pass an instance, {_callable_name(observer)}()"
        )
    raise ConfigurationError(
        f"plugin {plugin!r}: observers must be Observer instances (subclass "
        f"graphile_worker.hooks.Observer), not {observer!r:.80}"
    )


def _check_interceptors(plugin: str, stage: str, items: Iterable[_T]) -> tuple[_T, ...]:
    checked = tuple(items)
    for item in checked:
        if not callable(item):
            raise ConfigurationError(
                f"plugin {plugin!r}: every {stage} interceptor must be callable, not {item!r:.80}"
            )
    return checked


def _callable_name(function: object) -> str:
    """A readable name for a hook in logs and errors: ``Class.method`` or ``function``."""
    if isinstance(function, functools.partial):
        return _callable_name(function.func)
    name = getattr(function, "__qualname__", None)
    if not isinstance(name, str):
        name = type(function).__qualname__  # a callable object: name its class
    # Hooks defined inside a function would otherwise read "setup.<locals>.check".
    return name.rpartition("<locals>.")[2]


# -------------------------------------------------------------------------------------- hooks

_Handler: TypeAlias = "tuple[str, Callable[..., object]]"
"""A label naming the hook, and the bound observer method or interceptor to call."""


@final
class Hooks:
    """Every hook the worker calls, flattened from plugins and observers in registration order.

    Built once per worker. All the sorting happens here, so each call only walks the hooks
    that apply: observers are grouped by the events they override, and a ``Hooks`` with
    nothing to call is falsy so the worker can skip it outright. Its methods are still
    correct (and cheap) when it is empty.

    Args:
        items: :class:`Plugin` and bare :class:`Observer` instances.
        logger: Where observer errors and skips are logged (default
            ``graphile_worker.hooks``).

    Raises:
        ConfigurationError: an item is neither, or two plugins share a name.
    """

    __slots__ = (
        "_after_job_run",
        "_before_job_run",
        "_before_job_schedule",
        "_empty",
        "_logger",
        "_observers",
        "_plugin_names",
    )

    def __init__(
        self, items: Iterable[Plugin | Observer] = (), *, logger: logging.Logger | None = None
    ) -> None:
        if isinstance(items, (Plugin, Observer)):
            raise ConfigurationError(
                f"hooks must be a list of plugins and observers, not a single "
                f"{_callable_name(type(items))}; wrap it: [{items!r:.60}]"
            )
        self._logger = logger if logger is not None else _default_logger
        observers: dict[type[Event], list[_Handler]] = {}
        before_schedule: list[_Handler] = []
        before_run: list[_Handler] = []
        after_run: list[_Handler] = []
        plugin_names: list[str] = []
        for item in items:
            if isinstance(item, Plugin):
                if item.name in plugin_names:
                    raise ConfigurationError(
                        f"two plugins are named {item.name!r}; register each plugin once "
                        "and give distinct plugins distinct names"
                    )
                plugin_names.append(item.name)
                own = (item,) if isinstance(item, Observer) else ()
                for observer in (*own, *item.observers):
                    label = f"{item.name}/{_callable_name(type(observer))}"
                    _add_observer(observers, label, observer)
                before_schedule.extend(_labelled(item.name, item.before_job_schedule))
                before_run.extend(_labelled(item.name, item.before_job_run))
                after_run.extend(_labelled(item.name, item.after_job_run))
            elif isinstance(item, Observer):
                _add_observer(observers, _callable_name(type(item)), item)
            else:
                raise ConfigurationError(_not_a_hook(item))
        self._observers = {event: tuple(handlers) for event, handlers in observers.items()}
        self._before_job_schedule = tuple(before_schedule)
        self._before_job_run = tuple(before_run)
        self._after_job_run = tuple(after_run)
        self._plugin_names = tuple(plugin_names)
        self._empty = not (self._observers or before_schedule or before_run or after_run)

    @property
    def empty(self) -> bool:
        """True when no observer overrides any event and no interceptor is registered."""
        return self._empty

    def __bool__(self) -> bool:
        return not self._empty

    def __repr__(self) -> str:
        events = sorted(_EVENT_METHODS[event] for event in self._observers)
        return (
            f"Hooks(plugins={list(self._plugin_names)!r}, observed={events!r}, "
            f"before_job_schedule={len(self._before_job_schedule)}, "
            f"before_job_run={len(self._before_job_run)}, "
            f"after_job_run={len(self._after_job_run)})"
        )

    async def notify(self, event: Event) -> None:
        """Tell every observer that overrides this event's method, in registration order.

        Never raises an observer's exception: each is logged with the hook's name and the
        event, and the remaining observers still run. Cancellation propagates.
        """
        handlers = self._observers.get(type(event))
        if handlers is None:
            return
        for label, method in handlers:
            try:
                result = method(event)
                if inspect.isawaitable(result):
                    await result
            # One try per observer is the point: a broken observer must not silence the rest.
            except Exception:  # noqa: PERF203
                self._logger.exception(
                    "Observer %s raised in %s while handling %s%s; ignoring it",
                    label,
                    _EVENT_METHODS[type(event)],
                    type(event).__name__,
                    _describe_job(event),
                )

    async def before_job_schedule(self, request: ScheduleRequest) -> ScheduleRequest | None:
        """Run the ``before_job_schedule`` chain; return the request to add, or None to skip.

        Each interceptor sees the request as the previous one left it. The first
        :class:`SkipSchedule` ends the chain and returns ``None``.

        Raises:
            HookError: an interceptor returned :class:`FailSchedule`, returned something
                that is not a schedule decision, or raised (the original is ``__cause__``).
        """
        stage = "before_job_schedule"
        for label, interceptor in self._before_job_schedule:
            decision = await _call(stage, label, interceptor, request)
            if isinstance(decision, Schedule):
                request = _apply(request, decision)
            elif isinstance(decision, SkipSchedule):
                self._logger.info(
                    "Not adding a %r job: %s hook %s returned SkipSchedule",
                    request.identifier,
                    stage,
                    label,
                )
                return None
            elif isinstance(decision, FailSchedule):
                raise HookError(
                    f"{stage} hook {label} refused to add a {request.identifier!r} job: "
                    f"{decision.reason}"
                )
            else:
                raise _bad_result(
                    stage, label, decision, "Schedule(), SkipSchedule() or FailSchedule(reason)"
                )
        return request

    async def before_job_run(self, job: Job, ctx: WorkerContext) -> RunDecision:
        """Run the ``before_job_run`` chain; the first :class:`SkipRun` wins.

        Returns :class:`Run` when every interceptor agrees (or there are none) and
        :class:`SkipRun` when one skips the job; later interceptors are not called.
        A :class:`FailRun` is raised as a :class:`~graphile_worker.HookError` whose message
        names the hook and the reason, so this never returns a ``FailRun``.

        Raises:
            HookError: an interceptor returned :class:`FailRun`, returned something that
                is not a run decision, or raised (the original is ``__cause__``).
        """
        stage = "before_job_run"
        for label, interceptor in self._before_job_run:
            decision = await _call(stage, label, interceptor, job, ctx)
            if isinstance(decision, Run):
                continue
            if isinstance(decision, SkipRun):
                self._logger.info(
                    "Skipping job %s (%s): %s hook %s returned SkipRun",
                    job.id,
                    job.task_identifier,
                    stage,
                    label,
                )
                return decision
            if isinstance(decision, FailRun):
                raise HookError(f"{stage} hook {label} failed the job: {decision.reason}")
            raise _bad_result(stage, label, decision, "Run(), SkipRun() or FailRun(reason)")
        return _RUN

    async def after_job_run(self, job: Job, ctx: WorkerContext, outcome: Outcome) -> Outcome:
        """Run the ``after_job_run`` chain; each interceptor sees the previous one's outcome.

        Returns the last outcome, which may turn a :class:`Succeeded` into a
        :class:`Failed` or the other way round.

        Raises:
            HookError: an interceptor returned something that is not an outcome, or raised
                (the original is ``__cause__``).
        """
        stage = "after_job_run"
        for label, interceptor in self._after_job_run:
            result = await _call(stage, label, interceptor, job, ctx, outcome)
            if not isinstance(result, (Succeeded, Failed)):
                raise _bad_result(stage, label, result, "Succeeded() or Failed(error)")
            outcome = result
        return outcome


def _add_observer(
    observers: dict[type[Event], list[_Handler]], label: str, observer: Observer
) -> None:
    """Register ``observer`` for exactly the events whose method it overrides."""
    for event_type, method_name in _EVENT_METHODS.items():
        method = getattr(observer, method_name)
        if getattr(method, "__func__", method) is getattr(Observer, method_name):
            continue
        observers.setdefault(event_type, []).append((label, method))


def _labelled(plugin: str, interceptors: Iterable[Callable[..., object]]) -> list[_Handler]:
    return [
        (f"{plugin}/{_callable_name(interceptor)}", interceptor) for interceptor in interceptors
    ]


async def _call(
    stage: str, label: str, interceptor: Callable[..., object], *args: object
) -> object:
    """Call an interceptor, awaiting it if it is async; wrap whatever it raises."""
    try:
        result = interceptor(*args)
        if inspect.isawaitable(result):
            result = await result
    except Exception as error:
        raise HookError(f"{stage} hook {label} raised {type(error).__name__}: {error}") from error
    return result


def _apply(request: ScheduleRequest, decision: Schedule) -> ScheduleRequest:
    if isinstance(decision.payload, _Unchanged) and decision.spec is None:
        return request
    return ScheduleRequest(
        identifier=request.identifier,
        payload=request.payload if isinstance(decision.payload, _Unchanged) else decision.payload,
        spec=request.spec if decision.spec is None else decision.spec,
    )


def _bad_result(stage: str, label: str, result: object, expected: str) -> HookError:
    return HookError(f"{stage} hook {label} returned {result!r:.80}; it must return {expected}")


def _describe_job(event: Event) -> str:
    job = getattr(event, "job", None)
    return f" for job {job.id} ({job.task_identifier})" if isinstance(job, Job) else ""


def _not_a_hook(item: object) -> str:
    if callable(item) and not isinstance(item, type):
        return (
            f"{_callable_name(item)} looks like an interceptor; wrap interceptors in a "
            f"Plugin, e.g. Plugin('my_plugin', before_job_run=[{_callable_name(item)}])"
        )
    if isinstance(item, type) and issubclass(item, (Plugin, Observer)):
        return f"{_callable_name(item)} is a class; pass an instance, {_callable_name(item)}()"
    return f"hooks must be Plugin or Observer instances, not {item!r:.80}"
