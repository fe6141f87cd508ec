"""Helpers for the command-line tests: run ``graphile-worker`` in-process or as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from click.testing import CliRunner, Result

from graphile_worker.cli import main

UNREACHABLE_URL = "postgresql://postgres:secret@127.0.0.1:1/nowhere"
"""Port 1 is never a PostgreSQL server: connecting fails at once with "connection refused"."""


@pytest.fixture(autouse=True)
def _isolated_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo what loading task modules adds to ``sys.path`` (the working directory and the
    directories of task files), so one test's modules never shadow another's."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def _describe(result: Result) -> str:
    return f"exit code {result.exit_code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


CliCall = Callable[..., Result]


@pytest.fixture
def cli() -> CliCall:
    """Invoke the CLI in-process: ``cli("add", "task", expect=0)``.

    ``DATABASE_URL`` and ``GRAPHILE_WORKER_SCHEMA`` are removed from the environment unless
    ``env`` sets them, so a test always says which database it means. A non-zero exit that
    was not expected fails with the command's output; an unexpected exception (a bug, not
    an error the CLI reports) is re-raised with its traceback.
    """

    def invoke(
        *args: str,
        expect: int = 0,
        env: Mapping[str, str | None] | None = None,
        input: str | None = None,
    ) -> Result:
        environment: dict[str, str | None] = {
            "DATABASE_URL": None,
            "GRAPHILE_WORKER_SCHEMA": None,
            "GRAPHILE_WORKER_LOG_LEVEL": None,
        }
        environment.update(env or {})
        result = CliRunner().invoke(main, list(args), env=environment, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == expect, _describe(result)
        return result

    return invoke


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """The CLI's error contract: exit status 1 and one ``Error:`` line, no traceback."""
    assert result.exit_code == 1, _describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, _describe(result)
    assert lines[0].startswith("Error: "), _describe(result)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], _describe(result)


def run_subprocess(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m graphile_worker.cli ARGS`` to completion, capturing its output."""
    environment = {**os.environ, **(env or {})}
    environment.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "graphile_worker.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
        **kwargs,
    )
