"""Tasks: the code that runs a job, how its payload is decoded, and how tasks are found.

A task is a function marked with :func:`task` or a *handler class* (a dataclass or pydantic
model with an ``IDENTIFIER`` and a ``run`` method) whose instances are the payload, so that
``utils.add_job(SendEmail(to=...))`` and the code that sends the email share one type.
Everything is turned into a :class:`Task` that the worker drives in two steps:

1. :meth:`Task.decode` turns the job's JSON into the declared payload type, failing with a
   :class:`~graphile_worker.PayloadDecodeError` that names the task, the type and the field;
2. :meth:`Task.execute` calls the handler: ``async def`` on the event loop, plain ``def`` in
   a worker thread so that it never blocks the loop.

Batch tasks (``@task(batch=True)``) take a JSON array and may fail some items only: the job is
then retried with just those items as its payload, as Node graphile-worker does.

There is no global registry: :class:`TaskRegistry` holds what a worker runs, and
:func:`load_tasks` builds one from a module (the CLI's ``--tasks``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import anyio.to_thread

from ._task_batch import BatchResult, batch_outcome
from ._task_decode import (
    NO_ANNOTATION,
    DecodeFailure,
    Decoder,
    compile_batch_decoder,
    compile_decoder,
    type_name,
)
from ._task_handlers import describe_handler, inspect_function, inspect_run_method
from ._task_import import import_target
from .errors import InvalidJobSpecError, PayloadDecodeError, TaskDefinitionError
from .spec import JSON, validate_task_identifier

if TYPE_CHECKING:
    from anyio import CapacityLimiter

    from .worker import WorkerContext

__all__ = [
    "TASK_ATTRIBUTE",
    "BatchResult",
    "Task",
    "TaskRegistry",
    "load_tasks",
    "task",
]

TASK_ATTRIBUTE: Final = "__graphile_worker_task__"
"""The attribute :func:`task` sets on a function: its :class:`Task`."""

_F = TypeVar("_F", bound=Callable[..., object])
_Invoker = Callable[[object, "WorkerContext"], object]

# --------------------------------------------------------------------------------------- Task


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
        worker thread through :func:`anyio.to_thread.run_sync`, limited by ``limiter``
        (default: anyio's shared thread limiter, 40 threads); it is an argument rather
        than part of the task because one task may serve several workers, each with its own
        limit. If the call is cancelled (the worker's shutdown grace period ran out), the
        thread is abandoned: the job is released at once and the thread's eventual result
        is ignored. Python cannot stop a thread, so long-running sync handlers should watch
        the context's abort signal.

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
            (result,) = await anyio.to_thread.run_sync(
                _boxed, self._invoke, payload, ctx, limiter=limiter, abandon_on_cancel=True
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
        return validate_task_identifier(identifier)
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


# ---------------------------------------------------------------------------------- decorator


@overload
def task(identifier: _F, /) -> _F: ...
@overload
def task(identifier: str | None = None, *, batch: bool = False) -> Callable[[_F], _F]: ...
def task(
    identifier: str | Callable[..., object] | None = None, *, batch: bool = False
) -> Callable[..., object]:
    """Mark a function as a task handler, keeping it callable and typed as it was.

    ``@task``, ``@task()``, ``@task("send_email")`` and ``@task("notify", batch=True)`` all
    work. The function gets a :class:`Task` as its ``__graphile_worker_task__`` attribute;
    nothing is registered globally (:func:`load_tasks` and :class:`TaskRegistry` find it).

    Args:
        identifier: The task identifier; defaults to the payload type's ``IDENTIFIER`` when
            it has one, else the function's name.
        batch: The payload is a JSON array whose items may fail separately (the handler
            returns ``None`` or one ``None``-or-exception per item).

    Raises:
        TaskDefinitionError: the function cannot be a handler; raised at decoration time.
    """
    if callable(identifier):
        return _mark(identifier, None, batch=False)
    name = identifier

    def decorate(function: _F) -> _F:
        return _mark(function, name, batch=batch)

    return decorate


def _mark(function: _F, identifier: str | None, *, batch: bool) -> _F:
    if isinstance(function, type):
        raise TaskDefinitionError(
            f"@task decorates functions; {describe_handler(function)} is a class: give it an "
            "IDENTIFIER and a run() method instead"
        )
    made = Task.from_function(function, identifier, batch=batch)
    try:
        setattr(function, TASK_ATTRIBUTE, made)
    except AttributeError as error:
        raise TaskDefinitionError(
            f"cannot mark {describe_handler(function)} as a task (it takes no attributes); "
            "decorate a plain function, or register Task.from_function(...) directly"
        ) from error
    return function


# ----------------------------------------------------------------------------------- registry


def _as_task(item: object) -> Task:
    if isinstance(item, Task):
        return item
    marked = getattr(item, TASK_ATTRIBUTE, None)
    if isinstance(marked, Task):
        return marked
    if isinstance(item, type):
        return Task.from_handler_class(item)
    if callable(item) and not isinstance(item, str):
        # An explicit registration of an undecorated function is unambiguous;
        # load_tasks only collects decorated ones.
        return Task.from_function(item)
    raise TaskDefinitionError(
        f"cannot register {item!r:.80}: expected a function decorated with @task, a handler "
        "class (IDENTIFIER and run()), or a Task"
    )


class TaskRegistry:
    """The tasks a worker can run, by identifier.

    ``TaskRegistry([send_email, SendEmail, resize])`` accepts decorated (or plain)
    functions, handler classes and :class:`Task` objects. Adding the same handler twice is
    harmless; two different handlers for one identifier are an error.
    """

    __slots__ = ("_tasks",)

    def __init__(self, items: Iterable[object] = ()) -> None:
        self._tasks: dict[str, Task] = {}
        for item in items:
            self.add(item)

    def add(self, item: object) -> Task:
        """Register ``item`` and return its :class:`Task`.

        Raises:
            TaskDefinitionError: ``item`` cannot be a task, or another handler already has
                its identifier.
        """
        new = _as_task(item)
        existing = self._tasks.get(new.identifier)
        if existing is None:
            self._tasks[new.identifier] = new
            return new
        if existing.handler is new.handler and existing.batch == new.batch:
            return existing
        raise TaskDefinitionError(
            f"two handlers for task {new.identifier!r}: {describe_handler(existing.handler)} "
            f"and {describe_handler(new.handler)}; give one of them another identifier"
        )

    def get(self, identifier: str) -> Task | None:
        """The task for ``identifier``, or ``None`` when this registry has none."""
        return self._tasks.get(identifier)

    @property
    def identifiers(self) -> tuple[str, ...]:
        """Every identifier, sorted: what the worker asks the database for."""
        return tuple(sorted(self._tasks))

    def __contains__(self, identifier: object) -> bool:
        return identifier in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def __repr__(self) -> str:
        return f"TaskRegistry({list(self.identifiers)!r})"


# -------------------------------------------------------------------------------- load_tasks


def load_tasks(target: str) -> TaskRegistry:
    """Build a registry from a module: what the CLI's ``--tasks`` does.

    ``target`` is a dotted module name (``myapp.tasks``), ``module:attribute``, or a path to
    a ``.py`` file or package directory. The module's tasks are, in this order of precedence:

    * the attribute named after ``:``, holding a :class:`TaskRegistry`, a list of tasks or
      one task;
    * a module-level ``tasks`` attribute holding a :class:`TaskRegistry` or a list;
    * otherwise every module-level function decorated with :func:`task`, handler class
      and :class:`Task`, whether defined in the module or imported into it.

    Raises:
        TaskDefinitionError: the module cannot be imported (the import error is the
            ``__cause__``), holds no task, or holds two handlers for one identifier.
    """
    module, attribute = import_target(target)
    if attribute is not None:
        if not hasattr(module, attribute):
            raise TaskDefinitionError(
                f"cannot load tasks from {target!r}: module {module.__name__!r} has no "
                f"attribute {attribute!r}"
            )
        holder = getattr(module, attribute)
        items = _items_in(holder) if _is_collection(holder) else [holder]
    else:
        explicit = vars(module).get("tasks")
        if isinstance(explicit, Mapping):
            raise TaskDefinitionError(
                f"{module.__name__}.tasks is a mapping; make it a list of task functions and "
                "handler classes, or a TaskRegistry (identifiers come from @task / IDENTIFIER)"
            )
        items = _items_in(explicit) if _is_collection(explicit) else _scan(module)
    registry = TaskRegistry(items)
    if not registry:
        raise TaskDefinitionError(
            f"{target!r} defines no tasks: decorate functions with @task, define handler "
            "classes (IDENTIFIER and run()), or set a module-level tasks = [...]"
        )
    return registry


def _is_collection(value: object) -> bool:
    return isinstance(value, (TaskRegistry, list, tuple, set, frozenset))


def _items_in(holder: object) -> list[object]:
    assert isinstance(holder, (TaskRegistry, list, tuple, set, frozenset))
    return list(holder)


def _scan(module: ModuleType) -> list[object]:
    found: list[object] = []
    for value in list(vars(module).values()):
        is_task = isinstance(value, Task) or isinstance(getattr(value, TASK_ATTRIBUTE, None), Task)
        if is_task or (isinstance(value, type) and _looks_like_handler_class(value)):
            found.append(value)
    return found


def _looks_like_handler_class(cls: type) -> bool:
    # Protocols (TypedPayload) and abstract bases describe handlers; they are not handlers.
    if getattr(cls, "_is_protocol", False) or inspect.isabstract(cls):
        return False
    return hasattr(cls, "IDENTIFIER") and hasattr(cls, "run")
