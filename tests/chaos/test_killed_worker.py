"""``kill -9`` of a worker mid-drain, while two others run, all with short recovery settings.

The dead worker's registry row stops being refreshed; two seconds later (``--stale-after``)
a survivor's sweep hands back every job the dead worker still locked, and they run. Only
those jobs may run twice, each at most once more. The attempt of a job the dead worker had
reported running stays spent; a job it had claimed but not reported (waiting in its local
queue, or started less than a second before) gets its attempt back. The ledger's attempt
numbers show which happened: the survivor's run of a refunded job is attempt 1 again.

The jobs that run twice are exactly those the dead worker had finished but not yet recorded
as finished. In the second case the victim batches its completions (the throughput setting,
beside its local queue) with a delay longer than it lives, so every job it finished is such
a job. The two cases put the six (runtime, driver) pairs in the three roles between them.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg
import pytest

from graphile_worker.utils import SyncWorkerUtils

from .conftest import StartWorker, wait_until_ready
from .harness import FAST_RECOVERY, STALE_AFTER, Ledger, add_jobs, describe_all, wait_for

pytestmark = pytest.mark.chaos

TASK = "chaos"
SHORT_JOBS = 200
LONG_JOBS = 3
RECOVERY_SLACK = 12.0
"""Seconds allowed beyond ``--stale-after`` (and a recovery delay of 0) for the sweep to run
(it runs on each heartbeat, every 0.5 s give or take 10 %) and the survivor to finish the
recovered jobs, on a loaded two-core machine."""


def _locked_by(connection: psycopg.Connection[Any], worker_id: str) -> set[int]:
    rows = connection.execute(
        "select id from graphile_worker._private_jobs where locked_by = %s", (worker_id,)
    ).fetchall()
    return {int(row[0]) for row in rows}


def _reported_running(connection: psycopg.Connection[Any], worker_id: str) -> set[int]:
    row = connection.execute(
        "select running_job_ids from graphile_worker._pyworker_workers where worker_id = %s",
        (worker_id,),
    ).fetchone()
    return set(row[0]) if row is not None else set()


def _backends(connection: psycopg.Connection[Any], worker_id: str) -> int:
    row = connection.execute(
        "select count(*) from pg_stat_activity where application_name = %s", (worker_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("victim_pair", "survivor_pairs", "throughput", "batching"),
    [
        pytest.param(
            ("asyncio", "asyncpg"),
            (("trio", "psycopg-anyio"), ("asyncio", "psycopg-threaded")),
            (),
            (),
            id="without-local-queue",
        ),
        pytest.param(
            ("trio", "psycopg-threaded"),
            (("asyncio", "psycopg"), ("asyncio", "psycopg-anyio")),
            ("--local-queue-size", "20"),
            ("--complete-job-batch-delay", "5000"),
            id="with-local-queue-and-batched-completions",
        ),
    ],
)
def test_a_killed_workers_jobs_are_handed_back_and_run_once_more_at_most(
    victim_pair: tuple[str, str],
    survivor_pairs: tuple[tuple[str, str], ...],
    throughput: tuple[str, ...],
    batching: tuple[str, ...],
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    start_worker: StartWorker,
    ledger: Ledger,
) -> None:
    common = ("--jobs", "4", *FAST_RECOVERY, *throughput)
    victim = start_worker(database_url, victim_pair, *common, *batching, task=TASK)
    wait_until_ready(victim)
    # The victim is alone when the jobs arrive, so it takes the long ones (priority -1 comes
    # first): they sleep on their first attempt only, long enough to be reported running.
    long_ids = add_jobs(sync_connection, TASK, LONG_JOBS, {"sleep_first": 60}, priority=-1)
    short_ids = add_jobs(sync_connection, TASK, SHORT_JOBS, {"sleep": 0.05})
    survivors = [start_worker(database_url, pair, *common, task=TASK) for pair in survivor_pairs]
    workers = (victim, *survivors)
    wait_until_ready(*survivors)
    victim_id = victim.worker_id

    def describe() -> str:
        return f"ledger: {len(ledger.done())} done\n{describe_all(workers)}"

    # Mid-drain: the victim has reported its long jobs running and finished some short ones.
    wait_for(
        lambda: (
            set(long_ids) <= _reported_running(sync_connection, victim_id)
            and sum(1 for run in ledger.done(short_ids) if run.pid == victim.pid) >= 10
        ),
        "the victim to report its long jobs running and finish a few short ones",
        timeout=30,
        describe=describe,
    )
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    short_left = SHORT_JOBS - ledger.done_count(short_ids)
    victim.wait(timeout=10)
    assert victim.process.returncode == -signal.SIGKILL

    # Once the dead client's backends are gone nothing can change its locks but a sweep,
    # which waits for --stale-after: this is exactly what the victim left locked.
    wait_for(lambda: _backends(sync_connection, victim_id) == 0, "its backends to go", timeout=10)
    locked = _locked_by(sync_connection, victim_id)
    running = _reported_running(sync_connection, victim_id)
    assert set(long_ids) <= locked & running
    assert short_left > 0, "the short jobs were all done before the kill, not mid-drain"
    # Finished by the victim, but the deletion recording it never committed.
    unrecorded = {run.job_id for run in ledger.done(locked) if run.pid == victim.pid}
    if throughput:
        # Jobs waiting in its local queue: claimed (an attempt taken), never started.
        assert locked - running, "the victim's local queue was empty when it was killed"
    if batching:
        # Its first batch was due 5 s after its first completion: it died with all of them.
        victim_done = {run.job_id for run in ledger.done() if run.pid == victim.pid}
        assert unrecorded == victim_done, "the victim recorded a batch before it was killed"
    # What an operator would see: the registry, and a dry-run sweep naming the worker dead.
    utils = SyncWorkerUtils(sync_connection)
    (listed,) = [info for info in utils.list_workers() if info.worker_id == victim_id]
    assert (listed.locked_jobs, listed.running_jobs) == (len(locked), len(running))
    preview = utils.sweep(dry_run=True, dead=[victim_id])
    assert {entry.job.id: entry.attempt_spent for entry in preview.jobs_of(victim_id)} == {
        job_id: job_id in running for job_id in locked
    }

    everything = [*long_ids, *short_ids]
    wait_for(
        lambda: ledger.done_count(everything) == len(everything),
        "every job to run to completion",
        timeout=STALE_AFTER + RECOVERY_SLACK,
        describe=describe,
    )
    seconds_after_kill = time.monotonic() - killed_at
    wait_for(
        lambda: (
            sync_connection.execute("select count(*) from graphile_worker._private_jobs").fetchone()
            == (0,)
        ),
        "the table to be empty",
        timeout=10,
        describe=describe,
    )

    counts = ledger.check(everything, may_repeat=locked)
    assert {job_id for job_id, count in counts.items() if count > 1} == unrecorded
    # Each job the victim held ran to completion on a survivor, and that run's attempt
    # number says whether the recovery kept the killed attempt spent or refunded it.
    for job_id in sorted(locked):
        survivor_runs = [run for run in ledger.done([job_id]) if run.pid != victim.pid]
        assert len(survivor_runs) == 1, (job_id, ledger.done([job_id]))
        expected_attempt = 2 if job_id in running else 1
        assert survivor_runs[0].attempt == expected_attempt, (job_id, sorted(running))
    recovered_by = [
        worker.name for worker in survivors if f"Recovered worker {victim_id}" in worker.log()
    ]
    assert recovered_by, describe()
    remaining = sync_connection.execute(
        "select worker_id from graphile_worker._pyworker_workers order by 1"
    ).fetchall()
    assert remaining == sorted((survivor.worker_id,) for survivor in survivors)

    print(
        f"\n[chaos] kill -9 {victim.name} ({' '.join((*throughput, *batching)) or 'plain'}), "
        f"recovered by {', '.join(recovered_by)}: "
        f"{len(locked)} job(s) locked by the dead worker ({len(locked & running)} reported "
        f"running, {len(locked - running)} not); {short_left} short job(s) undone at the "
        f"kill; {sum(1 for count in counts.values() if count > 1)} ran twice; all done "
        f"{seconds_after_kill:.2f}s after the kill"
    )
    for survivor in survivors:
        survivor.terminate()
    for survivor in survivors:
        assert survivor.wait(timeout=20) == 0, survivor.describe()
