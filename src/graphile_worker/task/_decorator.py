"""The :func:`task` decorator: mark a function as a handler without changing it.

The decorator builds the function's :class:`Task` at once, so a handler that cannot work
fails at import time, and stores it on the function as ``__graphile_worker_task__``. It
registers nothing: the function stays an ordinary, typed callable, and a registry finds the
mark when it is given the function or scans its module.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar, overload

from .._job_defaults import TASK_ATTRIBUTE, JobKeyFunction
from ..errors import TaskDefinitionError
from ..spec import JobKeyMode, JobKeyModeName
from ._handlers import describe_handler
from ._task import Backoff, Task

__all__ = ["task"]

_F = TypeVar("_F", bound=Callable[..., object])


@overload
def task(identifier: _F, /) -> _F: ...
@overload
def task(
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
) -> Callable[[_F], _F]: ...
def task(
    identifier: str | Callable[..., object] | None = None,
    *,
    batch: bool = False,
    max_attempts: int | None = None,
    queue_name: str | None = None,
    priority: int | None = None,
    job_key: str | JobKeyFunction | None = None,
    job_key_mode: JobKeyMode | JobKeyModeName | None = None,
    flags: Collection[str] | None = None,
    backoff: Backoff | None = None,
) -> Callable[..., object]:
    """Mark a function as a task handler, keeping it callable and typed as it was.

    ``@task``, ``@task()``, ``@task("send_email")`` and ``@task("notify", batch=True)`` all
    work. The function gets a :class:`Task` as its ``__graphile_worker_task__`` attribute;
    nothing is registered globally (:func:`load_tasks` and :class:`TaskRegistry` find it).

    The job options (``max_attempts`` to ``flags``) are defaults for jobs added *through
    the task*, ``add_job(send_email, payload)``, which each job's own ``spec=`` overrides
    field by field; a job added by identifier (``add_job("send_email", ...)``, a crontab,
    a Node process) does not see them. A task whose payload class routes jobs to it by
    itself (an ``IDENTIFIER``) takes them from the class's ``JOB_SPEC`` instead.
    ``backoff`` applies to every failed attempt this worker records, however the job was
    added.

    Args:
        identifier: The task identifier; defaults to the payload type's ``IDENTIFIER`` when
            it has one, else the function's name.
        batch: The payload is a JSON array whose items may fail separately (the handler
            returns ``None`` or one ``None``-or-exception per item).
        max_attempts: Attempts a job gets (default 25).
        queue_name: The named queue jobs join (one job at a time, in order).
        priority: Lower runs first (default 0).
        job_key: A fixed key, or a function of the (typed) payload returning one, or
            ``None`` for a job without a key.
        job_key_mode: What a repeated key does (default ``"replace"``).
        flags: Flags jobs carry (workers may refuse them with ``forbidden_flags``).
        backoff: ``backoff(attempts)``: seconds (or a ``timedelta``) a job that has failed
            ``attempts`` times waits, instead of Node's ``exp(min(attempts, 10))``.

    Raises:
        TaskDefinitionError: the function cannot be a handler, or an option is invalid;
            raised at decoration time.
    """
    policy: dict[str, Any] = {
        "max_attempts": max_attempts,
        "queue_name": queue_name,
        "priority": priority,
        "job_key": job_key,
        "job_key_mode": job_key_mode,
        "flags": flags,
        "backoff": backoff,
    }
    if callable(identifier):
        return _mark(identifier, None, batch=False, policy=policy)
    name = identifier

    def decorate(function: _F) -> _F:
        return _mark(function, name, batch=batch, policy=policy)

    return decorate


def _mark(function: _F, identifier: str | None, *, batch: bool, policy: dict[str, Any]) -> _F:
    if isinstance(function, type):
        raise TaskDefinitionError(
            f"@task decorates functions; {describe_handler(function)} is a class: give it an "
            "IDENTIFIER and a run() method instead (and a JOB_SPEC for its jobs' defaults)"
        )
    made = Task.from_function(function, identifier, batch=batch, **policy)
    try:
        setattr(function, TASK_ATTRIBUTE, made)
    except AttributeError as error:
        raise TaskDefinitionError(
            f"cannot mark {describe_handler(function)} as a task (it takes no attributes); "
            "decorate a plain function, or register Task.from_function(...) directly"
        ) from error
    return function
