"""Tasks: the code that runs a job, how its payload is decoded, and how tasks are found.

A task is a function marked with :func:`task` or a *handler class* (a dataclass or pydantic
model with an ``IDENTIFIER`` and a ``run`` method) whose instances are the payload, so that
``utils.add_job(SendEmail(to=...))`` and the code that sends the email share one type. Both
become a :class:`Task`, which decodes payloads and calls the handler; batch tasks
(``@task(batch=True)``) may fail some items only, as in Node graphile-worker. There is no
global registry: a :class:`TaskRegistry` holds what a worker runs, and :func:`load_tasks`
builds one from a module (the CLI's ``--tasks``).
"""

from __future__ import annotations

from ._batch import BatchResult as BatchResult
from ._decorator import task as task
from ._registry import TaskRegistry as TaskRegistry
from ._registry import load_tasks as load_tasks
from ._task import MAX_BACKOFF_DAYS as MAX_BACKOFF_DAYS
from ._task import Backoff as Backoff
from ._task import Task as Task

__all__ = [
    "MAX_BACKOFF_DAYS",
    "Backoff",
    "BatchResult",
    "Task",
    "TaskRegistry",
    "load_tasks",
    "task",
]
