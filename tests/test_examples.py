"""Every script in ``examples/`` runs against a real database and does what it says.

Each example is run as its own process, exactly as a reader would run it
(``DATABASE_URL=... python examples/x.py``), and its effect is then checked in the database:
the jobs it queued are gone (completed, not failed) and whatever its handlers write is there.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, database_url: str) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` to completion and fail with its output if it fails."""
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, (
        f"{name} exited with {completed.returncode}\n--- stdout\n{completed.stdout}\n"
        f"--- stderr\n{completed.stderr}"
    )
    return completed


def _jobs_left(connection: psycopg.Connection[Any], prefix: str) -> list[tuple[Any, ...]]:
    """Jobs of the example's tasks still in the table, with their last error."""
    return connection.execute(
        "select task.identifier, job.attempts, job.last_error "
        "from graphile_worker._private_jobs as job "
        "join graphile_worker._private_tasks as task on task.id = job.task_id "
        "where task.identifier like %s",
        (prefix + "%",),
    ).fetchall()


def _known_tasks(connection: psycopg.Connection[Any], prefix: str) -> set[str]:
    rows = connection.execute(
        "select identifier from graphile_worker._private_tasks where identifier like %s",
        (prefix + "%",),
    ).fetchall()
    return {row[0] for row in rows}


def test_every_example_is_tested() -> None:
    tested = {
        "quickstart.py",
        "fastapi_app.py",
        "trio_worker.py",
        "sync_handlers.py",
        "test_tasks_example.py",
    }
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def test_quickstart(database_url: str, sync_connection: psycopg.Connection[Any]) -> None:
    output = run_example("quickstart.py", database_url).stdout
    assert "Hello, world!" in output
    assert "Sending a welcome email to ada@example.com (attempt 1)" in output
    assert "Completed 2 jobs, 0 failed." in output
    assert _known_tasks(sync_connection, "quickstart_") == {
        "quickstart_hello",
        "quickstart_send_welcome",
    }
    assert _jobs_left(sync_connection, "quickstart_") == []


def test_quickstart_installs_the_schema(empty_database_url: str) -> None:
    run_example("quickstart.py", empty_database_url)
    with psycopg.connect(empty_database_url) as connection:
        assert _jobs_left(connection, "quickstart_") == []
        assert len(_known_tasks(connection, "quickstart_")) == 2


def test_sync_handlers(database_url: str, sync_connection: psycopg.Connection[Any]) -> None:
    output = run_example("sync_handlers.py", database_url).stdout
    assert "Built 6 reports in worker threads." in output
    rows = sync_connection.execute("select customer, thread from sync_example_reports").fetchall()
    assert sorted(customer for customer, _ in rows) == [
        "acme",
        "globex",
        "hooli",
        "initech",
        "stark",
        "umbrella",
    ]
    # Plain def handlers ran in worker threads, never on the event loop's thread.
    assert all(thread != "MainThread" for _, thread in rows)
    assert _jobs_left(sync_connection, "sync_example_") == []


def test_trio_worker(database_url: str, sync_connection: psycopg.Connection[Any]) -> None:
    output = run_example("trio_worker.py", database_url).stdout
    assert output.splitlines() == ["3...", "2...", "1...", "Liftoff!", "Completed 4 jobs on trio."]
    steps = sync_connection.execute("select remaining from trio_example_steps").fetchall()
    assert sorted(row[0] for row in steps) == [0, 1, 2, 3]
    assert _jobs_left(sync_connection, "trio_example_") == []


def test_fastapi_app(database_url: str, sync_connection: psycopg.Connection[Any]) -> None:
    missing = [name for name in ("starlette", "httpx") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the Starlette example needs {' and '.join(missing)} (pip install them)")
    output = run_example("fastapi_app.py", database_url).stdout
    assert "signed up and was welcomed by the worker" in output
    users = sync_connection.execute(
        "select email, welcomed_at is not null from app_users"
    ).fetchall()
    assert users == [("ada@example.com", True)]
    assert _jobs_left(sync_connection, "app_") == []


def test_tasks_example(database_url: str, sync_connection: psycopg.Connection[Any]) -> None:
    """The example test suite passes, run with pytest as a reader would run it."""
    completed = subprocess.run(
        # -p names the plugin for source trees whose installed metadata predates its entry
        # point; where the entry point is installed, naming it again changes nothing.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + ["-p", "graphile_worker.testing", str(EXAMPLES / "test_tasks_example.py")],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"{completed.stdout}\n{completed.stderr}"
    assert "7 passed" in completed.stdout
    # Its jobs went to databases of its own, created next to this one and dropped again.
    assert _known_tasks(sync_connection, "quickstart_") == set()
