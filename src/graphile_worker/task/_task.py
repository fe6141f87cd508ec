"""The :class:`Task`: one handler, made ready for the worker to drive in two steps.

A function or handler class is read once, at definition time, into a :class:`Task` that
knows its identifier, how to decode a payload for it and how to call it. The worker then
calls :meth:`Task.decode` (the job's JSON into the declared payload type, failing with a
:class:`~graphile_worker.PayloadDecodeError` that names the task, the type and the field)
and :meth:`Task.execute` (``async def`` handlers on the event loop, plain ``def`` ones in a
daemon thread so that they never block the loop, nor the process's exit).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import math
import typing
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from .._job_defaults import NO_DEFAULTS, JobDefaults, JobKeyFunction, class_job_spec
from .._validate import check_task_identifier
from ..errors import InvalidJobSpecError, PayloadDecodeError, TaskDefinitionError
from ..spec import JSON, JobKeyMode, JobKeyModeName, JobSpec
from ._batch import BatchResult, batch_outcome
from ._decode import (
    NO_ANNOTATION,
    DecodeFailure,
    Decoder,
    compile_batch_decoder,
    compile_decoder,
    type_name,
)
from ._handlers import describe_handler, inspect_function, inspect_run_method
from ._threads import run_in_daemon_thread

if TYPE_CHECKING:
    from anyio import CapacityLimiter

    from ..context import WorkerContext

__all__ = ["MAX_BACKOFF_DAYS", "Backoff", "Task"]

_Invoker = Callable[[object, "WorkerContext"], object]

Backoff: TypeAlias = Callable[[int], "float | timedelta"]
"""``backoff(attempts)``: how long a job that has failed ``attempts`` times (1 after its
first failure) waits before its next attempt, in seconds or as a ``timedelta``."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Task:
    """One registered task: its identifier, how to decode its payload, how to call it.

    Build one with :func:`task`, :meth:`from_function` or :meth:`from_handler_class`
    (:class:`TaskRegistry` does it for you). Tasks compare by identity.

    Attributes:
        identifier: The task identifier jobs are queued under.
        batch: The payload is a JSON array whose items may fail separately.
        is_async: The handler runs on the event loop; otherwise in a worker thread.
        handler: The function or handler class this task was made from.
        payload_type: The annotation payloads are decoded into (``inspect.Parameter.empty``
            for raw JSON; for batch tasks, the type of one item).
        job_defaults: What jobs added through this task get unless their spec says
            otherwise (from ``@task(max_attempts=..., ...)`` or the payload class's
            ``JOB_SPEC``).
        backoff: The delay before a failed job's next attempt, replacing Node's
            ``exp(min(attempts, 10))`` seconds; ``None`` keeps Node's.
    """

    # Users import it from the package; reprs and docs should say so.
    __module__ = "graphile_worker.task"

    identifier: str
    batch: bool
    is_async: bool
    handler: object
    payload_type: object
    _decoder: Decoder = dataclasses.field(repr=False)
    _invoke: _Invoker = dataclasses.field(repr=False)
    job_defaults: JobDefaults = NO_DEFAULTS
    backoff: Backoff | None = dataclasses.field(default=None, repr=False)

    @property
    def __graphile_worker_task__(self) -> Task:
        """A task is marked as one, like the functions :func:`task` decorates, so that
        ``add_job`` recognises both without importing this package."""
        return self

    @classmethod
    def from_function(
        cls,
        function: Callable[..., object],
        identifier: str | None = None,
        *,
        batch: bool = False,
        max_attempts: int | None = None,
        queue_name: str | None = None,
        priority: int | None = None,
        job_key: str | JobKeyFunction | None = None,
        job_key_mode: JobKeyMode | JobKeyModeName | None = None,
        flags: Collection[str] | None = None,
        backoff: Backoff | None = None,
    ) -> Task:
        """Make a task of a function taking ``(payload, ctx)``, ``(payload)`` or nothing.

        Args:
            function: An ``async def`` or plain ``def`` callable.
            identifier: Defaults to the payload type's ``IDENTIFIER`` when it declares one
                (so ``add_job(SendEmail(...))`` reaches this function), else the function's
                name.
            batch: The payload is a JSON array; annotate it ``list[Item]`` to decode each
                item as ``Item``.
            max_attempts: Default for jobs added through this task (see :func:`task`).
            queue_name: Default queue for jobs added through this task.
            priority: Default priority for jobs added through this task.
            job_key: A fixed key, or a function of the payload returning the key (or
                ``None``), for jobs added through this task without one.
            job_key_mode: The mode of those keyed jobs that do not choose their own.
            flags: Default flags for jobs added through this task.
            backoff: ``backoff(attempts)`` seconds (or a ``timedelta``) before the next
                attempt of a failed job, instead of Node's formula.

        Raises:
            TaskDefinitionError: the function cannot be a task handler, or a policy is
                invalid (see the message).
        """
        what = describe_handler(function)
        shape = inspect_function(function, what)
        payload_type = shape.payload_annotation
        if identifier is None:
            identifier = _default_identifier(function, payload_type, batch, what)
        if batch:
            payload_type = _batch_item_type(payload_type, what)
            decoder = compile_batch_decoder(payload_type, owner=what)
        else:
            decoder = compile_decoder(payload_type, owner=what)
        identifier = _checked_identifier(identifier, what)
        own = _own_defaults(
            what,
            max_attempts=max_attempts,
            queue_name=queue_name,
            priority=priority,
            job_key=job_key,
            job_key_mode=job_key_mode,
            flags=flags,
        )
        return cls(
            identifier=identifier,
            batch=batch,
            is_async=shape.is_async,
            handler=function,
            payload_type=payload_type,
            _decoder=decoder,
            _invoke=_function_invoker(function, shape.arity),
            job_defaults=_task_defaults(own, payload_type, identifier, batch, what),
            backoff=_checked_backoff(backoff, what),
        )

    @classmethod
    def from_handler_class(cls, handler_class: type) -> Task:
        """Make a task of a class whose instances are the payload and whose ``run`` handles it.

        The class must be a dataclass or a pydantic model (so it can be built from JSON),
        with a string ``IDENTIFIER`` and ``run(self)`` or ``run(self, ctx)``, plain or async.
        Optional class attributes: ``JOB_SPEC`` (a :class:`~graphile_worker.JobSpec`, the
        defaults of its jobs) and ``BACKOFF`` (a :data:`Backoff`, as ``@task(backoff=...)``).

        Raises:
            TaskDefinitionError: one of those requirements is not met.
        """
        what = describe_handler(handler_class)
        identifier = getattr(handler_class, "IDENTIFIER", None)
        if not isinstance(identifier, str):
            raise TaskDefinitionError(
                f"{what} needs a class attribute IDENTIFIER: ClassVar[str] naming its task"
            )
        shape = inspect_run_method(handler_class, what)
        if not dataclasses.is_dataclass(handler_class) and not callable(
            getattr(handler_class, "model_validate", None)
        ):
            raise TaskDefinitionError(
                f"{what} must be a dataclass or a pydantic model, so that its instances can "
                "be built from the job's JSON payload"
            )
        return cls(
            identifier=_checked_identifier(identifier, what),
            batch=False,
            is_async=shape.is_async,
            handler=handler_class,
            payload_type=handler_class,
            _decoder=compile_decoder(handler_class, owner=what),
            _invoke=_run_method_invoker(handler_class, identifier, shape.arity),
            job_defaults=_class_defaults(handler_class, what),
            backoff=_checked_backoff(getattr(handler_class, "BACKOFF", None), what),
        )

    def retry_delay(self, attempts: int) -> float | None:
        """Seconds before the next attempt of a job that has failed ``attempts`` times.

        ``None`` means Node's formula (no :attr:`backoff`, or one that failed: a broken
        back-off function must not lose the job, so it is logged and Node's delay used).

        Raises:
            ValueError: :attr:`backoff` raised, or returned something that is not a number
                of seconds or ``timedelta`` from 0 to :data:`MAX_BACKOFF_DAYS` days; the
                message says which (the worker logs it and uses Node's delay).
        """
        if self.backoff is None:
            return None
        try:
            delay = self.backoff(attempts)
        except Exception as error:
            raise ValueError(
                f"the back-off of task {self.identifier!r} raised {type(error).__name__}: {error}"
            ) from error
        seconds = _seconds(delay)
        if seconds is None:
            raise ValueError(
                f"the back-off of task {self.identifier!r} returned {delay!r:.80} for attempt "
                f"{attempts}; it must return a number of seconds or a timedelta, from 0 to "
                f"{MAX_BACKOFF_DAYS} days"
            )
        return seconds

    def decode(self, payload: JSON) -> object:
        """Turn a job's JSON payload into what the handler expects.

        Raises:
            PayloadDecodeError: the payload does not fit; the message names the task, the
                expected type, the place in the payload and what was wrong there.
        """
        try:
            return self._decoder(payload, "payload")
        except DecodeFailure as failure:
            expected = f"list[{type_name(self.payload_type)}]" if self.batch else None
            raise PayloadDecodeError(
                f"task {self.identifier!r} cannot decode its payload as "
                f"{expected or type_name(self.payload_type)}: {failure}"
            ) from failure.__cause__

    async def execute(
        self,
        payload: object,
        ctx: WorkerContext,
        *,
        limiter: CapacityLimiter | None = None,
    ) -> BatchResult | None:
        """Run the handler on a payload from :meth:`decode`.

        An ``async def`` handler runs on the event loop. A plain ``def`` handler runs in a
        daemon thread (reused from job to job) so that it never blocks the loop, limited by
        ``limiter`` (default: anyio's shared thread limiter, 40 threads); the limiter is an
        argument rather than part of the task because one task may serve several workers,
        each with its own limit. From that thread the handler reaches the loop through
        ``ctx.call_async`` or ``anyio.from_thread``.

        Python cannot stop a thread. If the call is cancelled (the worker's shutdown grace
        period ran out, or a second signal), the thread is abandoned: the cancellation
        propagates at once (the worker then releases the job without spending its attempt),
        the thread's eventual result is dropped, and, being a daemon thread, it never keeps
        the process from exiting. A handler that never returns thus
        costs a thread, not a stuck shutdown; long-running sync handlers should still
        watch ``ctx.abort_requested`` and raise ``JobAbortedError`` to stop cleanly.

        Returns:
            ``None`` on success; for a batch task in which some items failed, a
            :class:`BatchResult` with those items.

        Raises:
            BaseException: whatever the handler raised, unchanged.
            BatchFailedError: every item of a batch failed.
            JobError: a batch handler returned something other than ``None`` or one entry
                (``None`` or an exception) per item.
        """
        if self.is_async:
            result = self._invoke(payload, ctx)
        else:
            (result,) = await run_in_daemon_thread(
                _boxed, self._invoke, payload, ctx, limiter=limiter
            )
        if inspect.isawaitable(result):
            # A plain def that returns a coroutine (a sync wrapper around an async function):
            # await it here, on the loop.
            result = await result
        if not self.batch or result is None:
            return None
        return batch_outcome(self.identifier, payload, result)


def _boxed(invoke: _Invoker, payload: object, ctx: WorkerContext) -> tuple[object]:
    # trio refuses a thread function whose result is a coroutine; a tuple gets it through.
    return (invoke(payload, ctx),)


def _default_identifier(
    function: Callable[..., object], payload_type: object, batch: bool, what: str
) -> str:
    declared = getattr(payload_type, "IDENTIFIER", None) if isinstance(payload_type, type) else None
    if isinstance(declared, str) and not batch:
        return declared
    name = getattr(function, "__name__", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise TaskDefinitionError(f"{what} has no usable name; pass one: task('identifier')")
    return name


MAX_BACKOFF_DAYS: Final = 365
"""The longest delay a back-off may ask for. Anything longer is a bug (a unit mistake, an
exponent without a cap) and, stored as ``run_at``, could leave PostgreSQL's or Python's
date range: the failure would not be recorded and the job would stay locked."""

_MAX_BACKOFF_SECONDS: Final = MAX_BACKOFF_DAYS * 86_400.0


def _seconds(delay: object) -> float | None:
    """``delay`` as seconds when it is a usable back-off (0 to a year), else ``None``."""
    if isinstance(delay, timedelta):
        seconds: object = delay.total_seconds()
    else:
        seconds = delay
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    try:
        value = float(seconds)  # an int too large for a float raises OverflowError
    except OverflowError:
        return None
    if not math.isfinite(value) or not 0 <= value <= _MAX_BACKOFF_SECONDS:
        return None
    return value


def _own_defaults(
    what: str,
    *,
    max_attempts: int | None,
    queue_name: str | None,
    priority: int | None,
    job_key: str | JobKeyFunction | None,
    job_key_mode: JobKeyMode | JobKeyModeName | None,
    flags: Collection[str] | None,
) -> JobDefaults:
    """The defaults given to ``@task``, checked as a :class:`JobSpec` checks them."""
    if job_key is not None and not isinstance(job_key, str) and not callable(job_key):
        raise TaskDefinitionError(
            f"{what}: job_key must be a str or a function of the payload, not {job_key!r:.80}"
        )
    key_function = job_key if callable(job_key) else None
    fixed_key = None if callable(job_key) else job_key
    try:
        spec = JobSpec(
            max_attempts=max_attempts,
            queue_name=queue_name,
            priority=priority,
            job_key=fixed_key,
            flags=flags,
        )
        mode = None
        if job_key_mode is not None:
            mode = JobSpec(job_key="k", job_key_mode=job_key_mode).job_key_mode
    except InvalidJobSpecError as error:
        raise TaskDefinitionError(f"{what}: {error}") from error
    assert mode is None or isinstance(mode, JobKeyMode)
    if spec == JobSpec():
        if key_function is None and mode is None:
            return NO_DEFAULTS
        return JobDefaults(job_key=key_function, job_key_mode=mode)
    return JobDefaults(spec=spec, job_key=key_function, job_key_mode=mode)


def _task_defaults(
    own: JobDefaults, payload_type: object, identifier: str, batch: bool, what: str
) -> JobDefaults:
    """A function task's defaults: its own, or its typed payload class's ``JOB_SPEC``.

    When the payload class routes jobs to this task by itself (its ``IDENTIFIER`` is this
    task's), ``add_job(Payload(...))`` never sees the task, so defaults given to ``@task``
    would apply to some jobs and not others depending on how they were added. That is
    refused: such defaults belong on the class, where every producer sees them.
    """
    payload_class = payload_type if isinstance(payload_type, type) and not batch else None
    if payload_class is None:
        return own
    declared = getattr(payload_class, "IDENTIFIER", None)
    class_defaults = _class_defaults(payload_class, what)
    if declared != identifier:
        return own if own is not NO_DEFAULTS else class_defaults
    if own is not NO_DEFAULTS:
        raise TaskDefinitionError(
            f"{what}: jobs for this task are also added as add_job({payload_class.__qualname__}"
            "(...)), which cannot see defaults given to @task; declare them on the payload "
            f"class instead: JOB_SPEC: ClassVar[JobSpec] = JobSpec(...)"
        )
    return class_defaults


def _class_defaults(cls: type, what: str) -> JobDefaults:
    try:
        spec = class_job_spec(cls)
    except InvalidJobSpecError as error:
        raise TaskDefinitionError(f"{what}: {error}") from error
    return NO_DEFAULTS if spec is None else JobDefaults(spec=spec)


def _checked_backoff(backoff: object, what: str) -> Backoff | None:
    if backoff is None or callable(backoff):
        return backoff
    raise TaskDefinitionError(
        f"{what}: backoff must be a function of the attempt count returning seconds or a "
        f"timedelta, not {backoff!r:.80}"
    )


def _checked_identifier(identifier: object, what: str) -> str:
    try:
        return check_task_identifier(identifier, error=InvalidJobSpecError)
    except InvalidJobSpecError as error:
        raise TaskDefinitionError(f"{what}: {error}") from error


def _batch_item_type(annotation: object, what: str) -> object:
    """``list[Item]`` -> ``Item``; a bare ``list``, ``Any``, ``JSON`` or nothing -> raw items."""
    if any(annotation is raw for raw in (NO_ANNOTATION, JSON, Any, object)):
        return NO_ANNOTATION
    origin = typing.get_origin(annotation) or annotation
    if origin in _BATCH_CONTAINERS:
        arguments = typing.get_args(annotation)
        return arguments[0] if arguments else NO_ANNOTATION
    raise TaskDefinitionError(
        f"{what} is a batch handler, so its payload is a JSON array: annotate the parameter "
        f"list[Item] (or leave it unannotated), not {type_name(annotation)}"
    )


_BATCH_CONTAINERS: Final = (
    list,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Collection,
    collections.abc.Iterable,
)


def _function_invoker(function: Callable[..., object], arity: int) -> _Invoker:
    if arity == 2:
        return function
    if arity == 1:
        return lambda payload, ctx: function(payload)
    return lambda payload, ctx: function()


def _run_method_invoker(handler_class: type, identifier: str, arity: int) -> _Invoker:
    def invoke(payload: object, ctx: WorkerContext) -> object:
        if not isinstance(payload, handler_class):
            raise TypeError(
                f"task {identifier!r} runs {handler_class.__qualname__}.run on an instance; "
                f"got {type(payload).__qualname__} (pass the result of Task.decode())"
            )
        run: Callable[..., object] = payload.run  # type: ignore[attr-defined]
        return run(ctx) if arity else run()

    return invoke
