"""``graphile-worker cleanup``: Node's task names, mapped onto ``WorkerUtils.cleanup``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .conftest import CliCall, assert_one_line_error


@pytest.fixture
def litter(sync_connection: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """A database with one of everything cleanup can remove, and a live job it must keep.

    * task ``gone`` and queue ``old_queue``: their only job was deleted;
    * task ``kept``: no job either, but named by ``--keep`` in the tests;
    * a permanently failed job of task ``broken``;
    * a waiting job of task ``live`` in queue ``live_queue``.
    """
    execute = sync_connection.execute
    for identifier, queue in [("gone", "old_queue"), ("kept", None), ("broken", None)]:
        execute("select graphile_worker.add_job(%s, queue_name => %s)", (identifier, queue))
    execute("select graphile_worker.add_job('live', queue_name => 'live_queue')")
    execute(
        "delete from graphile_worker._private_jobs where task_id in (select id from "
        "graphile_worker._private_tasks where identifier in ('gone', 'kept'))"
    )
    execute(
        "update graphile_worker._private_jobs set attempts = max_attempts, last_error = 'x' "
        "where task_id = (select id from graphile_worker._private_tasks where identifier = 'broken')"
    )
    return sync_connection


def _state(connection: psycopg.Connection[Any]) -> tuple[list[str], list[str], int]:
    tasks = connection.execute(
        "select identifier from graphile_worker._private_tasks order by 1"
    ).fetchall()
    queues = connection.execute(
        "select queue_name from graphile_worker._private_job_queues order by 1"
    ).fetchall()
    jobs = connection.execute("select count(*) from graphile_worker._private_jobs").fetchone()
    assert jobs is not None
    return [row[0] for row in tasks], [row[0] for row in queues], jobs[0]


def test_all_three_tasks(cli: CliCall, database_url: str, litter: psycopg.Connection[Any]) -> None:
    assert _state(litter) == (["broken", "gone", "kept", "live"], ["live_queue", "old_queue"], 2)
    # Node's CLI takes a comma-separated list; separate words and lower case work too.
    result = cli(
        "cleanup", "DELETE_PERMAFAILED_JOBS,gc_task_identifiers", "GC_JOB_QUEUES",
        "--keep", "kept", "-c", database_url,
    )  # fmt: skip
    assert result.stdout.splitlines() == [
        "DELETE_PERMAFAILED_JOBS: deleted 1 permanently failed job",
        "GC_TASK_IDENTIFIERS: deleted 2 unused task identifiers",
        "GC_JOB_QUEUES: deleted 1 unused job queue",
    ]
    assert _state(litter) == (["kept", "live"], ["live_queue"], 1)


def test_default_is_gc_job_queues(
    cli: CliCall, database_url: str, litter: psycopg.Connection[Any]
) -> None:
    result = cli("cleanup", "-c", database_url)
    assert result.stdout.splitlines() == ["GC_JOB_QUEUES: deleted 1 unused job queue"]
    assert _state(litter) == (["broken", "gone", "kept", "live"], ["live_queue"], 2)


def test_keep_alone_adds_gc_task_identifiers(
    cli: CliCall, database_url: str, litter: psycopg.Connection[Any]
) -> None:
    result = cli("cleanup", "--keep", "kept", "--keep", "gone", "-c", database_url)
    assert result.stdout.splitlines() == [
        "GC_TASK_IDENTIFIERS: deleted 0 unused task identifiers",
        "GC_JOB_QUEUES: deleted 1 unused job queue",
    ]


def test_unknown_task_is_one_line(
    cli: CliCall, database_url: str, litter: psycopg.Connection[Any]
) -> None:
    result = cli("cleanup", "GC_JOB_QUEUES,VACUUM_EVERYTHING", "-c", database_url, expect=1)
    assert_one_line_error(result, "'VACUUM_EVERYTHING'", "GC_TASK_IDENTIFIERS")
    assert _state(litter)[2] == 2


def test_tasks_option_keeps_the_identifiers_it_defines(
    cli: CliCall, database_url: str, litter: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """As Node's CLI keeps the identifiers of its task directory."""
    tasks_file = tmp_path / f"cleanup_tasks_{uuid.uuid4().hex[:8]}.py"
    tasks_file.write_text(
        "from graphile_worker.task import task\n\n"
        "@task('gone')\n"
        "async def gone(payload):\n"
        "    pass\n"
    )
    result = cli("cleanup", "GC_TASK_IDENTIFIERS", "--tasks", str(tasks_file), "-c", database_url)
    assert result.stdout.splitlines() == ["GC_TASK_IDENTIFIERS: deleted 1 unused task identifier"]
    assert _state(litter)[0] == ["broken", "gone", "live"]
