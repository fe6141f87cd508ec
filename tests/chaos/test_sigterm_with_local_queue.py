"""SIGTERM while the local queue is full: nothing spent on jobs that never started.

A worker with a local queue holds jobs it has claimed (their attempt already counted) but not
started. On SIGTERM it must hand them back with the attempt refunded and their place in line
kept, let the running jobs finish within the grace period, and release those still running
after it, refunded too. One worker per (runtime, driver) pair, since signal handling differs
between asyncio and trio. Afterwards a ``--once`` worker runs everything left, which proves
that no job was lost and none ran twice.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from .conftest import StartWorker, wait_until_ready
from .harness import (
    PAIRS,
    Ledger,
    add_jobs,
    describe_all,
    jobs_left,
    pair_id,
    task_name,
    wait_for,
)

pytestmark = pytest.mark.chaos

JOBS_PER_WORKER = 40
QUEUE_SIZE = 20
CONCURRENCY = 2
JOB_SECONDS = 0.25
GRACE_MS = 200
"""Shorter than a job: a job that started just before the signal is still running when the
grace period ends, and is released; one about to end finishes. Either is right."""


def _locked_by(connection: psycopg.Connection[Any], worker_id: str) -> int:
    row = connection.execute(
        "select count(*) from graphile_worker._private_jobs where locked_by = %s", (worker_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_sigterm_hands_back_the_local_queue_without_spending_attempts(
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    start_worker: StartWorker,
    ledger: Ledger,
) -> None:
    options = (
        "--jobs", str(CONCURRENCY), "-m", "4", "--local-queue-size", str(QUEUE_SIZE),
        "--shutdown-grace-period", str(GRACE_MS),
    )  # fmt: skip
    fleet = {pair: start_worker(database_url, pair, *options) for pair in PAIRS}
    wait_until_ready(*fleet.values())
    added = {
        pair: add_jobs(sync_connection, task_name(pair), JOBS_PER_WORKER, {"sleep": JOB_SECONDS})
        for pair in PAIRS
    }

    def describe() -> str:
        return describe_all(fleet.values())

    # Running jobs, and more than that claimed: the local queue holds jobs not yet started.
    wait_for(
        lambda: all(
            ledger.done_count(added[pair]) >= 1
            and _locked_by(sync_connection, worker.worker_id) > CONCURRENCY
            for pair, worker in fleet.items()
        ),
        "every worker to have run a job and filled its local queue",
        timeout=60,
        describe=describe,
    )
    # What each worker holds as the signals go out: claimed, so each attempt counted.
    held = {
        pair: dict(
            sync_connection.execute(
                "select id, attempts from graphile_worker._private_jobs where locked_by = %s",
                (worker.worker_id,),
            ).fetchall()
        )
        for pair, worker in fleet.items()
    }
    for worker in fleet.values():
        worker.terminate()
    for worker in fleet.values():
        assert worker.wait(timeout=30) == 0, worker.describe()
        assert "stopping: received SIGTERM" in worker.log(), worker.describe()

    started = {run.job_id for run in ledger.started()}
    done = {run.job_id for run in ledger.done()}
    summary = []
    for pair, ids in added.items():
        rows = jobs_left(sync_connection, task_name(pair))
        left = {row["id"] for row in rows}
        assert left | done >= set(ids), f"{pair_id(pair)}: job(s) vanished"
        assert not left & done, f"{pair_id(pair)}: finished job(s) still in the table"
        for row in rows:
            # Never started, or interrupted: either way unlocked and the attempt refunded.
            assert row["locked_by"] is None and row["attempts"] == 0, (pair_id(pair), row)
        assert set(held[pair].values()) == {1}, (pair_id(pair), held[pair])
        # Claimed into the local queue, never started: handed back with the attempt
        # refunded (1 -> 0) and without a delay, so each keeps its place in line.
        queued = [row for row in rows if row["id"] in held[pair] and row["id"] not in started]
        assert queued, f"{pair_id(pair)}: nothing was waiting in its local queue"
        assert all(row["due"] for row in queued), (pair_id(pair), queued)
        interrupted = [row for row in rows if row["id"] in started]
        summary.append(
            f"{pair_id(pair)}: held {len(held[pair])}, of which {len(queued)} never started "
            f"(refunded), {len(interrupted)} interrupted and released, "
            f"{len(done & set(held[pair]))} finished in the grace period or before"
        )
    registered = sync_connection.execute(
        "select count(*) from graphile_worker._pyworker_workers"
    ).fetchone()
    assert registered == (0,), "a worker that stopped cleanly is still in the registry"

    # Nothing lost: one more worker runs everything left (released jobs made due now).
    sync_connection.execute("update graphile_worker._private_jobs set run_at = now()")
    leftovers = {row["id"] for row in jobs_left(sync_connection)}
    everyone = ",".join(task_name(pair) for pair in PAIRS)
    finisher = start_worker(
        database_url, ("asyncio", "psycopg"), "--once", "--jobs", "40", task=everyone
    )
    assert finisher.wait(timeout=60) == 0, finisher.describe()
    for pair, ids in added.items():
        ledger.check(ids, label=pair_id(pair))  # every job ran to completion exactly once
    assert not jobs_left(sync_connection)
    # The leftovers' attempts had all been refunded: their one completed run is attempt 1.
    assert {run.attempt for run in ledger.done(leftovers)} == {1}
    print("\n[chaos] SIGTERM with a full local queue: " + "; ".join(summary))
