"""The registry: which tasks a worker runs, and :func:`load_tasks` to build one from a module.

There is no global registry. A :class:`TaskRegistry` holds exactly what one worker runs,
built from decorated functions, handler classes and :class:`Task` objects, and
:func:`load_tasks` fills one from a module (the CLI's ``--tasks``). :data:`TASK_ATTRIBUTE`
is the mark :func:`task` leaves on a function; it lives here because finding marked
functions is this module's job (and the crontab builder's, which reads the same mark).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Mapping
from types import ModuleType

from .._job_defaults import TASK_ATTRIBUTE
from ..errors import TaskDefinitionError
from ._handlers import describe_handler
from ._import import import_target
from ._task import Task

__all__ = ["TASK_ATTRIBUTE", "TaskRegistry", "load_tasks"]


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

    # Users import it from the package; reprs and docs should say so.
    __module__ = "graphile_worker.task"
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
