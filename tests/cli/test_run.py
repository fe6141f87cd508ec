"""``graphile-worker run``: finds tasks, runs jobs, stops on signals, reports errors in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .conftest import UNREACHABLE_URL, CliCall, assert_one_line_error, run_subprocess

TASKS_SOURCE = textwrap.dedent(
    """
    from typing import Any

    from graphile_worker.task import task


    @task("cli_write")
    def write(payload: dict[str, Any]) -> None:
        with open(payload["path"], "a") as file:
            file.write(payload["text"] + "\\n")


    @task("cli_fail")
    async def fail(payload: dict[str, Any]) -> None:
        raise RuntimeError("deliberate failure")


    @task("cli_typed")
    async def typed(payload: list[int]) -> None:
        pass
    """
)


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    # A file is imported under its own name and in-process imports are cached for the whole
    # session, so every test gets a module name of its own.
    path = tmp_path / f"cli_tasks_{uuid.uuid4().hex[:8]}.py"
    path.write_text(TASKS_SOURCE)
    return path


def _add_write(connection: psycopg.Connection[Any], output: Path, text: str) -> None:
    connection.execute(
        "select graphile_worker.add_job('cli_write', json_build_object('path', %s::text, "
        "'text', %s::text))",
        (str(output), text),
    )


def _jobs(connection: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return connection.execute(
        "select task.identifier, job.attempts, job.last_error "
        "from graphile_worker._private_jobs as job "
        "join graphile_worker._private_tasks as task on task.id = job.task_id order by job.id"
    ).fetchall()


def test_once_runs_jobs_from_a_file(
    cli: CliCall,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    tasks_file: Path,
    tmp_path: Path,
) -> None:
    output = tmp_path / "out.txt"
    _add_write(sync_connection, output, "first")
    _add_write(sync_connection, output, "second")
    sync_connection.execute("select graphile_worker.add_job('cli_fail')")
    sync_connection.execute("select graphile_worker.add_job('not_ours')")

    result = cli("run", "--once", "--tasks", str(tasks_file), "-c", database_url)

    assert "Ran 3 job(s): 2 completed, 1 failed (0 permanently), 0 interrupted" in result.stdout
    assert sorted(output.read_text().splitlines()) == ["first", "second"]
    [failed, unknown] = _jobs(sync_connection)
    assert failed[:2] == ("cli_fail", 1)
    assert "deliberate failure" in failed[2]
    # A task this worker does not know is left alone for other workers.
    assert unknown == ("not_ours", 0, None)


def test_every_node_flag_and_the_trio_runtime(
    cli: CliCall, empty_database_url: str, tasks_file: Path, tmp_path: Path
) -> None:
    cli("migrate", "-c", empty_database_url, "-s", "flag_jobs")
    output = tmp_path / "out.txt"
    for number in range(6):
        payload = f'{{"path": "{output}", "text": "{number}"}}'
        cli("add", "cli_write", payload, "-c", empty_database_url, "-s", "flag_jobs")
    result = cli(
        "run", "--once", "--tasks", str(tasks_file), "-c", empty_database_url,
        "-s", "flag_jobs", "--jobs", "3", "-m", "4", "--poll-interval", "100",
        "--no-prepared-statements", "--driver", "psycopg-threaded", "--runtime", "trio",
    )  # fmt: skip
    assert "6 completed" in result.stdout
    assert sorted(output.read_text().split()) == [str(number) for number in range(6)]


@pytest.mark.parametrize("retry", [False, True])
def test_undecodable_payloads_fail_for_good_unless_retried(
    cli: CliCall,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    tasks_file: Path,
    retry: bool,
) -> None:
    sync_connection.execute("select graphile_worker.add_job('cli_typed', '{\"not\": 1}')")
    flags = ["--retry-undecodable-payloads"] if retry else []

    result = cli(
        "run", "--once", *flags, "--tasks", str(tasks_file), "-c", database_url, expect=1 - retry
    )

    (row,) = sync_connection.execute(
        "select attempts, max_attempts from graphile_worker._private_jobs"
    ).fetchall()
    if retry:
        assert "1 failed (0 permanently)" in result.stdout
        assert row == (1, 25)
    else:
        assert "1 job(s) failed permanently" in result.stderr
        assert row == (25, 25)


def test_dotted_module_name_from_the_working_directory(
    cli: CliCall,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A unique name: an in-process import is cached for the rest of the session.
    module = f"cli_tasks_{uuid.uuid4().hex[:8]}"
    package = tmp_path / module
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(TASKS_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", ".")])
    output = tmp_path / "out.txt"
    _add_write(sync_connection, output, "dotted")
    cli("run", "--once", "--tasks", f"{module}.jobs", "-c", database_url)
    assert output.read_text() == "dotted\n"


def test_unknown_module_is_one_line(cli: CliCall, database_url: str) -> None:
    result = cli(
        "run", "--once", "--tasks", "no_such_module_anywhere", "-c", database_url, expect=1
    )
    assert_one_line_error(result, "no_such_module_anywhere")


def test_missing_file_is_one_line(cli: CliCall, database_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    result = cli("run", "--once", "--tasks", str(missing), "-c", database_url, expect=1)
    assert_one_line_error(result, "nope.py")


def test_module_without_tasks_is_one_line(cli: CliCall, database_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty_tasks.py"
    empty.write_text("VALUE = 1\n")
    result = cli("run", "--once", "--tasks", str(empty), "-c", database_url, expect=1)
    assert_one_line_error(result, "empty_tasks")


def test_no_tasks_anywhere_is_one_line(
    cli: CliCall, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("run", "--once", "-c", database_url, expect=1)
    assert_one_line_error(result, "no --tasks given and no tasks.py")


def test_bad_option_values_are_usage_errors(cli: CliCall, tasks_file: Path) -> None:
    result = cli("run", "--tasks", str(tasks_file), "--jobs", "0", expect=2)
    assert "0 is not in the range x>=1" in result.stderr


class TestSubprocess:
    """The real thing: ``python -m graphile_worker.cli`` in its own process."""

    def test_default_tasks_module_in_working_directory(
        self, database_url: str, sync_connection: psycopg.Connection[Any], tmp_path: Path
    ) -> None:
        (tmp_path / "tasks.py").write_text(TASKS_SOURCE)
        output = tmp_path / "out.txt"
        _add_write(sync_connection, output, "found by default")
        completed = run_subprocess("run", "--once", "-c", database_url, cwd=tmp_path)
        assert completed.returncode == 0, completed.stderr
        assert output.read_text() == "found by default\n"
        assert "1 completed" in completed.stdout

    def test_runs_until_sigterm_then_exits_cleanly(
        self,
        database_url: str,
        sync_connection: psycopg.Connection[Any],
        tasks_file: Path,
        tmp_path: Path,
    ) -> None:
        output = tmp_path / "out.txt"
        environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
        process = subprocess.Popen(
            [sys.executable, "-m", "graphile_worker.cli", "run", "--tasks", str(tasks_file),
             "-c", database_url, "--poll-interval", "200"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )  # fmt: skip
        try:
            _add_write(sync_connection, output, "while running")
            deadline = time.monotonic() + 30
            while not (output.exists() and output.read_text()):
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the running worker never ran the job"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert output.read_text() == "while running\n"
        assert _jobs(sync_connection) == []

    def test_unreachable_database_is_one_line(self, tasks_file: Path) -> None:
        completed = run_subprocess("run", "--tasks", str(tasks_file), "-c", UNREACHABLE_URL)
        assert completed.returncode == 1
        assert "Traceback" not in completed.stderr
        errors = [line for line in completed.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, completed.stderr
        assert "PostgreSQL at 127.0.0.1:1 (database 'nowhere')" in errors[0]


def test_json_log_format_writes_one_object_per_record_with_the_jobs_fields(
    cli: CliCall,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    tasks_file: Path,
    tmp_path: Path,
) -> None:
    import json

    output = tmp_path / "out.txt"
    _add_write(sync_connection, output, "first")
    sync_connection.execute("select graphile_worker.add_job('cli_fail', queue_name => 'q1')")

    # After the command, as people type it (before it works too, as for --log-level).
    result = cli(
        "run", "--once", "--tasks", str(tasks_file), "-c", database_url, "--log-format", "json"
    )  # fmt: skip

    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    [done] = [r for r in records if r["message"].startswith("Completed task")]
    [failed] = [r for r in records if r["message"].startswith("Failed task")]
    assert (done["level"], done["task_identifier"], done["attempt"]) == ("info", "cli_write", 1)
    assert (failed["level"], failed["task_identifier"], failed["queue_name"]) == (
        "error",
        "cli_fail",
        "q1",
    )
    assert done["worker_id"] == failed["worker_id"]
    assert done["worker_id"].startswith("graphile_worker_")
    assert isinstance(done["duration_ms"], float)
    # The traceback stays inside the one line, as a field.
    assert "RuntimeError: deliberate failure" in failed["exception"]
