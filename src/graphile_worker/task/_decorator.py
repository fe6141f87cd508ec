"""The :func:`task` decorator: mark a function as a handler without changing it.

The decorator builds the function's :class:`Task` at once, so a handler that cannot work
fails at import time, and stores it on the function as ``__graphile_worker_task__``. It
registers nothing: the function stays an ordinary, typed callable, and a registry finds the
mark when it is given the function or scans its module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, overload

from ..errors import TaskDefinitionError
from ._handlers import describe_handler
from ._registry import TASK_ATTRIBUTE
from ._task import Task

__all__ = ["task"]

_F = TypeVar("_F", bound=Callable[..., object])


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
