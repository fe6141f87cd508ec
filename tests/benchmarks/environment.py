"""Where the benchmarks run: the PostgreSQL server, the machine, and what the worker supports.

The server is ``DATABASE_URL`` when set (used as configured; its settings are printed), or
a temporary cluster from :mod:`graphile_worker.embedded` started with
:data:`SERVER_SETTINGS`. Those keep PostgreSQL's durable defaults (every commit is flushed
to disk), because a queue that commits per job is bound by that flush, and a figure taken
without it would promise throughput no production server delivers. Every measured run gets
a fresh database cloned from a migrated template.

The worker's options are detected from ``graphile-worker run --help`` rather than assumed,
so one benchmark works against older and newer versions of the package.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphile_worker.embedded import Cluster, ExistingServer, TemporaryCluster

if TYPE_CHECKING:
    from typing_extensions import Self

SERVER_SETTINGS: Mapping[str, str] = {
    # PostgreSQL's own defaults, spelled out because the embedded cluster turns them off
    # for tests: a commit returns only once its WAL is on disk.
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    # Room for the whole working set, so that runs measure the queue, not the disk cache.
    "shared_buffers": "256MB",
    # No checkpoint forced by WAL volume or time in the middle of a run (each run starts
    # with an explicit CHECKPOINT instead).
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "max_connections": "200",
}
"""Settings of the temporary server, before any ``--pg-setting``."""

REPORTED_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "max_connections",
    "autovacuum",
)
"""Server settings printed with the results, whichever server is used."""

REPOSITORY = Path(__file__).resolve().parents[2]
NODE_PACKAGE = REPOSITORY / "tests" / "node" / "node_modules" / "graphile-worker"
TASKS_FILE = Path(__file__).resolve().parent / "worker_tasks.py"
NODE_RUNNER = Path(__file__).resolve().parent / "node_worker.mjs"


class BenchError(Exception):
    """Something is broken (not slow): a worker crashed, a job was lost, a run timed out."""


# ------------------------------------------------------------------------------- server


class BenchServer:
    """The PostgreSQL server of one benchmark session, and fresh databases on it."""

    def __init__(self, url: str | None, extra_settings: Mapping[str, str]) -> None:
        self.external = url is not None
        settings = {**SERVER_SETTINGS, **extra_settings}
        self._cluster: Cluster = (
            ExistingServer(url) if url is not None else TemporaryCluster(settings=settings)
        )
        self._token = uuid.uuid4().hex[:8]
        self._numbers = itertools.count(1)
        self._template: str | None = None

    def __enter__(self) -> Self:
        self._cluster.start()
        try:
            self._template = self._create_template()
        except BaseException:
            self._cluster.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._template is not None:
                self._cluster.drop_database(self._template)
        finally:
            self._cluster.stop()

    def _create_template(self) -> str:
        from graphile_worker import SyncWorkerUtils

        name = f"gwbench_{self._token}_template"
        url = self._cluster.create_database(name)
        with SyncWorkerUtils.connect(url) as utils:
            utils.migrate()
        return name

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A migrated database of its own for one run; dropped afterwards."""
        name = f"gwbench_{self._token}_{next(self._numbers)}"
        url = self._cluster.create_database(name, template=self._template)
        try:
            yield url
        finally:
            self._cluster.drop_database(name)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` on the server's maintenance database."""
        import psycopg

        with psycopg.connect(self._cluster.admin_url, autocommit=True) as connection:
            return connection.execute(sql, params).fetchall()

    def describe(self) -> dict[str, Any]:
        """Version and the settings that matter for the figures."""
        version = self.query("select version()")[0][0]
        settings = {
            name: self.query("select current_setting(%s)", (name,))[0][0]
            for name in REPORTED_SETTINGS
        }
        return {
            "version": version,
            "server": "DATABASE_URL" if self.external else "temporary cluster (embedded.py)",
            "settings": settings,
        }


def prepare_run(url: str) -> None:
    """Make runs comparable: fresh planner statistics, and no checkpoint debt carried in."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ANALYZE graphile_worker._private_jobs")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            connection.execute("CHECKPOINT")


# ------------------------------------------------------------------------------ machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _version_of(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _node_version() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    completed = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return completed.stdout.strip() or None


def node_package_version() -> str | None:
    """Version of the pinned Node graphile-worker package, if it is installed."""
    import json

    with contextlib.suppress(OSError, ValueError):
        version = json.loads((NODE_PACKAGE / "package.json").read_text()).get("version")
        return version if isinstance(version, str) else None
    return None


def describe_machine() -> dict[str, Any]:
    """CPU, memory, OS and the versions of everything measured."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "graphile_worker": _version_of("graphile-worker"),
        "asyncpg": _version_of("asyncpg"),
        "psycopg": _version_of("psycopg"),
        "trio": _version_of("trio"),
        "node": _node_version(),
        "node_graphile_worker": node_package_version(),
        "load_average": load_average(),
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


# ----------------------------------------------------------------------------- features

CLI_OPTIONS = (
    "--local-queue-size",
    "--complete-job-batch-delay",
    "--fail-job-batch-delay",
    "--quiet",
    "--processes",
    "--runtime",
)
"""``graphile-worker run`` options the figures use when the installed version has them."""


@dataclass(frozen=True)
class Features:
    """What the installed graphile-worker offers."""

    worker_command: tuple[str, ...]
    cli_options: frozenset[str]
    drivers: tuple[str, ...]
    library: dict[str, bool] = field(default_factory=dict)

    def has(self, option: str) -> bool:
        """Whether ``graphile-worker run`` accepts ``option``."""
        return option in self.cli_options


def worker_command() -> tuple[str, ...]:
    """The ``graphile-worker`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "graphile-worker"
    if script.exists():
        return (str(script),)
    return (sys.executable, "-m", "graphile_worker.cli")


def _library_features() -> dict[str, bool]:
    import dataclasses

    import graphile_worker

    fields = {option.name for option in dataclasses.fields(graphile_worker.WorkerOptions)}
    return {
        "LocalQueueOptions": hasattr(graphile_worker, "LocalQueueOptions"),
        "WorkerOptions.local_queue": "local_queue" in fields,
        "WorkerOptions.complete_job_batch_delay": "complete_job_batch_delay" in fields,
        "WorkerOptions.fail_job_batch_delay": "fail_job_batch_delay" in fields,
    }


def detect_features() -> Features:
    """Read ``graphile-worker run --help`` for the options and drivers it accepts.

    Raises:
        BenchError: the command does not run at all.
    """
    command = worker_command()
    completed = subprocess.run(
        [*command, "run", "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    if completed.returncode != 0:
        raise BenchError(
            f"`{' '.join(command)} run --help` failed with status {completed.returncode}:\n"
            f"{completed.stderr.strip()}"
        )
    # An option counts only where it is declared (at the start of a line of the options
    # list), not where the command's text or another option's description mentions it.
    text = completed.stdout.partition("\nOptions:")[2]
    # click indents declarations by two spaces and wrapped descriptions much further.
    declared = re.compile(r"^ {2}(?:-\w,\s*)?(?:--[\w-]+,\s*)*(--[\w-]+)", re.MULTILINE)
    options = frozenset(declared.findall(text)) & frozenset(CLI_OPTIONS)
    match = re.search(r"--driver\s+\[([^\]]+)\]", text)
    drivers = tuple(match.group(1).split("|")) if match else ()
    return Features(command, options, drivers, _library_features())
