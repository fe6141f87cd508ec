"""The chaos suite's tools: worker subprocesses, a ledger of handler runs kept outside
PostgreSQL, and the jobs table read over a connection of the test's own.

What a test asserts about a job comes from two places the code under test cannot fake. The
**ledger** is a file that every handler run appends a line to (job id, worker pid, attempt,
phase), opened in append mode, flushed and fsync'ed before the handler returns, so a run is
on record even when its worker is killed a microsecond later. The **table** is read with
plain SQL. A job "ran" when the ledger has its ``done`` line; it is "lost" when the ledger
never gets one, and it "ran twice" when it gets two.

Workers are real ``python -m graphile_worker.cli run`` processes, each loading the tasks file
below with its own task identifier (``CHAOS_TASK``), so that several workers (one per runtime
and driver) can share one database and each is still accountable for its own jobs: a
worker that never recovers from a fault leaves its jobs undone, and the test names it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Json

import graphile_worker

from ..conftest import RUNTIME_DRIVER_PAIRS

__all__ = [
    "FAST_RECOVERY",
    "LOCAL_QUEUE_PAIRS",
    "PAIRS",
    "Ledger",
    "Run",
    "WorkerProcess",
    "add_jobs",
    "describe_all",
    "fleet_args",
    "jobs_left",
    "pair_id",
    "still_running",
    "subprocess_environment",
    "task_name",
    "wait_for",
]

PAIRS: tuple[tuple[str, str], ...] = RUNTIME_DRIVER_PAIRS
"""Every (runtime, driver) pair a worker can run on: asyncio with all four drivers, trio
with the two psycopg drivers that run anywhere."""

LOCAL_QUEUE_PAIRS = frozenset(
    {("asyncio", "asyncpg"), ("trio", "psycopg-threaded"), ("asyncio", "psycopg-anyio")}
)
"""The half of a fleet that runs with a local queue (:func:`fleet_args`): each runtime, and
each driver that runs on both, meets a fault once with and once without one, since they
claim, and so fail, differently."""

FAST_RECOVERY = (
    "--heartbeat-interval", "500", "--stale-after", "2000", "--recovery-delay", "0",
    "--long-running-stale-after", "2000",
)  # fmt: skip
"""Dead-worker recovery settings short enough for a test to watch a sweep happen: a worker
silent for 2 s is given up, and its jobs are runnable again at once."""

STALE_AFTER = 2.0
"""The ``--stale-after`` in :data:`FAST_RECOVERY`, in seconds."""

TASKS_SOURCE = textwrap.dedent(
    '''
    """Chaos-suite handlers: every run is written to the ledger, outside PostgreSQL."""

    import os
    import time

    import anyio

    from graphile_worker.task import task

    LEDGER = os.environ["CHAOS_LEDGER"]
    NAMES = os.environ["CHAOS_TASK"].split(",")


    class ChaosBaseException(BaseException):
        """Neither an Exception nor one of Python's own: what a careless library might raise."""


    ERRORS = {
        "SystemExit": lambda: SystemExit("sys.exit from a handler"),
        "KeyboardInterrupt": KeyboardInterrupt,
        "ChaosBaseException": lambda: ChaosBaseException("raised by the handler on purpose"),
    }


    def record(job_id, attempts, phase):
        with open(LEDGER, "a") as ledger:
            ledger.write(f"{job_id} {os.getpid()} {attempts} {phase}\\n")
            ledger.flush()
            os.fsync(ledger.fileno())


    def seconds(payload, ctx):
        if ctx.job.attempts == 1 and "sleep_first" in payload:
            return payload["sleep_first"]
        return payload.get("sleep", 0)


    def handlers(name):
        """An async handler called ``name`` and a plain ``def`` one called ``name_sync``."""

        @task(name)
        async def chaos(payload, ctx):
            record(ctx.job.id, ctx.job.attempts, "start")
            await anyio.sleep(seconds(payload, ctx))
            if "raise" in payload:
                raise ERRORS[payload["raise"]]()
            record(ctx.job.id, ctx.job.attempts, "done")

        @task(name + "_sync")
        def chaos_sync(payload, ctx):
            record(ctx.job.id, ctx.job.attempts, "start")
            time.sleep(seconds(payload, ctx))
            if "raise" in payload:
                raise ERRORS[payload["raise"]]()
            record(ctx.job.id, ctx.job.attempts, "done")

        return [chaos, chaos_sync]


    tasks = [handler for name in NAMES for handler in handlers(name)]
    '''
)

_CONNECTED = re.compile(r"Worker (graphile_worker_[0-9a-f]+) connected and looking for jobs")


def pair_id(pair: tuple[str, str]) -> str:
    """``asyncio-asyncpg``: how a pair is named in test ids and messages."""
    return f"{pair[0]}-{pair[1]}"


def task_name(pair: tuple[str, str]) -> str:
    """The task identifier the worker of ``pair`` runs (and no other worker does)."""
    return "chaos_" + pair_id(pair).replace("-", "_")


def fleet_args(pair: tuple[str, str], *args: str, local_queue_size: int = 10) -> tuple[str, ...]:
    """``args``, plus ``--local-queue-size`` for the pairs in :data:`LOCAL_QUEUE_PAIRS`."""
    if pair in LOCAL_QUEUE_PAIRS:
        return (*args, "--local-queue-size", str(local_queue_size))
    return args


def wait_for(
    condition: Callable[[], object],
    what: str,
    *,
    timeout: float,
    describe: Callable[[], str] = lambda: "",
) -> float:
    """Poll ``condition`` until it holds and return the seconds that took; fail naming
    ``what`` (and whatever ``describe`` says about the state) once ``timeout`` passes."""
    started = time.monotonic()
    deadline = started + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{describe()}")
        time.sleep(0.02)
    return time.monotonic() - started


def subprocess_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment for a worker subprocess, importing the package this test imported.

    Engineers run the suite on the source tree with ``PYTHONPATH=src``; a relative entry
    means nothing in the subprocess's own working directory, where it would silently import
    an installed (older) copy instead. So every entry is made absolute, and the source tree
    in use is put first unless it is the installed copy (CI installs the package).
    """
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "GRAPHILE_WORKER_SCHEMA", "GRAPHILE_WORKER_LOG_LEVEL"}
    }
    entries = [
        str(Path(entry).resolve())
        for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if entry
    ]
    package_root = str(Path(graphile_worker.__file__).resolve().parent.parent)
    installed = {str(Path(sysconfig.get_paths()[key]).resolve()) for key in ("purelib", "platlib")}
    if package_root not in installed and package_root not in entries:
        entries.insert(0, package_root)
    if entries:
        environment["PYTHONPATH"] = os.pathsep.join(entries)
    environment.update(extra)
    return environment


@dataclass(frozen=True)
class Run:
    """One ledger line: a handler began (``start``) or finished (``done``) one attempt."""

    job_id: int
    pid: int
    attempt: int
    phase: str


class Ledger:
    """The append-only file the handlers write to; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[Run]:
        """Every line written so far, in order.

        A line is one ``write()`` of a few bytes in append mode, but a read racing that
        write may still see part of it; a last line without its newline is left for the
        next read.
        """
        if not self.path.exists():
            return []
        *complete, _partial = self.path.read_text().split("\n")
        runs = []
        for line in complete:
            job_id, pid, attempt, phase = line.split()
            runs.append(Run(int(job_id), int(pid), int(attempt), phase))
        return runs

    def done(self, job_ids: Collection[int] | None = None) -> list[Run]:
        """The completed runs (of ``job_ids`` only, when given), in the order written."""
        wanted = None if job_ids is None else set(job_ids)
        return [
            run
            for run in self.lines()
            if run.phase == "done" and (wanted is None or run.job_id in wanted)
        ]

    def started(self) -> list[Run]:
        return [run for run in self.lines() if run.phase == "start"]

    def done_count(self, job_ids: Collection[int]) -> int:
        """How many of ``job_ids`` have run to completion at least once."""
        return len({run.job_id for run in self.done(job_ids)})

    def check(
        self, added: Iterable[int], *, may_repeat: Collection[int] = (), label: str = "jobs"
    ) -> Counter[int]:
        """Assert that every job in ``added`` ran to completion, none of them more than
        once except those in ``may_repeat``, which may run once more; return the counts.
        ``label`` (a worker's name) starts each failure message.
        """
        expected = set(added)
        counts = Counter(run.job_id for run in self.done(expected))
        missing = sorted(expected - counts.keys())
        assert not missing, (
            f"{label}: {len(missing)} job(s) never ran to completion: {missing[:50]}"
        )
        repeated = {job_id: count for job_id, count in counts.items() if count > 1}
        unexplained = sorted(set(repeated) - set(may_repeat))
        assert not unexplained, (
            f"{label}: job(s) ran to completion more than once without a fault that allows "
            f"it: {[(job_id, repeated[job_id]) for job_id in unexplained[:50]]}"
        )
        too_often = {job_id: count for job_id, count in repeated.items() if count > 2}
        assert not too_often, f"{label}: job(s) ran to completion more than twice: {too_often}"
        return counts


class WorkerProcess:
    """``python -m graphile_worker.cli run`` with the chaos tasks, output to a log file.

    Args:
        directory: Holds the tasks file and the ledger; the log is written here too.
        database_url: The database to work on.
        pair: (runtime, driver) to run on.
        task: The task identifier it runs (``CHAOS_TASK``), and its ``_sync`` twin;
            several, separated by commas.
        args: More ``run`` options (``--jobs``, ``--local-queue-size``, recovery...).
    """

    def __init__(
        self,
        directory: Path,
        database_url: str,
        pair: tuple[str, str],
        task: str,
        *args: str,
    ) -> None:
        self.pair = pair
        self.task = task
        tasks_file = directory / "chaos_tasks.py"
        if not tasks_file.exists():
            tasks_file.write_text(TASKS_SOURCE)
        self.log_path = directory / f"worker-{pair_id(pair)}-{time.monotonic_ns()}.log"
        runtime, driver = pair
        command = [
            sys.executable, "-m", "graphile_worker.cli", "run", "-c", database_url,
            "--tasks", str(tasks_file), "--runtime", runtime, "--driver", driver, "--quiet",
            *args,
        ]  # fmt: skip
        environment = subprocess_environment(
            {"CHAOS_LEDGER": str(directory / "ledger.txt"), "CHAOS_TASK": task}
        )
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                cwd=directory,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def name(self) -> str:
        return pair_id(self.pair)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def worker_id(self) -> str:
        """The worker id it logged on start (``locked_by`` and ``application_name``)."""
        match = _CONNECTED.search(self.log())
        assert match is not None, f"{self.name} has not started yet\n{self.describe()}"
        return match.group(1)

    def ready(self) -> bool:
        """Whether it is connected and looking for jobs; fails at once if it exited."""
        if self.process.poll() is not None:
            raise AssertionError(f"worker {self.name} exited while starting\n{self.describe()}")
        return _CONNECTED.search(self.log()) is not None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as the out-of-memory killer or a lost machine would."""
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def describe(self, lines: int = 40) -> str:
        tail = "\n".join(self.log().splitlines()[-lines:])
        return f"--- worker {self.name} (pid {self.pid}, exit {self.process.poll()}):\n{tail}"

    def clean_up(self) -> None:
        """No worker may outlive its test, whatever happened."""
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def describe_all(workers: Iterable[WorkerProcess]) -> str:
    return "\n".join(worker.describe() for worker in workers)


def still_running(workers: Iterable[WorkerProcess]) -> bool:
    """True; fails at once, with its log, if a worker that must survive has exited (for
    use inside a :func:`wait_for` condition, so that a crash is not reported as a timeout)."""
    for worker in workers:
        if not worker.alive():
            raise AssertionError(f"worker {worker.name} exited\n{worker.describe()}")
    return True


def add_jobs(
    connection: psycopg.Connection[Any],
    task: str,
    count: int,
    payload: Mapping[str, Any] | None = None,
    *,
    priority: int | None = None,
    max_attempts: int | None = None,
) -> list[int]:
    """Queue ``count`` jobs of ``task`` with SQL's ``add_job``; return their ids in order."""
    rows = connection.execute(
        "select (graphile_worker.add_job(%s, %s::json, priority => %s, max_attempts => %s)).id"
        " from generate_series(1, %s) order by 1",
        (task, Json(dict(payload or {})), priority, max_attempts, count),
    ).fetchall()
    return [int(row[0]) for row in rows]


def jobs_left(connection: psycopg.Connection[Any], task: str | None = None) -> list[dict[str, Any]]:
    """The rows still in the jobs table (of ``task`` only, when given), in id order."""
    from psycopg.rows import dict_row

    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            """
            select jobs.id, tasks.identifier as task, jobs.attempts, jobs.max_attempts,
              jobs.locked_by, jobs.last_error, jobs.run_at <= now() as due
            from graphile_worker._private_jobs as jobs
            join graphile_worker._private_tasks as tasks on tasks.id = jobs.task_id
            where %(task)s::text is null or tasks.identifier = %(task)s::text
            order by jobs.id
            """,
            {"task": task},
        )
        return cursor.fetchall()
