"""``graphile-worker run --metrics-port``: /metrics and /healthz from a real worker process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ..test_prometheus import _get as get
from .conftest import CliCall

TASKS_SOURCE = textwrap.dedent(
    """
    from graphile_worker.task import task


    @task("metrics_ok")
    async def succeed(payload):
        return None


    @task("metrics_fail")
    async def fail(payload):
        raise RuntimeError("deliberate failure")
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _sample(text: str, line_start: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rpartition(" ")[2])
    return None


def test_serves_metrics_and_health_while_running(
    database_url: str, sync_connection: psycopg.Connection[Any], tmp_path: Path
) -> None:
    tasks_file = tmp_path / "metrics_tasks.py"
    tasks_file.write_text(TASKS_SOURCE)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    process = subprocess.Popen(
        [sys.executable, "-m", "graphile_worker.cli", "run", "--tasks", str(tasks_file),
         "-c", database_url, "--poll-interval", "200", "--metrics-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        status = 0
        while status != 200:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "/healthz never said the worker was up"
            try:
                status, body = get(f"{base}/healthz")
            except OSError:  # not listening yet
                status = 0
            time.sleep(0.05)
        assert json.loads(body)["status"] == "ok"
        sync_connection.execute("select graphile_worker.add_job('metrics_ok', '{}')")
        sync_connection.execute("select graphile_worker.add_job('metrics_ok', '{}')")
        sync_connection.execute(
            "select graphile_worker.add_job('metrics_fail', '{}', max_attempts => 1)"
        )
        completed = 'graphile_worker_jobs_completed_total{task="metrics_ok"}'
        failed = 'graphile_worker_jobs_permanently_failed_total{task="metrics_fail"}'
        while True:
            status, text = get(f"{base}/metrics")
            assert status == 200
            if _sample(text, completed) == 2 and _sample(text, failed) == 1:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        assert _sample(text, 'graphile_worker_jobs_failed_total{task="metrics_fail"}') == 1
        count = 'graphile_worker_job_run_seconds_count{outcome="completed",task="metrics_ok"}'
        assert _sample(text, count) == 2
        assert "python_info{" in text, "the command's registry has the platform collector"
        # Depth was read from the database at scrape time, without an error.
        assert _sample(text, "graphile_worker_depth_age_seconds") is not None
        assert _sample(text, "graphile_worker_depth_errors_total") == 0
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "could not read queue depth" not in stderr
    assert "serving metrics on http://127.0.0.1:" in stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--metrics-host", "0.0.0.0"], "--metrics-host needs --metrics-port"),
        (["--health-max-outage", "5"], "--health-max-outage needs --metrics-port"),
        (["--metrics-port", "9100", "--processes", "2"], "cannot be combined with --processes"),
    ],
)
def test_metrics_options_that_cannot_work_are_usage_errors(
    cli: CliCall, arguments: list[str], message: str
) -> None:
    result = cli("run", "-c", "postgresql://localhost/unused", *arguments, expect=2)
    assert message in result.stderr


def test_a_port_in_use_is_a_usage_error(cli: CliCall, database_url: str, tmp_path: Path) -> None:
    tasks_file = tmp_path / "metrics_tasks_busy.py"
    tasks_file.write_text(TASKS_SOURCE)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(
            "run", "--once", "--tasks", str(tasks_file), "-c", database_url,
            "--metrics-port", str(port), expect=2,
        )  # fmt: skip
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
