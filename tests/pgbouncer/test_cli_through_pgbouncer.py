"""``graphile-worker`` through PgBouncer in transaction mode.

``-c`` names PgBouncer; ``run`` adds ``--no-prepared-statements`` and sends its ``LISTEN``
straight to PostgreSQL with ``--listen-connection``, as the README says. The one-shot
commands (``migrate``, ``add``, ``cron list``, ``cleanup``) need no flag: they never prepare
statements, so separate processes cannot trip over each other's statement names on the
server connections PgBouncer shares out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..cli.conftest import CliCall, run_subprocess
from ..cli.test_run import TASKS_SOURCE
from ..conftest import RUNTIME_DRIVER_PAIRS

if TYPE_CHECKING:
    from tests._servers import PgBouncer

PAIRS = pytest.mark.parametrize(
    ("runtime", "driver"),
    RUNTIME_DRIVER_PAIRS,
    ids=[f"{runtime}-{driver}" for runtime, driver in RUNTIME_DRIVER_PAIRS],
)


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    # In-process imports are cached for the session: every test needs a module of its own.
    path = tmp_path / f"pooled_tasks_{uuid.uuid4().hex[:8]}.py"
    path.write_text(TASKS_SOURCE)
    return path


def _write_payload(output: Path, text: str) -> str:
    return json.dumps({"path": str(output), "text": text})


def test_one_shot_commands_in_separate_processes(
    pgbouncer: PgBouncer, empty_database_url: str
) -> None:
    # asyncpg (what --driver auto picks) numbers its prepared statements from 1 in every
    # process; two processes preparing on one pooled server connection would collide.
    url = pgbouncer.url(empty_database_url)
    steps = [
        ("migrate", "-c", url),
        ("migrate", "-c", url),
        ("add", "pooled_one", "-c", url),
        ("add", "pooled_two", "-c", url),
        ("cron", "list", "-c", url),
        ("cleanup", "-c", url),
    ]
    outputs = []
    for step in steps:
        completed = run_subprocess(*step)
        assert completed.returncode == 0, (step, completed.stdout, completed.stderr)
        outputs.append(completed.stdout)
    assert "applied 20 migrations" in outputs[0]
    assert "already up to date" in outputs[1]
    assert [outputs[2].strip(), outputs[3].strip()] == ["1", "2"]


@PAIRS
def test_migrate_add_and_run_once(
    cli: CliCall,
    runtime: str,
    driver: str,
    pgbouncer: PgBouncer,
    empty_database_url: str,
    tasks_file: Path,
    tmp_path: Path,
) -> None:
    url = pgbouncer.url(empty_database_url)
    output = tmp_path / "out.txt"
    cli("migrate", "-c", url, "--driver", driver)
    for number in range(3):
        cli("add", "cli_write", _write_payload(output, str(number)), "-c", url, "--driver", driver)
    ran = cli(
        "run", "--once", "--tasks", str(tasks_file), "-c", url, "--no-prepared-statements",
        "--listen-connection", empty_database_url, "--jobs", "3",
        "--driver", driver, "--runtime", runtime,
    )  # fmt: skip
    assert "Ran 3 job(s): 3 completed" in ran.stdout
    assert sorted(output.read_text().split()) == ["0", "1", "2"]


@PAIRS
def test_a_running_worker_is_woken_through_its_listen_connection(
    cli: CliCall,
    runtime: str,
    driver: str,
    pgbouncer: PgBouncer,
    pgbouncer_url: str,
    database_url: str,
    tasks_file: Path,
    tmp_path: Path,
) -> None:
    output, log = tmp_path / "out.txt", tmp_path / "stderr.txt"
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "graphile_worker.cli", "run", "--tasks", str(tasks_file),
             "-c", pgbouncer_url, "--no-prepared-statements", "--listen-connection", database_url,
             "--runtime", runtime, "--driver", driver, "--poll-interval", "600000"],
            stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL, env=environment,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "connected and looking for jobs" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        # Added through PgBouncer; with a ten-minute poll only the NOTIFY, which reaches the
        # worker on its direct connection, can start the job now.
        cli("add", "cli_write", _write_payload(output, "woken"), "-c", pgbouncer_url)
        while not (output.exists() and output.read_text()):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the notification never woke the worker"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert output.read_text() == "woken\n"
