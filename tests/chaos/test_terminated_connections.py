"""Every connection of every worker terminated mid-drain (``pg_terminate_backend``).

One worker per (runtime, driver) pair, each with its own task, drains its own jobs when the
test terminates every backend whose ``application_name`` is a worker id: the pooled
connections, whatever statement they are in, and the listening one. Nothing may be lost or
run twice (an outcome that cannot be written is retried until it is), and a job added
afterwards must be picked up promptly: the poll interval is 30 s, so a pick-up within
seconds proves the worker listens again.
"""

from __future__ import annotations

import time
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

JOBS_PER_WORKER = 40
JOB_SECONDS = 0.1
"""Two seconds of work per worker (two slots each): every worker is still draining when the
test strikes, a few jobs in."""
PICK_UP_LIMIT = 15.0
"""Seconds a job added after the terminations may take to run: generous (the figure on an
idle machine is well under a second; the poll interval, 30 s, is what a worker that stopped
listening would need)."""


def terminate_worker_backends(
    connection: psycopg.Connection[Any], worker_ids: list[str]
) -> dict[str, int]:
    """``pg_terminate_backend`` every backend a worker opened; how many, by worker id."""
    rows = connection.execute(
        "select application_name, count(*) filter (where pg_terminate_backend(pid))"
        " from pg_stat_activity where application_name = any(%s) group by 1",
        (worker_ids,),
    ).fetchall()
    return {str(name): int(count) for name, count in rows}


def test_terminated_connections_lose_nothing_and_listening_resumes(
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    start_worker: StartWorker,
    ledger: Ledger,
) -> None:
    fleet = {
        pair: start_worker(
            database_url,
            pair,
            *fleet_args(pair, "--jobs", "2", "-m", "4", "--poll-interval", "30000"),
        )
        for pair in PAIRS
    }
    wait_until_ready(*fleet.values())
    added = {
        pair: add_jobs(sync_connection, task_name(pair), JOBS_PER_WORKER, {"sleep": JOB_SECONDS})
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
    worker_ids = {pair: worker.worker_id for pair, worker in fleet.items()}
    terminated = terminate_worker_backends(sync_connection, list(worker_ids.values()))
    done_at_termination = {pair: ledger.done_count(ids) for pair, ids in added.items()}
    for pair, worker_id in worker_ids.items():
        # At least its listening connection and one pooled connection.
        assert terminated.get(worker_id, 0) >= 2, (pair_id(pair), terminated)
    finished = [
        pair_id(pair) for pair, done in done_at_termination.items() if done == JOBS_PER_WORKER
    ]
    assert not finished, f"worker(s) done before the terminations, not mid-drain: {finished}"

    wait_for(
        lambda: (
            still_running(fleet.values())
            and all(ledger.done_count(ids) == JOBS_PER_WORKER for ids in added.values())
        ),
        "every job to run to completion after the terminations",
        timeout=60,
        describe=describe,
    )
    for pair, ids in added.items():
        ledger.check(ids, label=pair_id(pair))  # nothing lost, nothing run twice
    wait_for(
        lambda: not jobs_left(sync_connection), "the table to empty", timeout=20, describe=describe
    )

    # A job added now is announced on a channel the worker had to LISTEN on again.
    added_at = time.monotonic()
    late = {pair: add_jobs(sync_connection, task_name(pair), 1)[0] for pair in PAIRS}
    pick_up: dict[str, float] = {}

    def picked_up() -> bool:
        still_running(fleet.values())
        for pair, job_id in late.items():
            if pair_id(pair) not in pick_up and ledger.done([job_id]):
                pick_up[pair_id(pair)] = time.monotonic() - added_at
        return len(pick_up) == len(late)

    wait_for(
        picked_up, "the jobs added after the terminations", timeout=PICK_UP_LIMIT, describe=describe
    )
    for worker in fleet.values():
        assert worker.alive(), worker.describe()
    print(
        "\n[chaos] pg_terminate_backend of every worker connection: terminated "
        + ", ".join(f"{pair_id(pair)} {terminated[worker_ids[pair]]}" for pair in PAIRS)
        + "; unfinished at that moment: "
        + ", ".join(
            f"{pair_id(pair)} {JOBS_PER_WORKER - done}"
            for pair, done in done_at_termination.items()
        )
        + "; pick-up of a job added afterwards: "
        + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in sorted(pick_up.items()))
    )
    for worker in fleet.values():
        worker.terminate()
    for worker in fleet.values():
        assert worker.wait(timeout=30) == 0, worker.describe()
