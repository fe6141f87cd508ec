"""SIGTERM and SIGINT sent to a real worker process (``signal_worker.py``).

One signal: stop claiming, let the running job finish within the grace period, else
cancel it and release it without spending its attempt. A second signal: stop at once,
still releasing the job. The process must exit by itself with status 0 in every case.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .conftest import job_row

if TYPE_CHECKING:
    import psycopg

SCRIPT = Path(__file__).with_name("signal_worker.py")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class WorkerProcess:
    """The worker subprocess, with its output collected by a thread as it comes."""

    def __init__(self, database_url: str, backend: str, driver: str, grace: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), database_url, backend, driver, str(grace)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_until_started(self, job_id: int) -> None:
        wait_for(lambda: f"started job {job_id}\n" in self.lines, 10, f"job {job_id} to start")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def exit_status(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not exit within {timeout}s") from None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(5)
        assert self.process.stdout is not None
        self.process.stdout.close()
        # Shown by pytest only when the test fails.
        print("".join(self.lines))


@contextmanager
def worker_process(
    database_url: str, backend: str, driver: str, grace: float
) -> Iterator[WorkerProcess]:
    process = WorkerProcess(database_url, backend, driver, grace)
    try:
        yield process
    finally:
        process.close()


def add_sleep_job(connection: psycopg.Connection[Any], seconds: float) -> int:
    row = connection.execute(
        "select id from graphile_worker.add_job('sleep', json_build_object('seconds', %s::float))",
        (seconds,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def assert_released(connection: psycopg.Connection[Any], job_id: int, before: datetime) -> None:
    row = job_row(connection, job_id)
    assert row is not None
    assert (row["attempts"], row["locked_by"], row["last_error"]) == (0, None, None)
    assert row["run_at"] >= before + timedelta(seconds=59)


def test_sigterm_lets_short_jobs_finish_and_releases_the_rest(
    database_url: str,
    anyio_backend: str,
    driver_name: str,
    sync_connection: psycopg.Connection[Any],
) -> None:
    short = add_sleep_job(sync_connection, 0.2)
    long = add_sleep_job(sync_connection, 60)
    with worker_process(database_url, anyio_backend, driver_name, grace=1.0) as process:
        process.wait_until_started(short)
        process.wait_until_started(long)
        before = datetime.now(timezone.utc)
        process.signal(signal.SIGTERM)
        assert process.exit_status(10) == 0
    # The short job finished within the grace period; the long one was cancelled after it.
    assert job_row(sync_connection, short) is None
    assert_released(sync_connection, long, before)


def test_a_second_signal_stops_at_once_and_still_releases_the_job(
    database_url: str,
    anyio_backend: str,
    driver_name: str,
    sync_connection: psycopg.Connection[Any],
) -> None:
    job_id = add_sleep_job(sync_connection, 60)
    with worker_process(database_url, anyio_backend, driver_name, grace=60) as process:
        process.wait_until_started(job_id)
        before = datetime.now(timezone.utc)
        process.signal(signal.SIGTERM)
        time.sleep(0.3)  # the first signal is being handled: the job is in its grace period
        assert process.process.poll() is None
        process.signal(signal.SIGINT)
        started = time.monotonic()
        assert process.exit_status(10) == 0
        assert time.monotonic() - started < 5
    assert_released(sync_connection, job_id, before)
