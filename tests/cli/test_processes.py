"""``graphile-worker run --processes N``: real supervisors, real children, real signals.

Each test starts ``python -m graphile_worker.cli run --processes 2`` against its own
database. Jobs of the ``rendezvous`` task wait until as many distinct processes have joined
the same round as the payload asks, so two such jobs finishing proves that two worker
processes ran jobs at the same time, whatever the scheduling.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
from psycopg.types.json import Json

from graphile_worker.cli import main
from graphile_worker.cli._run import run_command
from graphile_worker.cli._supervisor import (
    FIRST_RESTART_DELAY,
    MAX_QUICK_EXITS,
    MAX_RESTART_DELAY,
    STARTUP_SECONDS,
    command_line,
    describe_status,
    verdict_after_exit,
)
from graphile_worker.migrations import LATEST_MIGRATION

from .conftest import UNREACHABLE_URL, CliCall

pytestmark = pytest.mark.skipif(os.name != "posix", reason="--processes is POSIX only")

TASKS_SOURCE = textwrap.dedent(
    """
    import json
    import os
    import time
    from pathlib import Path

    import anyio

    from graphile_worker.task import task
    from graphile_worker.worker import WorkerContext


    def _joined(path: Path, round_: str) -> set[str]:
        lines = path.read_text().splitlines() if path.exists() else []
        return {json.loads(line)["pid"] for line in lines if json.loads(line)["round"] == round_}


    @task("rendezvous")
    async def rendezvous(payload: dict, ctx: WorkerContext) -> None:
        path = Path(payload["path"])
        record = {"round": payload["round"], "worker_id": ctx.worker_id, "pid": os.getpid()}
        with path.open("a") as file:
            file.write(json.dumps(record) + "\\n")
        deadline = time.monotonic() + 60
        while len(_joined(path, payload["round"])) < payload["processes"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the other worker processes never joined")
            await anyio.sleep(0.02)


    @task("slow")
    async def slow(payload: dict, ctx: WorkerContext) -> None:
        with open(payload["started"], "a") as file:
            file.write(f"{os.getpid()}\\n")
        await anyio.sleep(payload["seconds"])
        with open(payload["done"], "a") as file:
            file.write(f"{ctx.job.id}\\n")
    """
)

STARTED = re.compile(r"(?:Started|Restarted) worker process (\d+) of \d+ \(pid (\d+)\)")


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie nobody has reaped yet has stopped running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class Supervisor:
    """A ``graphile-worker run --processes`` subprocess whose output goes to files."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.stdout_path = directory / f"stdout-{uuid.uuid4().hex[:6]}.txt"
        self.stderr_path = directory / f"stderr-{uuid.uuid4().hex[:6]}.txt"
        environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
        environment.pop("GRAPHILE_WORKER_LOG_LEVEL", None)
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "graphile_worker.cli", "run", *args],
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=environment,
                cwd=directory,
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def children(self) -> dict[int, int]:
        """Worker process number -> pid of its latest start, from the supervisor's log."""
        return {int(index): int(pid) for index, pid in STARTED.findall(self.stderr)}

    def all_child_pids(self) -> set[int]:
        return {int(pid) for _, pid in STARTED.findall(self.stderr)}

    def wait_for_log(self, text: str, count: int = 1) -> None:
        wait_until(
            lambda: self.stderr.count(text) >= count or self.process.poll() is not None,
            f"{count} x {text!r} in the log",
        )
        assert self.stderr.count(text) >= count, self.describe()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def describe(self) -> str:
        return f"exit {self.process.poll()}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def kill_everything(self) -> None:
        """Clean-up after a failed test: no process of ours may outlive it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.all_child_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    path = tmp_path / "process_tasks.py"
    path.write_text(TASKS_SOURCE)
    return path


@pytest.fixture
def start(tmp_path: Path, tasks_file: Path) -> Iterator[Callable[..., Supervisor]]:
    """Start a supervisor with the tasks file: ``start("--processes", "2", ...)``."""
    started: list[Supervisor] = []

    def start_supervisor(*args: str) -> Supervisor:
        supervisor = Supervisor(tmp_path, "--tasks", str(tasks_file), *args)
        started.append(supervisor)
        return supervisor

    yield start_supervisor
    for supervisor in started:
        supervisor.kill_everything()


def add_job(connection: psycopg.Connection[Any], task: str, payload: dict[str, Any]) -> int:
    row = connection.execute(
        "select (graphile_worker.add_job(%s, %s::json)).id", (task, Json(payload))
    ).fetchone()
    assert row is not None
    return int(row[0])


def rendezvous(
    connection: psycopg.Connection[Any], records: Path, round_: str, processes: int = 2
) -> None:
    for _ in range(processes):
        add_job(
            connection,
            "rendezvous",
            {"path": str(records), "round": round_, "processes": processes},
        )


def joined(records: Path, round_: str) -> list[dict[str, Any]]:
    import json

    if not records.exists():
        return []
    entries = [json.loads(line) for line in records.read_text().splitlines()]
    return [entry for entry in entries if entry["round"] == round_]


def jobs_left(connection: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return connection.execute(
        "select id, attempts, locked_by, run_at > now() from graphile_worker._private_jobs "
        "order by id"
    ).fetchall()


class TestRunning:
    def test_children_share_the_queue_and_sigterm_stops_them_cleanly(
        self,
        start: Callable[..., Supervisor],
        database_url: str,
        sync_connection: psycopg.Connection[Any],
        tmp_path: Path,
    ) -> None:
        records = tmp_path / "records.jsonl"
        rendezvous(sync_connection, records, "first")
        supervisor = start("--processes", "2", "-c", database_url)

        wait_until(lambda: jobs_left(sync_connection) == [], "the rendezvous jobs to finish")
        entries = joined(records, "first")
        assert len({entry["worker_id"] for entry in entries}) == 2
        pids = {entry["pid"] for entry in entries}
        assert pids == set(supervisor.children().values())
        assert supervisor.process.pid not in pids

        started, done = tmp_path / "started.txt", tmp_path / "done.txt"
        for _ in range(2):
            add_job(
                sync_connection,
                "slow",
                {"started": str(started), "done": str(done), "seconds": 1},
            )
        wait_until(
            lambda: started.exists() and len(set(started.read_text().split())) == 2,
            "both slow jobs to start, one in each process",
        )
        supervisor.signal(signal.SIGTERM)

        assert supervisor.wait() == 0, supervisor.describe()
        # Both running jobs were allowed to finish; nothing is left locked or waiting.
        assert len(done.read_text().split()) == 2
        assert jobs_left(sync_connection) == []
        assert "Traceback" not in supervisor.stderr
        assert "Every worker process has stopped" in supervisor.stderr
        assert supervisor.stderr.count("stopping: received SIGTERM") == 2

    def test_a_killed_child_is_started_again(
        self,
        start: Callable[..., Supervisor],
        database_url: str,
        sync_connection: psycopg.Connection[Any],
        tmp_path: Path,
    ) -> None:
        records = tmp_path / "records.jsonl"
        rendezvous(sync_connection, records, "before")
        supervisor = start("--processes", "2", "-c", database_url)
        wait_until(lambda: jobs_left(sync_connection) == [], "the first rendezvous")
        before = supervisor.children()

        os.kill(before[1], signal.SIGKILL)
        supervisor.wait_for_log("Restarted worker process 1 of 2")
        assert f"Worker process 1 (pid {before[1]}) was killed by SIGKILL" in supervisor.stderr
        after = supervisor.children()
        assert after[1] != before[1]
        assert after[2] == before[2]

        rendezvous(sync_connection, records, "after")
        wait_until(lambda: jobs_left(sync_connection) == [], "the second rendezvous")
        assert {entry["pid"] for entry in joined(records, "after")} == set(after.values())

        supervisor.signal(signal.SIGTERM)
        assert supervisor.wait() == 0, supervisor.describe()

    def test_a_killed_childs_job_is_handed_back_at_once(
        self,
        start: Callable[..., Supervisor],
        database_url: str,
        sync_connection: psycopg.Connection[Any],
        tmp_path: Path,
    ) -> None:
        started, done = tmp_path / "started.txt", tmp_path / "done.txt"
        job_id = add_job(
            sync_connection,
            "slow",
            {"started": str(started), "done": str(done), "seconds": 600},
        )
        supervisor = start("--processes", "2", "-c", database_url, "--recovery-delay", "0")
        # The file exists a moment before the task has written its pid into it.
        wait_until(lambda: started.exists() and started.read_text().split(), "the job to start")
        victim = int(started.read_text().split()[0])
        # A second after it starts, the worker reports the job running in the registry.
        wait_until(
            lambda: sync_connection.execute(
                "select 1 from graphile_worker._pyworker_workers where %s = any(running_job_ids)",
                (job_id,),
            ).fetchone(),
            "the registry to show the job running",
        )

        os.kill(victim, signal.SIGKILL)
        supervisor.wait_for_log("Restarted worker process")
        # Handed back by `sweep --dead-pid`, minutes before any heartbeat would go stale;
        # the job had started, so its attempt counts, and it runs again.
        assert "Recovered worker graphile_worker_" in supervisor.stderr, supervisor.describe()
        wait_until(
            lambda: len(started.read_text().split()) == 2, "the job to start again", timeout=30
        )
        second = int(started.read_text().split()[1])
        assert second != victim
        row = sync_connection.execute(
            "select attempts, last_error from graphile_worker._private_jobs where id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None
        assert row[0] == 2  # the killed attempt counts, the new one is running
        assert "reported dead; it was running, so the attempt counts" in row[1]

        supervisor.signal(signal.SIGTERM)
        assert supervisor.wait() == 0, supervisor.describe()

    def test_a_second_sigint_stops_the_children_at_once(
        self,
        start: Callable[..., Supervisor],
        database_url: str,
        sync_connection: psycopg.Connection[Any],
        tmp_path: Path,
    ) -> None:
        started, done = tmp_path / "started.txt", tmp_path / "done.txt"
        job_id = add_job(
            sync_connection,
            "slow",
            {"started": str(started), "done": str(done), "seconds": 600},
        )
        supervisor = start("--processes", "2", "-c", database_url)
        wait_until(started.exists, "the slow job to start")
        supervisor.wait_for_log("connected and looking for jobs", count=2)

        # Passed on as SIGTERM: the worker treats both alike.
        supervisor.signal(signal.SIGINT)
        supervisor.wait_for_log("Received SIGTERM; stopping gracefully", count=2)
        supervisor.signal(signal.SIGINT)

        assert supervisor.wait() == 0, supervisor.describe()
        log = supervisor.stderr
        assert "Received SIGINT again; asking the worker processes to stop at once" in log
        assert "Received SIGTERM again; stopping at once" in log
        assert f"Released job {job_id} (slow), interrupted by shutdown" in log
        assert "Traceback" not in log
        assert not done.exists()
        # Released, not lost: unlocked, its attempt given back, due again after a delay.
        assert jobs_left(sync_connection) == [(job_id, 0, None, True)]

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
    def test_children_stop_when_the_supervisor_is_killed(
        self,
        start: Callable[..., Supervisor],
        database_url: str,
        sync_connection: psycopg.Connection[Any],
        tmp_path: Path,
    ) -> None:
        records = tmp_path / "records.jsonl"
        rendezvous(sync_connection, records, "only")
        supervisor = start("--processes", "2", "-c", database_url)
        wait_until(lambda: jobs_left(sync_connection) == [], "the rendezvous")
        children = supervisor.children().values()

        supervisor.process.kill()
        supervisor.wait()

        wait_until(lambda: not any(_alive(pid) for pid in children), "the orphans to stop")
        assert supervisor.stderr.count("stopping: received SIGTERM") == 2


class TestOnce:
    def test_every_child_runs_until_the_queue_is_empty(
        self,
        start: Callable[..., Supervisor],
        database_url: str,
        sync_connection: psycopg.Connection[Any],
        tmp_path: Path,
    ) -> None:
        records = tmp_path / "records.jsonl"
        rendezvous(sync_connection, records, "once")
        supervisor = start("--once", "--processes", "2", "-c", database_url)

        assert supervisor.wait() == 0, supervisor.describe()
        assert jobs_left(sync_connection) == []
        assert len({entry["pid"] for entry in joined(records, "once")}) == 2
        # stdout holds what single runs print; the schema check is logged on stderr.
        summary = "Ran 1 job(s): 1 completed, 0 failed (0 permanently), 0 interrupted"
        assert supervisor.stdout.splitlines() == [summary, summary]
        version = LATEST_MIGRATION
        assert f"version {version} -> {version} (already up to date)" in supervisor.stderr
        assert "Restarted" not in supervisor.stderr

    def test_failed_children_make_the_exit_status(self, database_url: str, tmp_path: Path) -> None:
        supervisor = Supervisor(
            tmp_path, "--once", "--processes", "2", "--tasks", "no_such_tasks_module", "-c",
            database_url,
        )  # fmt: skip
        try:
            assert supervisor.wait() == 1, supervisor.describe()
        finally:
            supervisor.kill_everything()
        last = supervisor.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: worker process "), supervisor.describe()
        assert "exited with status 1; 1 more worker process problem(s) above" in last


class TestStartFailures:
    def test_a_child_that_cannot_start_stops_everything(
        self, database_url: str, tmp_path: Path
    ) -> None:
        supervisor = Supervisor(
            tmp_path, "--processes", "2", "--tasks", "no_such_tasks_module", "-c", database_url
        )
        try:
            assert supervisor.wait() == 1, supervisor.describe()
        finally:
            supervisor.kill_everything()
        log = supervisor.stderr
        last = log.strip().splitlines()[-1]
        assert last.startswith("Error: worker process "), supervisor.describe()
        assert "could not start: it exited with status 1" in last
        assert "(its own error is above)" in last
        # The child's own one-line error is there, and nothing was started twice.
        assert "no_such_tasks_module" in log
        assert "Restarted" not in log
        assert "Traceback" not in log

    def test_an_unreachable_database_is_reported_once(self, tmp_path: Path) -> None:
        (tmp_path / "tasks.py").write_text(TASKS_SOURCE)
        supervisor = Supervisor(tmp_path, "--processes", "3", "-c", UNREACHABLE_URL)
        try:
            assert supervisor.wait() == 1, supervisor.describe()
        finally:
            supervisor.kill_everything()
        errors = [line for line in supervisor.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, supervisor.describe()
        assert "PostgreSQL at 127.0.0.1:1 (database 'nowhere')" in errors[0]
        assert "worker process" not in supervisor.stderr

    def test_zero_processes_is_a_usage_error(self, cli: CliCall, tmp_path: Path) -> None:
        result = cli("run", "--processes", "0", "--tasks", str(tmp_path / "t.py"), expect=2)
        assert "0 is not in the range x>=1" in result.stderr


class TestCommandLine:
    """The child's command line is rebuilt from click's parsed parameters."""

    def _contexts(self, *args: str) -> click.Context:
        root = main.make_context("graphile-worker", [*args[: args.index("run")], "run"])
        rest = list(args[args.index("run") + 1 :])
        return run_command.make_context("run", rest, parent=root)

    def test_only_what_was_typed_is_passed_on(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GRAPHILE_WORKER_SCHEMA", "from_env")
        monkeypatch.delenv("GRAPHILE_WORKER_LOG_LEVEL", raising=False)
        ctx = self._contexts(
            "--log-level", "debug", "run", "--processes", "4", "-c", "-odd-url", "--tasks",
            "a.tasks", "--tasks", "b.py", "-j", "3", "--no-prepared-statements",
            "--runtime", "trio",
        )  # fmt: skip
        words = command_line(ctx, leave_out={"processes"})
        assert words == [
            "--connection=-odd-url",
            "--tasks=a.tasks",
            "--tasks=b.py",
            "--jobs=3",
            "--no-prepared-statements",
            "--runtime=trio",
        ]
        assert ctx.parent is not None
        assert command_line(ctx.parent) == ["--log-level=debug"]
        assert command_line(ctx, only={"connection", "schema", "driver"}) == [
            "--connection=-odd-url"
        ]
        again = run_command.make_context("run", words, parent=ctx.parent)
        assert {**again.params, "processes": 4} == ctx.params
        assert again.params["schema"] == "from_env"


class TestRestartDecisions:
    def test_a_first_start_that_fails_gives_up_at_once(self) -> None:
        verdict = verdict_after_exit(index=2, status=1, uptime=0.7, starts=1, quick_exits=0)
        assert verdict.delay is None
        assert verdict.reason == (
            "worker process 2 could not start: it exited with status 1 after 0.7s "
            "(its own error is above)"
        )

    def test_a_killed_child_is_restarted_even_at_first(self) -> None:
        verdict = verdict_after_exit(
            index=1, status=-signal.SIGKILL, uptime=0.5, starts=1, quick_exits=0
        )
        assert verdict.delay == FIRST_RESTART_DELAY * 2
        assert verdict.quick_exits == 1

    def test_a_child_that_ran_for_a_while_comes_back_quickly(self) -> None:
        verdict = verdict_after_exit(
            index=1, status=1, uptime=STARTUP_SECONDS + 1, starts=3, quick_exits=4
        )
        assert verdict == verdict_after_exit(
            index=1, status=1, uptime=STARTUP_SECONDS * 100, starts=1, quick_exits=0
        )
        assert (verdict.delay, verdict.quick_exits) == (FIRST_RESTART_DELAY, 0)

    def test_back_off_doubles_then_gives_up(self) -> None:
        delays: list[float | None] = []
        quick_exits = 0
        for starts in range(2, 2 + MAX_QUICK_EXITS):
            verdict = verdict_after_exit(
                index=1, status=1, uptime=1.0, starts=starts, quick_exits=quick_exits
            )
            delays.append(verdict.delay)
            quick_exits = verdict.quick_exits
        expected = [
            min(MAX_RESTART_DELAY, FIRST_RESTART_DELAY * 2**n) for n in range(1, MAX_QUICK_EXITS)
        ]
        assert delays == [*expected, None]
        assert verdict.reason.startswith(f"worker process 1 ended {MAX_QUICK_EXITS} times")

    def test_describe_status(self) -> None:
        assert describe_status(0) == "exited with status 0"
        assert describe_status(-signal.SIGTERM) == "was killed by SIGTERM"
        assert describe_status(-200) == "was killed by signal 200"
