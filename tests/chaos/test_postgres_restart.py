"""PostgreSQL restarted mid-drain: ``pg_ctl stop -m fast`` (or ``-m immediate``), two seconds
down, then started again on the same port.

The server is a throwaway of this module's own, never the session's shared one. It runs
with ``synchronous_commit=on``: the suite's usual ``off`` lets an immediate shutdown lose
transactions already reported committed, which for a job queue means a claim or a
completion forgotten (a job locked by a live worker, or run again); that is PostgreSQL's
documented trade-off, not the worker's to fix.

One worker per (runtime, driver) pair, each with its own task, drains its own jobs through
the restart. Every pooled connection dies with the server, and so does the listening one.
Nothing may be lost or run twice, and jobs added after the restart must be picked up
promptly with a 30 s poll interval, which proves the workers listen again.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any, NoReturn

import psycopg
import pytest

from graphile_worker.embedded import PostgresNotFoundError, TemporaryCluster, find_postgres_binaries

from .conftest import StartWorker, wait_until_ready
from .harness import (
    PAIRS,
    Ledger,
    add_jobs,
    describe_all,
    fleet_args,
    jobs_left,
    pair_id,
    still_running,
    task_name,
    wait_for,
)

pytestmark = pytest.mark.chaos

JOBS_PER_WORKER = 40
JOB_SECONDS = 0.1
"""Two seconds of work per worker (two slots each): every worker is still draining when the
server goes down, a few jobs in."""
LATE_JOBS_PER_WORKER = 5
DOWNTIME = 2.0
"""Seconds the server stays down: long enough for the workers' reconnection attempts to be
refused a few times, as in a real restart, and short enough for CI."""


def _missing(reason: str) -> NoReturn:
    """Skip, but fail in CI, where a skip would hide lost coverage."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


class RestartableServer:
    """A :class:`TemporaryCluster` that ``pg_ctl`` can restart under the worker's feet."""

    def __init__(self, cluster: TemporaryCluster, pg_ctl: str) -> None:
        self.cluster = cluster
        self._pg_ctl = pg_ctl
        self._restarted = False

    def _pg_ctl_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``pg_ctl`` on the data directory as the server's OS user.

        PostgreSQL refuses to run as root; :mod:`graphile_worker.embedded` then runs it as
        ``postgres``, so pg_ctl (which starts the new server) must run as that user too.
        """
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        environment = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        directory = self.cluster.directory
        return subprocess.run(
            [self._pg_ctl, *args, "-D", str(directory / "data"), "-w", "-t", "60"],
            capture_output=True,
            text=True,
            check=False,
            timeout=90,
            cwd=directory,
            env=environment,
            **kwargs,
        )

    def restart(self, mode: str, downtime: float) -> float:
        """Shut the server down in ``mode``, keep it down for ``downtime`` seconds, start it
        again; return the seconds it was unavailable.

        ``pg_ctl restart`` of a stopped server starts it with the options of the old one
        (``postmaster.opts``), so it listens on the same port with the same settings.
        """
        started = time.monotonic()
        stopped = self._pg_ctl_run("stop", "-m", mode)
        assert stopped.returncode == 0, f"pg_ctl stop failed:\n{stopped.stderr}"
        time.sleep(downtime)
        log = self.cluster.directory / "restarted.log"
        restarted = self._pg_ctl_run("restart", "-l", str(log))
        self._restarted = True
        assert restarted.returncode == 0, f"pg_ctl restart failed:\n{restarted.stderr}"
        return time.monotonic() - started

    def stop(self) -> None:
        # The restarted server is pg_ctl's child, not the cluster's: stop it first, or the
        # cluster would delete the data directory from under a running server.
        if self._restarted:
            self._pg_ctl_run("stop", "-m", "immediate")
        self.cluster.stop()


@pytest.fixture(scope="module")
def restartable_server() -> Iterator[RestartableServer]:
    """A PostgreSQL of this module's own, which the tests restart."""
    try:
        binaries = find_postgres_binaries()
    except PostgresNotFoundError as error:
        _missing(f"the restart tests start a server of their own: {error}")
    pg_ctl = binaries.program("pg_ctl")
    if not os.access(pg_ctl, os.X_OK):
        _missing(f"no pg_ctl next to postgres in {binaries.bindir}; the restart tests need it")
    cluster = TemporaryCluster(bindir=binaries.bindir, settings={"synchronous_commit": "on"})
    cluster.start()
    server = RestartableServer(cluster, pg_ctl)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def restartable_database(restartable_server: RestartableServer) -> Iterator[str]:
    """A fresh, migrated database on the restartable server."""
    from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
    from graphile_worker.migrations import migrate_sync

    name = f"chaos_{uuid.uuid4().hex[:8]}"
    cluster = restartable_server.cluster
    url = cluster.create_database(name)
    with psycopg.connect(url, autocommit=True) as connection:
        migrate_sync(PsycopgSyncExecutor(connection))
    yield url
    cluster.drop_database(name)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_restart_mid_drain_loses_nothing_and_runs_nothing_twice(
    mode: str,
    restartable_server: RestartableServer,
    restartable_database: str,
    start_worker: StartWorker,
    ledger: Ledger,
) -> None:
    url = restartable_database
    fleet = {
        pair: start_worker(
            url, pair, *fleet_args(pair, "--jobs", "2", "-m", "4", "--poll-interval", "30000")
        )
        for pair in PAIRS
    }
    wait_until_ready(*fleet.values())
    with psycopg.connect(url, autocommit=True) as connection:
        added = {
            pair: add_jobs(connection, task_name(pair), JOBS_PER_WORKER, {"sleep": JOB_SECONDS})
            for pair in PAIRS
        }

    def describe() -> str:
        progress = {pair_id(pair): ledger.done_count(ids) for pair, ids in added.items()}
        return f"done per worker: {progress}\n{describe_all(fleet.values())}"

    wait_for(
        lambda: all(ledger.done_count(ids) >= 3 for ids in added.values()),
        "every worker to be draining",
        timeout=60,
        describe=describe,
    )
    unfinished = {pair: JOBS_PER_WORKER - ledger.done_count(ids) for pair, ids in added.items()}
    downtime = restartable_server.restart(mode, DOWNTIME)
    finished = [pair_id(pair) for pair, count in unfinished.items() if count == 0]
    assert not finished, f"worker(s) done before the restart, not mid-drain: {finished}"

    with psycopg.connect(url, autocommit=True) as connection:
        late = {
            pair: add_jobs(connection, task_name(pair), LATE_JOBS_PER_WORKER, {"sleep": 0.01})
            for pair in PAIRS
        }
        drained_in = wait_for(
            lambda: (
                still_running(fleet.values())
                and all(
                    ledger.done_count([*added[pair], *late[pair]])
                    == JOBS_PER_WORKER + LATE_JOBS_PER_WORKER
                    for pair in PAIRS
                )
            ),
            "every job to run to completion after the restart",
            timeout=60,
            describe=describe,
        )
        for pair in PAIRS:
            # Nothing lost, nothing run twice.
            ledger.check([*added[pair], *late[pair]], label=pair_id(pair))
        wait_for(
            lambda: not jobs_left(connection), "the table to empty", timeout=20, describe=describe
        )
    for worker in fleet.values():
        assert worker.alive(), worker.describe()
    print(
        f"\n[chaos] pg_ctl stop -m {mode}, start: down {downtime:.2f}s; unfinished then: "
        + ", ".join(f"{pair_id(pair)} {count}" for pair, count in unfinished.items())
        + f"; all {len(PAIRS) * (JOBS_PER_WORKER + LATE_JOBS_PER_WORKER)} jobs done "
        f"{drained_in:.2f}s after the server was back"
    )
    for worker in fleet.values():
        worker.terminate()
    for worker in fleet.values():
        assert worker.wait(timeout=30) == 0, worker.describe()
