"""SQL for database housekeeping: the three cleanup tasks Node graphile-worker offers.

Rows in ``_private_tasks`` and ``_private_job_queues`` are created on demand and never
removed by the queue itself, so a database that has seen many task names or many queue
names (a queue per user, say) keeps growing. :func:`cleanup` removes what nothing refers
to any more, and optionally deletes jobs that have failed for good. Each task is one
statement, run in Node's order (jobs first, so that the tasks and queues they held can go
in the same call).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ConfigurationError
from ..spec import CleanupTask
from . import render
from ._statement import Operation, Statement

__all__ = [
    "CLEANUP_ORDER",
    "DELETE_PERMAFAILED_JOBS",
    "GC_JOB_QUEUES",
    "GC_TASK_IDENTIFIERS",
    "cleanup",
    "cleanup_tasks",
]

# A job is permanently failed once attempts reaches max_attempts; a locked one is still being
# run (its final attempt), so it stays.
DELETE_PERMAFAILED_JOBS = """
delete from {schema}._private_jobs as job
where job.attempts = job.max_attempts
  and job.locked_at is null
"""

# Identifiers a deployment still handles can be kept even with no jobs queued, so that
# their ids (and anything caching them) stay stable.
GC_TASK_IDENTIFIERS = """
delete from {schema}._private_tasks as task
where not exists (
    select 1 from {schema}._private_jobs as job where job.task_id = task.id
  )
  and task.identifier <> all (CAST(:keep AS text[]))
"""

# A locked queue is in use by a running job even if that job is gone already.
GC_JOB_QUEUES = """
delete from {schema}._private_job_queues as queue
where queue.locked_at is null
  and not exists (
    select 1 from {schema}._private_jobs as job where job.job_queue_id = queue.id
  )
"""

CLEANUP_ORDER: tuple[CleanupTask, ...] = (
    CleanupTask.DELETE_PERMAFAILED_JOBS,
    CleanupTask.GC_TASK_IDENTIFIERS,
    CleanupTask.GC_JOB_QUEUES,
)
"""Jobs go first so that the tasks and queues only they referred to are collected too."""

_SQL = {
    CleanupTask.DELETE_PERMAFAILED_JOBS: DELETE_PERMAFAILED_JOBS,
    CleanupTask.GC_TASK_IDENTIFIERS: GC_TASK_IDENTIFIERS,
    CleanupTask.GC_JOB_QUEUES: GC_JOB_QUEUES,
}


def cleanup_tasks(
    tasks: Iterable[CleanupTask | str] | None, task_identifiers_to_keep: Iterable[str] | None
) -> tuple[frozenset[CleanupTask], list[str]]:
    """Check and normalise cleanup arguments, applying Node's defaults.

    Without ``tasks``, Node's ``WorkerUtils.cleanup()`` runs ``GC_JOB_QUEUES`` alone, and
    also ``GC_TASK_IDENTIFIERS`` when identifiers to keep were given (the list would mean
    nothing otherwise).
    """
    keep: list[str] = []
    if task_identifiers_to_keep is not None:
        if isinstance(task_identifiers_to_keep, str):
            raise ConfigurationError(
                "task_identifiers_to_keep must be a list of str, not the str "
                f"{task_identifiers_to_keep!r}"
            )
        keep = list(task_identifiers_to_keep)
        for identifier in keep:
            if not isinstance(identifier, str):
                raise ConfigurationError(
                    "task_identifiers_to_keep must hold str, not "
                    f"{type(identifier).__name__} ({identifier!r})"
                )
    if tasks is None:
        chosen = {CleanupTask.GC_JOB_QUEUES}
        if task_identifiers_to_keep is not None:
            chosen.add(CleanupTask.GC_TASK_IDENTIFIERS)
        return frozenset(chosen), keep
    if isinstance(tasks, str):
        tasks = [tasks]
    names = {task.value for task in CleanupTask}
    chosen = set()
    for task in tasks:
        if task not in names:
            allowed = ", ".join(repr(name) for name in names)
            raise ConfigurationError(f"unknown cleanup task {task!r}; choose from {allowed}")
        chosen.add(CleanupTask(task))
    return frozenset(chosen), keep


def cleanup(
    schema: str,
    tasks: Iterable[CleanupTask | str] | None = None,
    task_identifiers_to_keep: Iterable[str] | None = None,
) -> Operation[dict[CleanupTask, int]]:
    """Run the chosen cleanup tasks; returns how many rows each one deleted."""
    chosen, keep = cleanup_tasks(tasks, task_identifiers_to_keep)
    deleted: dict[CleanupTask, int] = {}
    for task in CLEANUP_ORDER:
        if task in chosen:
            params = {"keep": keep} if task is CleanupTask.GC_TASK_IDENTIFIERS else {}
            deleted[task] = yield Statement("execute", render(_SQL[task], schema), params)
    return deleted
