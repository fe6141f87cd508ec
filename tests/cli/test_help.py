"""Every command documents itself, in-process and through the real entry points."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CliCall, run_subprocess

COMMANDS = (
    "run",
    "migrate",
    "add",
    "cleanup",
    "demo",
    "workers",
    "sweep",
    "jobs",
    "stats",
    "queues",
    "force-unlock",
    "alembic",
    "admin",
    "grant",
)


def test_group_help_lists_every_command(cli: CliCall) -> None:
    output = cli("--help").stdout
    for command in COMMANDS:
        assert f"  {command} " in output


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(cli: CliCall, command: str) -> None:
    result = cli(command, "--help")
    assert result.stdout.startswith(f"Usage: graphile-worker {command} ")
    assert "-h, --help" in result.stdout


def test_run_flags_mirror_node(cli: CliCall) -> None:
    """Node's names for the flags both CLIs have, with Node's defaults and units."""
    output = cli("run", "--help").stdout
    for flag in (
        "-c, --connection",
        "-s, --schema",
        "--once",
        "-j, --jobs, --concurrency",
        "-m, --max-pool-size",
        "--poll-interval MS",
        "--no-prepared-statements",
        "--tasks MODULE_OR_FILE",
        "--driver",
    ):
        assert flag in output
    assert "default: 2000" in output
    assert "GRAPHILE_WORKER_SCHEMA" in output


def test_version(cli: CliCall) -> None:
    assert cli("--version").stdout.startswith("graphile-worker, version ")


def test_python_dash_m_entry_point() -> None:
    completed = run_subprocess("--help")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("Usage: graphile-worker ")


def test_console_script() -> None:
    # Next to the interpreter in a virtual environment; elsewhere on PATH.
    beside = Path(sys.executable).with_name("graphile-worker")
    executable = str(beside) if beside.exists() else shutil.which("graphile-worker")
    if executable is None:
        pytest.skip("the graphile-worker console script is not installed in this environment")
    completed = subprocess.run(
        [executable, "add", "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert "Usage: graphile-worker add" in completed.stdout


def test_unknown_command_is_a_usage_error(cli: CliCall) -> None:
    result = cli("frobnicate", expect=2)
    assert "No such command 'frobnicate'" in result.stderr
