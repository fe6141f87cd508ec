"""Poison jobs: a payload nested 3,000 levels deep, and handlers that raise ``SystemExit``,
``KeyboardInterrupt`` or a ``BaseException`` of their own, async and sync.

Each must fail alone: its attempt spent, ``last_error`` set, its lock released, and the
worker process still running the jobs around it and the ones added afterwards. One worker per
(runtime, driver) pair, each with its own task; the nested payload is decoded by the driver
while it reads a claim, so every driver meets it, and half the fleet claims it in a batch
with healthy jobs (the local queue), where a decoding error that escaped would lose the
whole batch.
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
    fleet_args,
    jobs_left,
    pair_id,
    still_running,
    task_name,
    wait_for,
)

pytestmark = pytest.mark.chaos

NESTING = 3000
RAISED = {
    "SystemExit": "sys.exit from a handler",
    "KeyboardInterrupt": "KeyboardInterrupt",
    "ChaosBaseException": "raised by the handler on purpose",
}
"""What each handler raises (see the chaos tasks file), and the text ``last_error`` must hold."""


def add_nested_payload_job(connection: psycopg.Connection[Any], task: str) -> int:
    """A job whose payload PostgreSQL accepts and no Python JSON decoder should recurse into."""
    row = connection.execute(
        "select (graphile_worker.add_job(%s, (repeat('[', %s) || repeat(']', %s))::json,"
        " max_attempts => 1)).id",
        (task, NESTING, NESTING),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_poison_jobs_fail_alone_and_the_worker_goes_on(
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    start_worker: StartWorker,
    ledger: Ledger,
) -> None:
    fleet = {
        pair: start_worker(database_url, pair, *fleet_args(pair, "--jobs", "2", "-m", "4"))
        for pair in PAIRS
    }
    wait_until_ready(*fleet.values())
    healthy: dict[tuple[str, str], list[int]] = {}
    poison: dict[tuple[str, str], dict[int, str]] = {}
    for pair in PAIRS:
        task = task_name(pair)
        before = add_jobs(sync_connection, task, 5, {"sleep": 0.01})
        expected = {add_nested_payload_job(sync_connection, task): "nested"}
        for name, text in RAISED.items():
            for identifier in (task, f"{task}_sync"):
                (job_id,) = add_jobs(
                    sync_connection, identifier, 1, {"raise": name}, max_attempts=1
                )
                expected[job_id] = text
        after = add_jobs(sync_connection, task, 5, {"sleep": 0.01})
        healthy[pair] = [*before, *after]
        poison[pair] = expected

    def settled() -> bool:
        still_running(fleet.values())
        rows = jobs_left(sync_connection)
        return all(row["attempts"] >= 1 and row["locked_by"] is None for row in rows) and all(
            ledger.done_count(ids) == len(ids) for ids in healthy.values()
        )

    def describe() -> str:
        rows = "\n".join(map(str, jobs_left(sync_connection)))
        return f"rows:\n{rows}\n{describe_all(fleet.values())}"

    wait_for(settled, "every job to run or fail", timeout=30, describe=describe)

    problems = []
    rows = {row["id"]: row for row in jobs_left(sync_connection)}
    for pair, expected in poison.items():
        worker = fleet[pair]
        if not worker.alive():
            problems.append(f"{pair_id(pair)}: the worker exited\n{worker.describe()}")
        for job_id, text in expected.items():
            row = rows.get(job_id)
            if row is None:
                problems.append(f"{pair_id(pair)}: poison job {job_id} ({text}) was deleted")
            elif (
                row["attempts"] != 1
                or row["locked_by"] is not None
                or text not in (row["last_error"] or "")
            ):
                problems.append(f"{pair_id(pair)}: poison job {job_id}, expected {text!r}: {row}")
    assert not problems, "\n".join(problems)
    # Only the poison is left (failed for good, max_attempts 1); every healthy job ran.
    assert set(rows) == {job_id for expected in poison.values() for job_id in expected}
    for pair, ids in healthy.items():
        ledger.check(ids, label=pair_id(pair))

    # Still working: jobs added now run, in the same processes.
    late = {pair: add_jobs(sync_connection, task_name(pair), 3) for pair in PAIRS}
    wait_for(
        lambda: (
            still_running(fleet.values())
            and all(ledger.done_count(ids) == len(ids) for ids in late.values())
        ),
        "the jobs added after the poison to run",
        timeout=30,
        describe=describe,
    )
    for pair, ids in late.items():
        assert {run.pid for run in ledger.done(ids)} == {fleet[pair].pid}
    for worker in fleet.values():
        worker.terminate()
    for worker in fleet.values():
        assert worker.wait(timeout=30) == 0, worker.describe()
