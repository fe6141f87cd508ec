"""Worker subprocesses: start one (Python CLI or Node runner), watch it, stop it, read its records.

Workers always run in a process of their own, so that start-up time, memory (``VmHWM``)
and CPU are the worker's alone. A thread reads the worker's stderr as it comes, with the
time each line arrived, so a "ready" line can be timed and the tail of the log shown when a
worker dies. Every wait has a deadline: a hung worker fails the benchmark instead of
hanging it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .environment import NODE_PACKAGE, NODE_RUNNER, TASKS_FILE, BenchError, Features

if TYPE_CHECKING:
    from typing_extensions import Self

RECORD_FLUSH_WAIT = 0.3
"""Seconds to wait after the queue is empty before stopping a worker: several of
``worker_tasks.FLUSH_INTERVAL``, so its records file is final even if no exit hook runs."""

PYTHON_READY = re.compile(r"looking for jobs|\bready\b", re.IGNORECASE)
"""The Python worker's first "ready" log line ("... connected and looking for jobs")."""
NODE_READY = re.compile(r"node runner ready")


@dataclass(frozen=True)
class WorkerConfig:
    """How to run one worker: which implementation, driver and runtime, with which options."""

    label: str
    implementation: str = "python"  # or "node"
    driver: str = "asyncpg"
    runtime: str = "asyncio"
    concurrency: int = 24
    local_queue_size: int = 500
    """0 or less: no local queue (the Python worker's default; Node's ``size: -1``)."""
    batch_delay_ms: int = 0
    processes: int = 1
    quiet: bool = True
    """Quiet workers log no line per job (``--quiet``, or ``--log-level warning`` for
    versions without it); a loud one logs at info, which start-up timing needs."""
    extra_args: tuple[str, ...] = ()
    """More ``graphile-worker run`` options, passed as given (``--metrics-port 0``)."""


@dataclass
class Records:
    """What the task recorded, summed over every process of one worker."""

    count: int = 0
    first_start: float | None = None
    last_start: float | None = None
    starts: dict[str, float] = field(default_factory=dict)
    marks: dict[int, float] = field(default_factory=dict)
    """Start number -> time of that start, every ``mark_every`` starts (one process)."""


def python_command(
    config: WorkerConfig, features: Features, url: str
) -> tuple[list[str], list[str]]:
    """The CLI command line for ``config``, and the options it wanted but this version lacks."""
    missing: list[str] = []
    command = list(features.worker_command)
    quiet_flag = config.quiet and features.has("--quiet")
    if config.quiet and not quiet_flag:
        command += ["--log-level", "warning"]
    elif not config.quiet:
        command += ["--log-level", "info"]
    command += ["run", "-c", url, "--tasks", str(TASKS_FILE), "-j", str(config.concurrency)]
    command += ["--driver", config.driver]
    if config.runtime != "asyncio":
        if not features.has("--runtime"):
            raise BenchError(f"{config.label}: this version has no --runtime option")
        command += ["--runtime", config.runtime]
    if quiet_flag:
        command.append("--quiet")
    wanted = [
        ("--complete-job-batch-delay", str(config.batch_delay_ms)),
        ("--fail-job-batch-delay", str(config.batch_delay_ms)),
    ]
    if config.local_queue_size > 0:
        wanted.insert(0, ("--local-queue-size", str(config.local_queue_size)))
    for option, value in wanted:
        if features.has(option):
            command += [option, value]
        else:
            missing.append(option)
    if config.processes != 1:
        if not features.has("--processes"):
            raise BenchError(f"{config.label}: this version has no --processes option")
        command += ["--processes", str(config.processes)]
    command += config.extra_args
    return command, missing


def node_available() -> str | None:
    """Why the Node comparison cannot run, or ``None`` when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_PACKAGE / "dist" / "index.js").exists():
        return f"{NODE_PACKAGE} is missing (run `npm ci` in tests/node)"
    return None


class WorkerProcess:
    """One running worker, its stderr reader, and its records directory.

    Use as a context manager: leaving the block kills the worker if it is still running
    and deletes the records directory.
    """

    def __init__(
        self,
        config: WorkerConfig,
        features: Features,
        url: str,
        *,
        per_job_records: bool = False,
        mark_every: int = 0,
        sleep_ms: float = 0.0,
    ) -> None:
        self.config = config
        self.missing_options: list[str] = []
        self._records = Path(tempfile.mkdtemp(prefix="gwbench-records-"))
        env = {**os.environ, "GRAPHILE_WORKER_BENCH_RECORDS": str(self._records)}
        env["GRAPHILE_WORKER_BENCH_LATENCY"] = "1" if per_job_records else "0"
        env["GRAPHILE_WORKER_BENCH_MARK_EVERY"] = str(mark_every)
        env["GRAPHILE_WORKER_BENCH_SLEEP_MS"] = repr(sleep_ms)
        if config.implementation == "node":
            command = ["node", str(NODE_RUNNER)]
            env["GRAPHILE_WORKER_BENCH_NODE"] = json.dumps(
                {
                    "packageDir": str(NODE_PACKAGE),
                    "connectionString": url,
                    "concurrency": config.concurrency,
                    "localQueueSize": (
                        config.local_queue_size if config.local_queue_size > 0 else -1
                    ),
                    "completeJobBatchDelay": config.batch_delay_ms,
                    "failJobBatchDelay": config.batch_delay_ms,
                    "records": str(self._records),
                    "latency": per_job_records,
                    "markEvery": mark_every,
                    "sleepMs": sleep_ms,
                }
            )
            self._ready_pattern = NODE_READY
        else:
            command, self.missing_options = python_command(config, features, url)
            self._ready_pattern = PYTHON_READY
        self.command = command
        self._lines: collections.deque[str] = collections.deque(maxlen=200)
        self._ready = threading.Event()
        self.ready_at: float | None = None
        self.started_at = time.time()
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(TASKS_FILE.parents[2]),
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=5)
        shutil.rmtree(self._records, ignore_errors=True)

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        for raw in self._process.stderr:
            arrived = time.time()
            line = raw.decode("utf-8", "replace").rstrip()
            self._lines.append(line)
            if self.ready_at is None and self._ready_pattern.search(line):
                self.ready_at = arrived
                self._ready.set()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the worker wrote to stderr."""
        return "\n".join(list(self._lines)[-lines:])

    def failure(self, what: str) -> BenchError:
        """An error naming the worker, what went wrong, and its last log lines."""
        status = self._process.poll()
        state = "running" if status is None else f"exit status {status}"
        return BenchError(
            f"{self.config.label}: {what} ({state}; command: {' '.join(self.command)})\n"
            f"--- worker stderr (last lines) ---\n{self.log_tail()}"
        )

    def check_alive(self) -> None:
        """Raise if the worker has exited."""
        if self._process.poll() is not None:
            self._reader.join(timeout=5)
            raise self.failure("the worker exited unexpectedly")

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from spawning to the first "ready" line on stderr."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.01):
            self.check_alive()
            if time.monotonic() > deadline:
                raise self.failure(f"no ready line within {timeout:g}s")
        assert self.ready_at is not None
        return self.ready_at - self.started_at

    def peak_rss_mib(self) -> float | None:
        """The worker's peak resident set size so far (``VmHWM``), in MiB."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
        return int(match.group(1)) / 1024 if match else None

    def stop(self, timeout: float = 30.0) -> float:
        """Send SIGTERM and wait for a clean exit; returns the seconds it took.

        Raises:
            BenchError: the worker exited with a non-zero status, or did not exit in time.
        """
        self.check_alive()
        sent = time.perf_counter()
        self._process.send_signal(signal.SIGTERM)
        try:
            status = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self.failure(f"did not exit within {timeout:g}s of SIGTERM") from None
        took = time.perf_counter() - sent
        self._reader.join(timeout=5)
        if status != 0:
            raise self.failure(f"exited with status {status} after SIGTERM")
        return took

    def records(self) -> Records:
        """The task's records from every process of this worker."""
        total = Records()
        for path in sorted(self._records.glob("*.json")):
            record: dict[str, Any] = json.loads(path.read_text())
            total.count += record["count"]
            total.starts.update(record.get("starts") or {})
            total.marks.update((int(count), at) for count, at in record.get("marks") or ())
            with contextlib.suppress(FileNotFoundError):
                for line in path.with_suffix(".starts").read_text().splitlines():
                    job_id, _, start = line.partition(" ")
                    total.starts[job_id] = float(start)
            first, last = record.get("first_start"), record.get("last_start")
            if first is not None:
                total.first_start = (
                    first if total.first_start is None else min(total.first_start, first)
                )
            if last is not None:
                total.last_start = last if total.last_start is None else max(total.last_start, last)
        return total


def count_jobs(url: str) -> int:
    """Rows left in the jobs table."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("select count(*) from graphile_worker._private_jobs").fetchone()
    assert row is not None
    return int(row[0])


def wait_until_empty(
    url: str, worker: WorkerProcess, *, timeout: float, interval: float = 0.005
) -> float:
    """Poll until the jobs table is empty; returns the wall-clock time it was seen empty.

    The probe reads the first row by primary key, which stays cheap as the table empties
    (index entries of deleted rows are skipped once marked dead), so polling every few
    milliseconds does not slow the worker down.
    """
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as connection:
        probe = "select id from graphile_worker._private_jobs order by id limit 1"
        while True:
            if connection.execute(probe).fetchone() is None:
                return time.time()
            worker.check_alive()
            if time.monotonic() > deadline:
                left = connection.execute(
                    "select count(*), count(*) filter (where last_error is not null) "
                    "from graphile_worker._private_jobs"
                ).fetchone()
                assert left is not None
                raise worker.failure(
                    f"{left[0]} job(s) still queued after {timeout:g}s ({left[1]} failed)"
                )
            time.sleep(interval)


def check_count(worker: WorkerProcess, records: Records, expected: int) -> None:
    """Fail unless the task ran exactly ``expected`` times: no job lost, none run twice."""
    if records.count != expected:
        what = "lost" if records.count < expected else "ran more than once"
        raise worker.failure(
            f"the task ran {records.count} time(s) for {expected} job(s): jobs were {what}"
        )
