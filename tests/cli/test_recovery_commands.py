"""``graphile-worker workers`` and ``graphile-worker sweep`` against a real database."""

from __future__ import annotations

import json
import os
import socket
from typing import TYPE_CHECKING, Any

from ..worker.test_recovery import DEAD, lock_jobs, stage_dead_worker
from .conftest import CliCall

if TYPE_CHECKING:
    import psycopg


def _add_jobs(connection: psycopg.Connection[Any], count: int) -> list[int]:
    rows = [
        connection.execute("select (graphile_worker.add_job('work', '{}'::json)).id").fetchone()
        for _ in range(count)
    ]
    return [row[0] for row in rows if row is not None]


def test_workers_lists_the_registry(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    assert cli("workers", "-c", database_url).stdout.strip() == "No registered workers."
    stage_dead_worker(sync_connection, _add_jobs(sync_connection, 2))
    table = cli("workers", "-c", database_url).stdout.splitlines()
    assert table[0].split() == [
        "WORKER", "HOST", "PID", "STARTED", "HEARTBEAT", "RUNNING", "LOCKED", "STATE"
    ]  # fmt: skip
    assert table[1].split()[:3] == [DEAD, "elsewhere", "4242"]
    assert table[1].split()[-3:] == ["0", "2", "STALE"]
    document = json.loads(cli("workers", "--json", "-c", database_url).stdout)
    (record,) = document["workers"]
    assert set(record) == {
        "worker_id", "hostname", "pid", "library_version", "started_at", "last_heartbeat_at",
        "heartbeat_interval", "stale_after", "long_running_stale_after", "recovery_delay",
        "running_jobs", "locked_jobs", "stale",
    }  # fmt: skip
    assert record["worker_id"] == DEAD and record["stale"] is True
    assert record["locked_jobs"] == 2
    assert document["unregistered_lock_holders"] == []


def test_workers_also_lists_unregistered_lock_holders(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    lock_jobs(sync_connection, _add_jobs(sync_connection, 3), "pool-0123456789abcdef")
    output = cli("workers", "-c", database_url).stdout.splitlines()
    assert output[0] == "No registered workers."
    assert output[2] == "Unregistered lock holders (Node workers, or ours with --no-recovery):"
    assert output[3].split() == ["WORKER", "LOCKED", "JOBS", "LOCKED", "QUEUES", "OLDEST", "LOCK"]
    assert output[4].split()[:3] == ["pool-0123456789abcdef", "3", "0"]
    document = json.loads(cli("workers", "--json", "-c", database_url).stdout)
    assert document["workers"] == []
    (holder,) = document["unregistered_lock_holders"]
    assert set(holder) == {"worker_id", "locked_jobs", "locked_queues", "oldest_lock_at"}
    assert (holder["worker_id"], holder["locked_jobs"]) == ("pool-0123456789abcdef", 3)


def test_sweep_dry_run_then_for_real(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    ids = _add_jobs(sync_connection, 2)
    stage_dead_worker(sync_connection, ids, running=ids[:1])
    dry = cli("sweep", "--dry-run", "-c", database_url).stdout.splitlines()
    assert dry == [
        f"Would recover worker {DEAD}: 2 job(s)",
        f"  job {ids[0]} (work): attempt spent",
        f"  job {ids[1]} (work): attempt refunded",
    ]
    locked = "select count(*) from graphile_worker._private_jobs where locked_by is not null"
    assert sync_connection.execute(locked).fetchone() == (2,)
    done = cli("sweep", "-c", database_url).stdout.splitlines()
    assert done[0] == f"Recovered worker {DEAD}: 2 job(s)"
    assert done[1].startswith(f"  job {ids[0]} (work): attempt spent, runs again from ")
    assert sync_connection.execute(locked).fetchone() == (0,)
    assert cli("sweep", "-c", database_url).stdout.strip() == "No stale workers."


def test_sweep_json(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    ids = _add_jobs(sync_connection, 1)
    stage_dead_worker(sync_connection, ids)
    document = json.loads(cli("sweep", "--json", "--dry-run", "-c", database_url).stdout)
    assert set(document) == {
        "dry_run", "skipped", "workers", "jobs", "unlocked_queues", "forgotten_workers"
    }  # fmt: skip
    assert document["dry_run"] is True and document["workers"] == [DEAD]
    (job,) = document["jobs"]
    assert job == {
        "id": ids[0], "task_identifier": "work", "queue_name": None, "worker_id": DEAD,
        "action": "recovered", "attempt_spent": False, "run_at": None,
    }  # fmt: skip
    done = json.loads(cli("sweep", "--json", "-c", database_url).stdout)
    assert done["forgotten_workers"] == [DEAD] and done["jobs"][0]["run_at"] is not None


def test_sweep_dead_pid_recovers_a_fresh_worker_on_this_host(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    ids = _add_jobs(sync_connection, 1)
    stage_dead_worker(sync_connection, ids, silent_for=0)
    sync_connection.execute(
        "update graphile_worker._pyworker_workers set hostname = %s, pid = %s",
        (socket.gethostname(), os.getpid()),
    )
    assert cli("sweep", "-c", database_url).stdout.strip() == "No stale workers."
    assert cli("sweep", "--dead-pid", "1", "-c", database_url).stdout.strip() == (
        "No stale workers."
    )
    output = cli("sweep", "--dead-pid", str(os.getpid()), "-c", database_url).stdout
    assert output.startswith(f"Recovered worker {DEAD}: 1 job(s)")


def test_run_refuses_a_stale_after_shorter_than_two_heartbeats(
    cli: CliCall, database_url: str
) -> None:
    result = cli(
        "run", "--once", "-c", database_url, "--heartbeat-interval", "10000", "--stale-after", "15000",
        expect=2,
    )  # fmt: skip
    assert "--stale-after (15000 ms) must be at least twice --heartbeat-interval" in result.stderr
