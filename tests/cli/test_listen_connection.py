"""``graphile-worker run --listen-connection URL``: LISTEN on its own URL, everything else on -c.

Behind PgBouncer in transaction mode ``-c`` points at the pooler and ``--listen-connection``
straight at PostgreSQL. Here both point at the test's database and differ only in
``application_name``, which ``pg_stat_activity`` shows next to each backend's last query.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ..conftest import RUNTIME_DRIVER_PAIRS
from .test_run import TASKS_SOURCE


def _with_application_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def _backends(connection: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    rows = connection.execute(
        "select application_name, query from pg_stat_activity "
        "where datname = current_database() and pid <> pg_backend_pid() "
        "and application_name like 'gw_%'"
    ).fetchall()
    return [(str(name), str(query)) for name, query in rows]


@pytest.mark.parametrize(
    ("runtime", "driver"),
    RUNTIME_DRIVER_PAIRS,
    ids=[f"{runtime}-{driver}" for runtime, driver in RUNTIME_DRIVER_PAIRS],
)
def test_listen_connection_carries_only_the_listen(
    runtime: str,
    driver: str,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    tasks = tmp_path / "listen_tasks.py"
    tasks.write_text(TASKS_SOURCE)
    output, log = tmp_path / "out.txt", tmp_path / "stderr.txt"
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "graphile_worker.cli", "run", "--tasks", str(tasks),
             "-c", _with_application_name(database_url, "gw_pool"),
             "--listen-connection", _with_application_name(database_url, "gw_listen"),
             "--runtime", runtime, "--driver", driver, "--poll-interval", "600000"],
            stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL, env=environment,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "connected and looking for jobs" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        backends = _backends(sync_connection)
        listeners = [
            name for name, query in backends if query.lstrip().upper().startswith("LISTEN")
        ]
        assert listeners == ["gw_listen"], backends
        assert {name for name, _ in backends} == {"gw_pool", "gw_listen"}, backends

        # With a ten-minute poll interval, only the notification can start the job at once.
        sync_connection.execute(
            "select graphile_worker.add_job('cli_write', json_build_object('path', %s::text, "
            "'text', 'woken'))",
            (str(output),),
        )
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
