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
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._validate import check_task_identifier
from ..errors import InvalidJobSpecError, PayloadDecodeError, TaskDefinitionError
from ..spec import JSON
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

__all__ = ["Task"]

_Invoker = Callable[[object, "WorkerContext"], object]


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

    @classmethod
    def from_function(
        cls, function: Callable[..., object], identifier: str | None = None, *, batch: bool = False
    ) -> Task:
        """Make a task of a function taking ``(payload, ctx)``, ``(payload)`` or nothing.

        Args:
            function: An ``async def`` or plain ``def`` callable.
            identifier: Defaults to the payload type's ``IDENTIFIER`` when it declares one
                (so ``add_job(SendEmail(...))`` reaches this function), else the function's
                name.
            batch: The payload is a JSON array; annotate it ``list[Item]`` to decode each
                item as ``Item``.

        Raises:
            TaskDefinitionError: the function cannot be a task handler (see the message).
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
        return cls(
            identifier=_checked_identifier(identifier, what),
            batch=batch,
            is_async=shape.is_async,
            handler=function,
            payload_type=payload_type,
            _decoder=decoder,
            _invoke=_function_invoker(function, shape.arity),
        )

    @classmethod
    def from_handler_class(cls, handler_class: type) -> Task:
        """Make a task of a class whose instances are the payload and whose ``run`` handles it.

        The class must be a dataclass or a pydantic model (so it can be built from JSON),
        with a string ``IDENTIFIER`` and ``run(self)`` or ``run(self, ctx)``, plain or async.

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
        )

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
