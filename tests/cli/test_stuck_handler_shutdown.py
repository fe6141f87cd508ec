"""``graphile-worker run`` ends after the grace period even when a plain ``def`` handler never does.

Python cannot stop a thread. A handler blocked for good is abandoned when the grace period
runs out; its job must be released and the process must still exit, with status 0, on the
first SIGTERM, on asyncio and trio, alone or as a child of ``--processes``.
"""

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
from psycopg.types.json import Json

pytestmark = pytest.mark.skipif(os.name != "posix", reason="sends SIGTERM")

GRACE_MS = 300

TASKS_SOURCE = textwrap.dedent(
    """
    import os
    import threading

    from graphile_worker.task import task


    @task("stuck")
    def stuck(payload: dict) -> None:
        with open(payload["started"], "a") as file:
            file.write(f"{os.getpid()}\\n")
        threading.Event().wait()  # never set: this handler never returns
    """
)


def _add_stuck_job(connection: psycopg.Connection[Any], started: Path) -> int:
    row = connection.execute(
        "select id from graphile_worker.add_job('stuck', %s)", (Json({"started": str(started)}),)
    ).fetchone()
    assert row is not None
    job_id: int = row[0]
    return job_id


def _job(connection: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...]:
    row = connection.execute(
        "select attempts, locked_by, locked_at, last_error, run_at > now() "
        "from graphile_worker._private_jobs where id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None, "the stuck job was deleted instead of released"
    return tuple(row)


@pytest.mark.parametrize("processes", [1, 2], ids=["single", "processes"])
@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_sigterm_with_a_stuck_sync_handler_exits_0_and_releases_the_job(
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    tmp_path: Path,
    runtime: str,
    processes: int,
) -> None:
    tasks_file = tmp_path / f"stuck_tasks_{uuid.uuid4().hex[:8]}.py"
    tasks_file.write_text(TASKS_SOURCE)
    started = tmp_path / "started.txt"
    job_id = _add_stuck_job(sync_connection, started)
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    environment.pop("GRAPHILE_WORKER_LOG_LEVEL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "graphile_worker.cli", "run", "--tasks", str(tasks_file),
         "-c", database_url, "--runtime", runtime, "--processes", str(processes),
         "--shutdown-grace-period", str(GRACE_MS)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (started.exists() and started.read_text()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the worker never started the stuck job"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        # One signal, the grace period, then a few seconds at most to release and exit.
        _, stderr = process.communicate(timeout=GRACE_MS / 1000 + 10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"Released job {job_id} (stuck), interrupted by shutdown" in stderr
    attempts, locked_by, locked_at, last_error, delayed = _job(sync_connection, job_id)
    assert (attempts, locked_by, locked_at, last_error) == (0, None, None, None)
    assert delayed, "a released job waits interrupted_job_retry_delay before it runs again"
