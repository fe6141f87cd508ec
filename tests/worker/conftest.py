"""Helpers for the worker tests: options with test-friendly defaults, and reading the table.

What a worker did is always checked by reading ``_private_jobs`` over a separate sync
psycopg connection (the ``sync_connection`` fixture), never through the code under test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from psycopg.rows import dict_row

from graphile_worker.utils import WorkerUtils
from graphile_worker.worker import WorkerOptions

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver


def options(driver: DatabaseDriver | str, tasks: list[object], **overrides: Any) -> WorkerOptions:
    """Options for an in-process test: no signal handlers, no migration (the test database
    is migrated already), a poll interval long enough that a test passing quickly proves
    the wake-up came from somewhere else."""
    settings: dict[str, Any] = {
        "tasks": tasks,
        "driver": driver,
        "install_signal_handlers": False,
        "migrate": False,
        "poll_interval": 10.0,
        "shutdown_grace_period": 5.0,
    }
    settings.update(overrides)
    return WorkerOptions(**settings)


def job_rows(connection: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every job, with its task identifier and queue name, in id order."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            """
            select jobs.*, tasks.identifier as task_identifier, queues.queue_name,
              queues.locked_by as queue_locked_by
            from graphile_worker._private_jobs as jobs
            join graphile_worker._private_tasks as tasks on tasks.id = jobs.task_id
            left join graphile_worker._private_job_queues as queues
              on queues.id = jobs.job_queue_id
            order by jobs.id
            """
        )
        return cursor.fetchall()


def job_row(connection: psycopg.Connection[Any], job_id: int) -> dict[str, Any] | None:
    """One job by id, or ``None`` once it has been deleted."""
    for row in job_rows(connection):
        if row["id"] == job_id:
            return row
    return None


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until ``check()`` is true, failing after ``within`` seconds."""
    with anyio.fail_after(within):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.01)


@pytest.fixture
def utils(driver: DatabaseDriver) -> WorkerUtils:
    """WorkerUtils on the test's driver, to queue jobs."""
    return WorkerUtils(driver)
