"""The claim/complete/fail/release statements themselves, through JobSource.

These pin down what the runner relies on and what a future local queue or completion
batcher will rely on: batches of any size, one job per serial queue per claim, settling
only jobs this worker holds, refunding attempts on release, the local clock, and Node's
stale-lock reset.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from psycopg.rows import dict_row

from graphile_worker.spec import Job, JobSpec
from graphile_worker.sql.worker import FailureSpec
from graphile_worker.worker._fetch import JobSource

from .conftest import job_row, job_rows

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio

LOGGER = logging.getLogger("tests.worker")


def source(driver: DatabaseDriver, worker_id: str = "w1", **overrides: Any) -> JobSource:
    settings: dict[str, Any] = {
        "driver": driver,
        "schema": "graphile_worker",
        "worker_id": worker_id,
        "task_identifiers": ["a", "b"],
        "forbidden_flags": (),
        "use_local_time": False,
        "logger": LOGGER,
    }
    settings.update(overrides)
    return JobSource(**settings)


async def test_a_batch_claim_takes_one_job_per_serial_queue(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    for n in range(3):
        await utils.add_job("a", {"n": n}, spec=JobSpec(queue_name="q1"))
        await utils.add_job("b", {"n": n}, spec=JobSpec(queue_name="q2"))
    loose = [await utils.add_job("a", {"loose": n}) for n in range(2)]
    await utils.add_job("other", {})

    claimed = await source(driver).claim(10)

    assert sorted((job.queue_name or "", job.task_identifier) for job in claimed) == [
        ("", "a"),
        ("", "a"),
        ("q1", "a"),
        ("q2", "b"),
    ]
    assert {job.id for job in claimed} >= {job.id for job in loose}
    assert all(job.attempts == 1 and job.locked_by == "w1" for job in claimed)
    queues = sync_connection.execute(
        "select queue_name, locked_by from graphile_worker._private_job_queues order by 1"
    ).fetchall()
    assert queues == [("q1", "w1"), ("q2", "w1")]
    # Another worker finds the queues locked and the loose jobs taken.
    assert await source(driver, "w2").claim(10) == []


async def test_a_claimed_job_holds_every_column_as_stored(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    """The claim decodes its rows by position: each field must land where it belongs."""
    spec = JobSpec(
        queue_name="q1", priority=-3, max_attempts=7, job_key="k1", flags={"slow", "big"}
    )
    await utils.add_job("a", {"deep": [1, {"x": None}]}, spec=spec)
    plain = await utils.add_job("b", [1, 2])

    claimed = await source(driver).claim(10)

    assert len(claimed) == 2
    stored = sync_connection.cursor(row_factory=dict_row).execute(
        """select jobs.*, tasks.identifier as task_identifier, queues.queue_name
        from graphile_worker._private_jobs as jobs
        join graphile_worker._private_tasks as tasks on tasks.id = jobs.task_id
        left join graphile_worker._private_job_queues as queues on queues.id = jobs.job_queue_id
        order by jobs.priority"""
    )
    assert claimed == [Job.from_row(row) for row in stored.fetchall()]
    keyed, loose = claimed
    assert keyed.flags == frozenset({"slow", "big"})
    assert (keyed.queue_name, keyed.key, keyed.max_attempts) == ("q1", "k1", 7)
    assert keyed.payload == {"deep": [1, {"x": None}]}
    assert (loose.id, loose.payload, loose.flags, loose.queue_name) == (
        plain.id,
        [1, 2],
        frozenset(),
        None,
    )


async def test_limit_is_honoured_in_priority_order(
    driver: DatabaseDriver, utils: WorkerUtils
) -> None:
    for priority in (3, 1, 2, 0):
        await utils.add_job("a", {"p": priority}, spec=JobSpec(priority=priority))
    claimed = await source(driver).claim(2)
    assert [job.priority for job in claimed] == [0, 1]


async def test_failing_and_releasing_touch_only_jobs_this_worker_holds(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    mine = source(driver, "w1")
    theirs = source(driver, "w2")
    await utils.add_job("a", {}, spec=JobSpec(queue_name="q"))
    await utils.add_job("b", {})
    (queued,) = await mine.claim(1)
    (loose,) = await mine.claim(1)
    assert await theirs.fail([FailureSpec(loose.id, "nope")]) == {}
    assert await theirs.release([queued], 0) == {}
    rows = job_rows(sync_connection)
    assert [(row["locked_by"], row["last_error"]) for row in rows] == [("w1", None)] * 2
    assert rows[0]["queue_locked_by"] == "w1"


async def test_completing_deletes_the_job_whoever_holds_it_but_frees_only_own_queues(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    """Node's completeJobs: the handler succeeded, so the job goes even if its lock moved."""
    mine = source(driver, "w1")
    theirs = source(driver, "w2")
    await utils.add_job("a", {}, spec=JobSpec(queue_name="q"))
    await utils.add_job("b", {})
    (queued,) = await mine.claim(1)
    (loose,) = await mine.claim(1)
    assert await theirs.complete([queued]) == {queued.id}
    # w2 does not hold the queue, so w1's lock on it stays until w1 lets go of it.
    (queue_lock,) = sync_connection.execute(
        "select locked_by from graphile_worker._private_job_queues"
    ).fetchone()  # type: ignore[misc]
    assert queue_lock == "w1"
    assert [row["id"] for row in job_rows(sync_connection)] == [loose.id]

    assert await mine.complete([loose]) == {loose.id}
    assert job_rows(sync_connection) == []


async def test_fail_replaces_the_payload_only_when_asked(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    first = await utils.add_job("a", [1, 2, 3])
    second = await utils.add_job("a", [4, 5])
    jobs = await source(driver).claim(2)
    recorded = await source(driver).fail(
        [FailureSpec(first.id, "partial\x00", [2]), FailureSpec(second.id, "whole")]
    )
    assert set(recorded) == {first.id, second.id}
    assert recorded[first.id].attempts == 1 and recorded[first.id].max_attempts == 25
    row = job_row(sync_connection, first.id)
    assert row is not None and row["payload"] == [2] and row["last_error"] == "partial\\0"
    assert recorded[first.id].run_at == row["run_at"]
    other = job_row(sync_connection, second.id)
    assert other is not None and other["payload"] == [4, 5] and other["last_error"] == "whole"
    assert len(jobs) == 2


async def test_release_refunds_the_attempt_and_delays_the_job(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    job = await utils.add_job("a", {}, spec=JobSpec(queue_name="q"))
    (claimed,) = await source(driver).claim(1)
    assert claimed.attempts == 1
    released = await source(driver).release([claimed], 90)
    row = job_row(sync_connection, job.id)
    assert row is not None
    assert (row["attempts"], row["locked_by"], row["queue_locked_by"]) == (0, None, None)
    (now,) = sync_connection.execute("select now()").fetchone()  # type: ignore[misc]
    assert now + timedelta(seconds=85) < row["run_at"] <= now + timedelta(seconds=95)
    assert released[job.id].run_at == row["run_at"]


async def test_returning_unstarted_jobs_keeps_their_place_in_line(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    job = await utils.add_job(
        "a", {}, spec=JobSpec(run_at=datetime.now(timezone.utc) - timedelta(hours=1))
    )
    (claimed,) = await source(driver).claim(1)
    await source(driver).release([claimed], 0)
    row = job_row(sync_connection, job.id)
    assert row is not None
    assert (row["attempts"], row["locked_by"], row["run_at"]) == (0, None, job.run_at)


async def test_seconds_until_next_sees_only_claimable_future_jobs(
    driver: DatabaseDriver, utils: WorkerUtils
) -> None:
    jobs = source(driver, forbidden_flags=frozenset({"red"}))
    assert await jobs.seconds_until_next() is None
    soon = datetime.now(timezone.utc) + timedelta(seconds=30)
    await utils.add_job("other", {}, spec=JobSpec(run_at=soon - timedelta(seconds=20)))
    await utils.add_job("a", {}, spec=JobSpec(run_at=soon - timedelta(seconds=10), flags=["red"]))
    await utils.add_job("a", {}, spec=JobSpec(run_at=soon))
    await utils.add_job("b", {}, spec=JobSpec(run_at=soon + timedelta(seconds=30)))
    seconds = await jobs.seconds_until_next()
    assert seconds is not None and 25 < seconds <= 30


async def test_seconds_until_next_looks_across_every_priority(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    # The earliest future job is behind others in jobs_main_index (a higher priority
    # number); a job of an even earlier run_at is locked, and one has used up its attempts.
    now = datetime.now(timezone.utc)
    await utils.add_job("a", {}, spec=JobSpec(priority=-3, run_at=now + timedelta(hours=2)))
    await utils.add_job("a", {}, spec=JobSpec(priority=0, run_at=now + timedelta(hours=1)))
    await utils.add_job("a", {}, spec=JobSpec(priority=7, run_at=now + timedelta(seconds=40)))
    locked = await utils.add_job(
        "a", {}, spec=JobSpec(priority=2, run_at=now + timedelta(seconds=5))
    )
    spent = await utils.add_job(
        "a", {}, spec=JobSpec(priority=9, run_at=now + timedelta(seconds=10), max_attempts=1)
    )
    sync_connection.execute(
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = 'x' where id = %s",
        (locked.id,),
    )
    sync_connection.execute(
        "update graphile_worker._private_jobs set attempts = 1 where id = %s", (spent.id,)
    )
    seconds = await source(driver).seconds_until_next()
    assert seconds is not None and 35 < seconds <= 40


async def test_local_time_decides_what_is_due(driver: DatabaseDriver, utils: WorkerUtils) -> None:
    # A job due in ten minutes by the database's clock; now() is the database's, so only a
    # worker whose clock runs ahead would take it. Simulate that clock with a patched source.
    await utils.add_job(
        "a", {}, spec=JobSpec(run_at=datetime.now(timezone.utc) + timedelta(minutes=10))
    )
    assert await source(driver, use_local_time=True).claim(1) == []

    class AheadOfTime(JobSource):
        def _now(self) -> datetime:
            return datetime.now(timezone.utc) + timedelta(minutes=11)

    fast = AheadOfTime(
        driver=driver,
        schema="graphile_worker",
        worker_id="w1",
        task_identifiers=["a"],
        forbidden_flags=(),
        use_local_time=True,
        logger=LOGGER,
    )
    claimed = await fast.claim(1)
    assert len(claimed) == 1
    assert claimed[0].locked_at is not None
    assert claimed[0].locked_at > datetime.now(timezone.utc) + timedelta(minutes=10)


async def test_stale_locks_are_reset_after_four_hours(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    stale = await utils.add_job("a", {}, spec=JobSpec(queue_name="q"))
    fresh = await utils.add_job("b", {})
    await source(driver, "dead").claim(2)
    sync_connection.execute(
        "update graphile_worker._private_jobs set locked_at = now() - interval '5 hours' "
        "where id = %s",
        (stale.id,),
    )
    sync_connection.execute(
        "update graphile_worker._private_job_queues set locked_at = now() - interval '5 hours'"
    )
    await source(driver).reset_stale_locks()
    stale_row = job_row(sync_connection, stale.id)
    fresh_row = job_row(sync_connection, fresh.id)
    assert stale_row is not None and fresh_row is not None
    assert (stale_row["locked_by"], stale_row["queue_locked_by"]) == (None, None)
    assert fresh_row["locked_by"] == "dead"
