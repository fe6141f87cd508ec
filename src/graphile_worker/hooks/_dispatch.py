"""The worker's own dispatcher: every hook it calls, sorted once, called cheaply.

Not for users, who hand plugins and observers to ``WorkerOptions(hooks=[...])``. The worker
builds one :class:`Hooks` from them: it flattens plugins in registration order, works out
once which observer overrides which event, and is falsy when there is nothing to call, so
the worker's hot path costs one truth test when no hooks are installed (trio's
``Instrument`` dispatch is the model).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, TypeAlias, final

import anyio

from ..errors import ConfigurationError, HookError
from ..recovery import FailJob, RecoverLater, RecoverNow, RecoveryDecision, StaleJob
from ..spec import Job
from ._events import EVENT_METHODS, Event, Observer
from ._interceptors import (
    RUN,
    UNCHANGED,
    Failed,
    FailRun,
    FailSchedule,
    Outcome,
    Run,
    RunDecision,
    Schedule,
    ScheduleRequest,
    SkipRun,
    SkipSchedule,
    Succeeded,
)
from ._plugin import Plugin, callable_name

if TYPE_CHECKING:
    from ..context import WorkerContext

__all__ = ["Hooks"]

_DEFAULT_LOGGER: Final = logging.getLogger("graphile_worker.hooks")

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
        "_recover_job",
    )

    def __init__(
        self, items: Iterable[Plugin | Observer] = (), *, logger: logging.Logger | None = None
    ) -> None:
        if isinstance(items, (Plugin, Observer)):
            raise ConfigurationError(
                f"hooks must be a list of plugins and observers, not a single "
                f"{callable_name(type(items))}; wrap it: [{items!r:.60}]"
            )
        self._logger = logger if logger is not None else _DEFAULT_LOGGER
        observers: dict[type[Event], list[_Handler]] = {}
        before_schedule: list[_Handler] = []
        before_run: list[_Handler] = []
        after_run: list[_Handler] = []
        recover: list[_Handler] = []
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
                    label = f"{item.name}/{callable_name(type(observer))}"
                    _add_observer(observers, label, observer)
                before_schedule.extend(_labelled(item.name, item.before_job_schedule))
                before_run.extend(_labelled(item.name, item.before_job_run))
                after_run.extend(_labelled(item.name, item.after_job_run))
                recover.extend(_labelled(item.name, item.recover_job))
            elif isinstance(item, Observer):
                _add_observer(observers, callable_name(type(item)), item)
            else:
                raise ConfigurationError(_not_a_hook(item))
        self._observers = {event: tuple(handlers) for event, handlers in observers.items()}
        self._before_job_schedule = tuple(before_schedule)
        self._before_job_run = tuple(before_run)
        self._after_job_run = tuple(after_run)
        self._recover_job = tuple(recover)
        self._plugin_names = tuple(plugin_names)
        self._empty = not (self._observers or before_schedule or before_run or after_run or recover)

    @property
    def empty(self) -> bool:
        """True when no observer overrides any event and no interceptor is registered."""
        return self._empty

    def __bool__(self) -> bool:
        return not self._empty

    def __repr__(self) -> str:
        events = sorted(EVENT_METHODS[event] for event in self._observers)
        return (
            f"Hooks(plugins={list(self._plugin_names)!r}, observed={events!r}, "
            f"before_job_schedule={len(self._before_job_schedule)}, "
            f"before_job_run={len(self._before_job_run)}, "
            f"after_job_run={len(self._after_job_run)}, "
            f"recover_job={len(self._recover_job)})"
        )

    def observes(self, *events: type[Event]) -> bool:
        """Whether some observer overrides the method of any of ``events``."""
        return any(event in self._observers for event in events)

    def watching(self, event: type[Event]) -> bool:
        """Whether some observer overrides ``event``'s method: the per-job check, so that
        an event nobody watches is never even built."""
        return event in self._observers

    @property
    def intercepts_runs(self) -> bool:
        """Whether any ``before_job_run`` or ``after_job_run`` interceptor is registered."""
        return bool(self._before_job_run or self._after_job_run)

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
            # One try per observer is the point: a broken observer must not silence the rest,
            # nor stop the worker with a SystemExit or KeyboardInterrupt of its own.
            except BaseException as error:  # noqa: PERF203
                if isinstance(error, anyio.get_cancelled_exc_class()):
                    raise
                self._logger.exception(
                    "Observer %s raised in %s while handling %s%s; ignoring it",
                    label,
                    EVENT_METHODS[type(event)],
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
        return RUN

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

    @property
    def intercepts_recovery(self) -> bool:
        """Whether any ``recover_job`` interceptor is registered."""
        return bool(self._recover_job)

    async def recover_job(self, job: StaleJob) -> RecoveryDecision:
        """Run the ``recover_job`` chain; the first decision other than :class:`RecoverNow`
        wins.

        Never raises for an interceptor's fault: one that raises or answers something else
        is logged, and the job is recovered as if it had said :class:`RecoverNow`, because
        a broken hook must not leave a dead worker's jobs locked.
        """
        stage = "recover_job"
        for label, interceptor in self._recover_job:
            try:
                decision = await _call(stage, label, interceptor, job)
            except HookError as error:
                self._logger.error("%s; recovering job %s as usual", error, job.id)
                return _RECOVER_NOW
            if isinstance(decision, RecoverNow):
                continue
            if isinstance(decision, (RecoverLater, FailJob)):
                return decision
            self._logger.error(
                "%s; recovering job %s as usual",
                _bad_result(stage, label, decision, "RecoverNow(), RecoverLater() or FailJob()"),
                job.id,
            )
            return _RECOVER_NOW
        return _RECOVER_NOW


_RECOVER_NOW: Final = RecoverNow()


def _add_observer(
    observers: dict[type[Event], list[_Handler]], label: str, observer: Observer
) -> None:
    """Register ``observer`` for exactly the events whose method it overrides."""
    for event_type, method_name in EVENT_METHODS.items():
        method = getattr(observer, method_name)
        if getattr(method, "__func__", method) is getattr(Observer, method_name):
            continue
        observers.setdefault(event_type, []).append((label, method))


def _labelled(plugin: str, interceptors: Iterable[Callable[..., object]]) -> list[_Handler]:
    return [(f"{plugin}/{callable_name(interceptor)}", interceptor) for interceptor in interceptors]


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
    if decision.payload is UNCHANGED and decision.spec is None:
        return request
    return ScheduleRequest(
        identifier=request.identifier,
        payload=request.payload if decision.payload is UNCHANGED else decision.payload,
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
            f"{callable_name(item)} looks like an interceptor; wrap interceptors in a "
            f"Plugin, e.g. Plugin('my_plugin', before_job_run=[{callable_name(item)}])"
        )
    if isinstance(item, type) and issubclass(item, (Plugin, Observer)):
        return f"{callable_name(item)} is a class; pass an instance, {callable_name(item)}()"
    return f"hooks must be Plugin or Observer instances, not {item!r:.80}"
