"""``graphile-worker run`` flags for throughput: the local queue, batched outcomes, --quiet."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .conftest import CliCall

TASKS_SOURCE = textwrap.dedent(
    """
    import asyncio
    from pathlib import Path

    from graphile_worker.task import task


    @task("loop_probe")
    async def loop_probe(payload):
        loop = type(asyncio.get_running_loop())
        Path(payload["out"]).write_text(f"{loop.__module__}.{loop.__qualname__}")


    @task("flags_ok")
    async def ok(payload):
        pass


    @task("flags_fail")
    async def fail(payload):
        raise RuntimeError("deliberate failure")
    """
)


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    path = tmp_path / f"flags_tasks_{uuid.uuid4().hex[:8]}.py"
    path.write_text(TASKS_SOURCE)
    return path


def _add(connection: psycopg.Connection[Any], ok: int, fail: int) -> None:
    connection.execute(
        "select graphile_worker.add_job('flags_ok', json_build_object('n', n)) "
        "from generate_series(1, %s) as n",
        (ok,),
    )
    connection.execute(
        "select graphile_worker.add_job('flags_fail', max_attempts => 1) "
        "from generate_series(1, %s)",
        (fail,),
    )


def _left(connection: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return connection.execute(
        "select attempts, last_error, locked_by from graphile_worker._private_jobs"
    ).fetchall()


@pytest.mark.parametrize(
    "runtime_flags",
    [
        ["--driver", "asyncpg"],
        ["--driver", "psycopg"],
        ["--runtime", "trio", "--driver", "psycopg-threaded"],
        ["--runtime", "uvloop", "--driver", "asyncpg"],
        ["--runtime", "uvloop", "--driver", "psycopg"],
    ],
)
def test_local_queue_and_batches_drain_the_queue(
    cli: CliCall,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    tasks_file: Path,
    runtime_flags: list[str],
) -> None:
    _add(sync_connection, ok=40, fail=2)
    result = cli(
        "run",
        "--once",
        "--tasks",
        str(tasks_file),
        "-c",
        database_url,
        "-j",
        "4",
        "--local-queue-size",
        "10",
        "--complete-job-batch-delay",
        "0",
        "--fail-job-batch-delay",
        "5",
        *runtime_flags,
        expect=1,  # two jobs failed permanently
    )
    assert "Ran 42 job(s): 40 completed, 2 failed (2 permanently), 0 interrupted" in result.stdout
    assert _left(sync_connection) == [(1, "deliberate failure", None)] * 2


def test_quiet_hides_the_line_per_completed_job_only(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any], tasks_file: Path
) -> None:
    _add(sync_connection, ok=3, fail=1)
    result = cli(
        "run", "--once", "--quiet", "--tasks", str(tasks_file), "-c", database_url, expect=1
    )
    assert "Ran 4 job(s)" in result.stdout
    assert "Completed task" not in result.stderr
    assert "Failed task" in result.stderr  # failures are still reported
    assert "looking for jobs" in result.stderr  # and so is the worker's own life


def test_without_quiet_each_completed_job_is_logged(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any], tasks_file: Path
) -> None:
    _add(sync_connection, ok=3, fail=0)
    result = cli("run", "--once", "--tasks", str(tasks_file), "-c", database_url)
    assert result.stderr.count("Completed task") == 3


@pytest.mark.parametrize(
    "flags",
    [
        ["--local-queue-ttl", "1000"],
        ["--local-queue-refetch-delay", "100"],
        ["--local-queue-refetch-threshold", "3"],
    ],
)
def test_local_queue_settings_need_a_local_queue(
    cli: CliCall, database_url: str, tasks_file: Path, flags: list[str]
) -> None:
    result = cli("run", "--once", "--tasks", str(tasks_file), "-c", database_url, *flags, expect=2)
    assert f"{flags[0]} needs --local-queue-size" in result.stderr


def test_a_refetch_delay_longer_than_the_poll_interval_is_refused(
    cli: CliCall, database_url: str, tasks_file: Path
) -> None:
    result = cli(
        "run",
        "--once",
        "--tasks",
        str(tasks_file),
        "-c",
        database_url,
        "--local-queue-size",
        "10",
        "--local-queue-refetch-delay",
        "3000",
        "--poll-interval",
        "2000",
        expect=2,
    )
    assert (
        "--local-queue-refetch-delay (3000 ms) must not be longer than --poll-interval (2000 ms)"
        in result.stderr
    )


@pytest.mark.parametrize(("runtime", "expected"), [("uvloop", "uvloop."), ("asyncio", "asyncio.")])
def test_the_uvloop_runtime_runs_jobs_on_uvloops_event_loop(
    cli: CliCall,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    tasks_file: Path,
    tmp_path: Path,
    runtime: str,
    expected: str,
) -> None:
    pytest.importorskip("uvloop")
    out = tmp_path / "loop.txt"
    sync_connection.execute(
        "select graphile_worker.add_job('loop_probe', json_build_object('out', %s::text))",
        (str(out),),
    )
    result = cli(
        "run", "--once", "--tasks", str(tasks_file), "-c", database_url, "--runtime", runtime
    )
    assert "Ran 1 job(s): 1 completed" in result.stdout
    assert out.read_text().startswith(expected)


def test_the_uvloop_runtime_without_uvloop_is_refused_with_the_fix(
    cli: CliCall, database_url: str, tasks_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def without_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "uvloop" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_uvloop)
    result = cli(
        "run",
        "--once",
        "--tasks",
        str(tasks_file),
        "-c",
        database_url,
        "--runtime",
        "uvloop",
        expect=2,
    )
    assert "--runtime uvloop needs the uvloop package: pip install uvloop" in result.stderr
