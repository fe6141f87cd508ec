"""Reading the queue: get_job, list_jobs, stats, queues and lock_holders, async and sync.

Jobs are put into each state with plain SQL on a separate sync connection (a lock, spent
attempts, a future ``run_at``), so the expectations never come from the code under test.
Async tests run on every (runtime, driver) pair; the sync twin runs the same checks through
:class:`SyncWorkerUtils`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from graphile_worker import (
    JobCounts,
    JobState,
    KnownCrontab,
    LockHolder,
    QueueInfo,
    QueueStats,
    SyncWorkerUtils,
    UndecodableJson,
    WorkerUtils,
)
from graphile_worker.errors import ConfigurationError
from graphile_worker.inspection import JobActivity
from graphile_worker.spec import JobSpec

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver

pytestmark = pytest.mark.anyio

FUTURE = datetime(2099, 1, 1, tzinfo=timezone.utc)
PAST = datetime(2001, 1, 1, tzinfo=timezone.utc)

# Every seeded job by name, with the states it must be listed under.
EXPECTED_STATES: dict[str, set[JobState]] = {
    "ready": {JobState.READY},
    "scheduled": {JobState.SCHEDULED},
    "locked": {JobState.LOCKED},
    "locked_last_attempt": {JobState.LOCKED},
    "failed_at_max": {JobState.FAILED},
    "failed_over_max": {JobState.FAILED},
    "retrying_ready": {JobState.READY, JobState.RETRYING},
    "retrying_scheduled": {JobState.SCHEDULED, JobState.RETRYING},
    "failed_then_retrying": {JobState.READY, JobState.RETRYING},
    "tried_without_error": {JobState.READY},
}


def _update(connection: psycopg.Connection[Any], job_id: int, assignments: str) -> None:
    connection.execute(
        f"update graphile_worker._private_jobs set {assignments} where id = %s",
        (job_id,),
    )


def seed(connection: psycopg.Connection[Any]) -> dict[str, int]:
    """One job per edge case, named; see :data:`EXPECTED_STATES`."""
    utils = SyncWorkerUtils(connection)
    ids: dict[str, int] = {}

    def add(name: str, task: str, spec: JobSpec | None = None) -> int:
        ids[name] = utils.add_job(task, {"name": name}, spec=spec).id
        return ids[name]

    add("ready", "alpha", JobSpec(flags=["urgent", "eu"]))
    add("scheduled", "alpha", JobSpec(run_at=FUTURE))
    locked = add("locked", "beta", JobSpec(queue_name="q1"))
    _update(connection, locked, "locked_at = now(), locked_by = 'worker-a', attempts = 1")
    connection.execute(
        "update graphile_worker._private_job_queues set locked_at = now() - interval '1 minute',"
        " locked_by = 'worker-a' where queue_name = 'q1'"
    )
    last = add("locked_last_attempt", "beta", JobSpec(max_attempts=3, queue_name="q2"))
    _update(connection, last, "locked_at = now(), locked_by = 'worker-a', attempts = 3")
    failed = add("failed_at_max", "beta", JobSpec(max_attempts=3, queue_name="q1"))
    _update(connection, failed, "attempts = 3, last_error = 'boom'")
    over = add("failed_over_max", "gamma", JobSpec(max_attempts=2, job_key="over"))
    _update(connection, over, "attempts = 5, last_error = 'boom'")
    retrying = add("retrying_ready", "gamma", JobSpec(run_at=PAST, queue_name="q1"))
    _update(connection, retrying, "attempts = 1, last_error = 'oops'")
    later = add("retrying_scheduled", "gamma", JobSpec(run_at=FUTURE))
    _update(connection, later, "attempts = 2, last_error = 'oops'")
    revived = add("failed_then_retrying", "gamma")
    utils.permanently_fail_jobs([revived], "gave up")
    utils.reschedule_jobs([revived], max_attempts=30, run_at=PAST)
    # A worker that died mid-attempt and whose lock expired: tried, but no error recorded.
    crashed = add("tried_without_error", "alpha")
    _update(connection, crashed, "attempts = 1")
    return ids


@pytest.fixture
def seeded(sync_connection: psycopg.Connection[Any]) -> dict[str, int]:
    return seed(sync_connection)


def _names(ids: dict[str, int], page_ids: list[int]) -> set[str]:
    by_id = {job_id: name for name, job_id in ids.items()}
    return {by_id[job_id] for job_id in page_ids}


def _expected(state: JobState) -> set[str]:
    return {name for name, states in EXPECTED_STATES.items() if state in states}


# ----------------------------------------------------------------------------- async


async def test_each_state_lists_exactly_its_jobs(
    driver: DatabaseDriver, seeded: dict[str, int]
) -> None:
    utils = WorkerUtils(driver)
    for state in JobState:
        page = await utils.list_jobs(state=state)
        assert _names(seeded, [job.id for job in page.jobs]) == _expected(state), state
        by_value = await utils.list_jobs(state=state.value)
        assert by_value == page
    everything = await utils.list_jobs()
    assert [job.id for job in everything.jobs] == sorted(seeded.values(), reverse=True)
    assert everything.next_after is None
    # Several states: a job in any of them.
    either = await utils.list_jobs(state=["locked", JobState.FAILED])
    assert _names(seeded, [job.id for job in either.jobs]) == _expected(
        JobState.LOCKED
    ) | _expected(JobState.FAILED)


async def test_states_other_than_retrying_split_every_job_once(
    driver: DatabaseDriver, seeded: dict[str, int]
) -> None:
    utils = WorkerUtils(driver)
    seen: list[int] = []
    for state in (JobState.READY, JobState.SCHEDULED, JobState.LOCKED, JobState.FAILED):
        seen += [job.id for job in (await utils.list_jobs(state=state)).jobs]
    assert sorted(seen) == sorted(seeded.values())


async def test_the_python_rule_agrees_with_the_database(
    driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    """``JobState.of`` (what the CLI shows for a row it read) matches the SQL filters."""
    utils = WorkerUtils(driver)
    row = sync_connection.execute("select now()").fetchone()
    assert row is not None
    for state in (JobState.READY, JobState.SCHEDULED, JobState.LOCKED, JobState.FAILED):
        for job in (await utils.list_jobs(state=state)).jobs:
            assert JobState.of(job, row[0]) is state, job


async def test_get_job_returns_the_whole_job(
    driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    utils = WorkerUtils(driver)
    job = await utils.get_job(seeded["ready"])
    assert job is not None
    assert job.payload == {"name": "ready"}
    assert job.task_identifier == "alpha"
    assert job.flags == frozenset({"urgent", "eu"})
    assert job.is_available is True
    queued = await utils.get_job(seeded["locked"])
    assert queued is not None
    assert (queued.queue_name, queued.locked_by) == ("q1", "worker-a")
    assert await utils.get_job(max(seeded.values()) + 1000) is None
    # A poison row reads, with a marker in place of its payload.
    _update(
        sync_connection,
        seeded["scheduled"],
        "payload = CAST('{\"n\": ' || repeat('1', 5000) || '}' AS json)",
    )
    poison = await utils.get_job(seeded["scheduled"])
    assert poison is not None
    assert isinstance(poison.payload, UndecodableJson)


async def test_pages_have_no_duplicates_or_gaps_while_jobs_are_added(
    driver: DatabaseDriver,
) -> None:
    utils = WorkerUtils(driver)
    original = [job.id for job in await utils.add_jobs([("page", {"n": n}) for n in range(23)])]
    seen: list[int] = []
    page = await utils.list_jobs(task="page", limit=5)
    pages = 1
    while True:
        seen += [job.id for job in page.jobs]
        # Newer jobs arrive between pages; they belong before the first page, not in a later one.
        await utils.add_jobs([("page", {"late": True}), ("page", {"late": True})])
        if page.next_after is None:
            break
        assert len(page.jobs) == 5
        page = await utils.list_jobs(task="page", limit=5, after=page.next_after)
        pages += 1
    assert seen == sorted(original, reverse=True)
    assert pages == 5


async def test_filters_combine(
    driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    utils = WorkerUtils(driver)
    _update(sync_connection, seeded["retrying_ready"], "created_at = now() - interval '2 days'")
    _update(sync_connection, seeded["failed_at_max"], "created_at = now() - interval '3 days'")

    async def names(**filters: Any) -> set[str]:
        page = await utils.list_jobs(**filters)
        return _names(seeded, [job.id for job in page.jobs])

    assert await names(task="gamma") == {
        "failed_over_max",
        "retrying_ready",
        "retrying_scheduled",
        "failed_then_retrying",
    }
    assert await names(queue="q1") == {"locked", "failed_at_max", "retrying_ready"}
    assert await names(queue="q1", task="gamma") == {"retrying_ready"}
    assert await names(queue="q1", state="failed") == {"failed_at_max"}
    assert await names(flags=["urgent"]) == {"ready"}
    assert await names(flags=["urgent", "missing"]) == set()
    assert await names(key="over") == {"failed_over_max"}
    assert await names(older_than=timedelta(days=1)) == {"retrying_ready", "failed_at_max"}
    assert await names(older_than=timedelta(days=1), newer_than=timedelta(days=2, hours=12)) == {
        "retrying_ready"
    }
    cutoff = datetime.now(timezone.utc) - timedelta(days=1)
    assert await names(newer_than=cutoff, task="beta") == {"locked", "locked_last_attempt"}
    assert await names(task="no_such_task") == set()
    assert await names(queue="no_such_queue") == set()


async def test_stats_counts_by_task_and_queue(
    driver: DatabaseDriver, seeded: dict[str, int]
) -> None:
    stats = await WorkerUtils(driver).stats()
    assert isinstance(stats, QueueStats)
    assert _plain(stats.total) == {
        "ready": 4,
        "scheduled": 2,
        "locked": 2,
        "retrying": 3,
        "failed": 2,
    }
    assert stats.total.total == len(seeded)
    assert {task: _plain(counts) for task, counts in stats.by_task.items()} == {
        "alpha": {"ready": 2, "scheduled": 1, "locked": 0, "retrying": 0, "failed": 0},
        "beta": {"ready": 0, "scheduled": 0, "locked": 2, "retrying": 0, "failed": 1},
        "gamma": {"ready": 2, "scheduled": 1, "locked": 0, "retrying": 3, "failed": 1},
    }
    assert {queue: _plain(counts) for queue, counts in stats.by_queue.items()} == {
        "q1": {"ready": 1, "scheduled": 0, "locked": 1, "retrying": 1, "failed": 1},
        "q2": {"ready": 0, "scheduled": 0, "locked": 1, "retrying": 0, "failed": 0},
    }
    # The oldest ready job is the one due in 2001.
    assert stats.total.oldest_ready_at == PAST
    assert stats.total.oldest_ready_age == stats.as_of - PAST
    assert stats.by_queue["q1"].oldest_ready_at == PAST
    assert stats.by_queue["q2"].oldest_ready_age is None
    assert stats.by_task["beta"].oldest_ready_at is None


async def test_stats_of_an_empty_queue(driver: DatabaseDriver) -> None:
    stats = await WorkerUtils(driver).stats()
    assert stats.total == JobCounts()
    assert dict(stats.by_task) == {}
    assert dict(stats.by_queue) == {}
    assert stats.as_of.tzinfo is not None


async def test_queues_show_lock_and_counts(driver: DatabaseDriver, seeded: dict[str, int]) -> None:
    queues = await WorkerUtils(driver).queues()
    assert [queue.name for queue in queues] == ["q1", "q2"]
    first, second = queues
    assert isinstance(first, QueueInfo)
    assert first.locked_by == "worker-a"
    assert first.locked_at is not None
    assert first.lock_age is not None
    assert first.lock_age >= timedelta(minutes=1)
    assert _plain(first.jobs) == {
        "ready": 1,
        "scheduled": 0,
        "locked": 1,
        "retrying": 1,
        "failed": 1,
    }
    assert (second.locked_by, second.locked_at, second.lock_age) == (None, None, None)
    assert second.jobs.locked == 1


async def test_lock_holders_marks_registered_and_alive_workers(
    driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    utils = WorkerUtils(driver)
    holders = await utils.lock_holders()
    assert holders == [
        LockHolder(
            worker_id="worker-a",
            locked_jobs=2,
            locked_queues=1,
            oldest_lock_at=holders[0].oldest_lock_at,
            registered=False,
            alive=None,
        )
    ]
    # Its oldest lock is the queue's, taken a minute before the jobs'.
    job = await utils.get_job(seeded["locked"])
    assert job is not None
    assert job.locked_at is not None
    assert holders[0].oldest_lock_at < job.locked_at
    _update(sync_connection, seeded["ready"], "locked_at = now(), locked_by = 'worker-b'")
    _update(sync_connection, seeded["scheduled"], "locked_at = now(), locked_by = 'worker-c'")
    for worker_id, heartbeat_age in (("worker-a", "1 second"), ("worker-b", "1 hour")):
        sync_connection.execute(
            "insert into graphile_worker._pyworker_workers (worker_id, hostname, pid,"
            " library_version, last_heartbeat_at, heartbeat_interval, stale_after,"
            " long_running_stale_after, recovery_delay) values (%s, 'host', 1, 'test',"
            " now() - CAST(%s AS interval), '10 seconds', '1 minute', '1 hour', '0 seconds')",
            (worker_id, heartbeat_age),
        )
    summary = {
        holder.worker_id: (
            holder.locked_jobs,
            holder.locked_queues,
            holder.registered,
            holder.alive,
        )
        for holder in await utils.lock_holders()
    }
    assert summary == {
        "worker-a": (2, 1, True, True),
        "worker-b": (1, 0, True, False),
        "worker-c": (1, 0, False, None),
    }


async def test_lock_holders_without_a_worker_registry(
    driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    sync_connection.execute("drop table graphile_worker._pyworker_workers")
    holders = await WorkerUtils(driver).lock_holders()
    assert [(holder.worker_id, holder.registered, holder.alive) for holder in holders] == [
        ("worker-a", False, None)
    ]


# ------------------------------------------------------------------------------ sync


def test_sync_twin_reads_the_same(sync_connection: psycopg.Connection[Any]) -> None:
    ids = seed(sync_connection)
    utils = SyncWorkerUtils(sync_connection)
    for state in JobState:
        page = utils.list_jobs(state=state)
        assert _names(ids, [job.id for job in page.jobs]) == _expected(state), state
    first = utils.list_jobs(limit=4)
    second = utils.list_jobs(limit=4, after=first.next_after)
    third = utils.list_jobs(limit=4, after=second.next_after)
    assert third.next_after is None
    paged = [job.id for page in (first, second, third) for job in page.jobs]
    assert paged == sorted(ids.values(), reverse=True)
    job = utils.get_job(ids["failed_then_retrying"])
    assert job is not None
    assert (job.attempts, job.max_attempts, job.last_error) == (25, 30, "gave up")
    assert utils.stats().total.total == len(ids)
    assert [queue.name for queue in utils.queues()] == ["q1", "q2"]
    assert [holder.worker_id for holder in utils.lock_holders()] == ["worker-a"]


def test_sync_twin_inside_a_sqlalchemy_session(
    sync_connection: psycopg.Connection[Any], database_url: str
) -> None:
    """SQLAlchemy's ``text()`` parses the statements itself; flags use the ``?&`` operator."""
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    ids = seed(sync_connection)
    url = sa.make_url(database_url).set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url)
    try:
        with Session(engine) as session:
            utils = SyncWorkerUtils(session)
            page = utils.list_jobs(flags=["eu"], state=["ready", "scheduled"])
            assert [job.id for job in page.jobs] == [ids["ready"]]
            assert utils.stats().total.failed == 2
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"limit": -1}, "limit must be between 1 and 10000, not -1"),
        ({"limit": 0}, "limit must be between 1 and 10000, not 0"),
        ({"limit": 10_001}, "limit must be between 1 and 10000"),
        ({"limit": True}, "limit must be an int"),
        ({"state": "done"}, "unknown job state 'done'; choose from 'ready', 'scheduled'"),
        ({"state": []}, "state must name at least one job state"),
        ({"older_than": datetime(2020, 1, 1)}, "is a naive datetime"),
        ({"newer_than": timedelta(hours=-1)}, "must not be a negative timedelta"),
        ({"newer_than": "yesterday"}, "must be a timezone-aware datetime or a timedelta"),
        ({"flags": "urgent"}, "flags must be a collection of flag names"),
        ({"after": "12"}, "after must be a job id"),
        ({"task": ""}, "task identifier must not be empty"),
    ],
)
def test_bad_arguments_are_refused_before_any_sql(
    sync_connection: psycopg.Connection[Any], filters: dict[str, Any], message: str
) -> None:
    utils = SyncWorkerUtils(sync_connection)
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        utils.list_jobs(**filters)


def test_get_job_refuses_a_non_integer_id(sync_connection: psycopg.Connection[Any]) -> None:
    with pytest.raises(ConfigurationError, match="id must be a job id"):
        SyncWorkerUtils(sync_connection).get_job("1")  # type: ignore[arg-type]


def _plain(counts: JobCounts) -> dict[str, int]:
    return {
        "ready": counts.ready,
        "scheduled": counts.scheduled,
        "locked": counts.locked,
        "retrying": counts.retrying,
        "failed": counts.failed,
    }


# ------------------------------------------------- job_ids, known_crontabs, job_activity


async def test_job_ids_lists_every_matching_job_newest_first(
    driver: DatabaseDriver, seeded: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    utils = WorkerUtils(driver)
    assert await utils.job_ids() == sorted(seeded.values(), reverse=True)
    for state in JobState:
        ids = await utils.job_ids(state=state)
        assert _names(seeded, ids) == _expected(state), state
        assert ids == sorted(ids, reverse=True)
    assert _names(seeded, await utils.job_ids(task="gamma", queue="q1")) == {"retrying_ready"}
    assert _names(seeded, await utils.job_ids(flags=["eu"])) == {"ready"}
    assert await utils.job_ids(key="no_such_key") == []
    # Read in pages of at most 10,000 ids; with tiny pages, none is missed or repeated.
    monkeypatch.setattr("graphile_worker.utils._ID_PAGE", 3)
    assert await utils.job_ids() == sorted(seeded.values(), reverse=True)
    assert _names(seeded, await utils.job_ids(state=["ready", "failed"])) == _expected(
        JobState.READY
    ) | _expected(JobState.FAILED)
    with pytest.raises(ConfigurationError, match="unknown job state 'done'"):
        await utils.job_ids(state="done")


async def test_known_crontabs_lists_every_identifier(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    utils = WorkerUtils(driver)
    assert await utils.known_crontabs() == []
    _insert_known_crontabs(sync_connection)
    assert await utils.known_crontabs() == EXPECTED_CRONTABS


async def test_job_activity_counts_jobs_added_and_removed(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    utils = WorkerUtils(driver)
    start = await utils.job_activity()
    assert isinstance(start, JobActivity)
    assert start.as_of.tzinfo is not None
    # Changed over the separate connection, which then publishes its table counters at
    # once (PostgreSQL 15+; older servers publish them within about a second when idle).
    writer = SyncWorkerUtils(sync_connection)
    added = writer.add_jobs([("counted", {"n": n}) for n in range(3)])
    writer.complete_jobs([added[0].id, added[1].id])
    _publish_table_counters(sync_connection)
    with anyio.fail_after(15):
        while True:
            now = await utils.job_activity()
            if now.added >= start.added + 3 and now.removed >= start.removed + 2:
                break
            await anyio.sleep(0.05)
    assert now.as_of >= start.as_of
    # Nothing else touched the table: the counters moved by exactly what was done.
    assert (now.added - start.added, now.removed - start.removed) == (3, 2)


def test_sync_twin_job_ids_known_crontabs_and_job_activity(
    sync_connection: psycopg.Connection[Any],
) -> None:
    ids = seed(sync_connection)
    utils = SyncWorkerUtils(sync_connection)
    assert utils.job_ids() == sorted(ids.values(), reverse=True)
    assert _names(ids, utils.job_ids(state="locked")) == _expected(JobState.LOCKED)
    with pytest.raises(ConfigurationError, match="unknown job state 'done'"):
        utils.job_ids(state="done")
    _insert_known_crontabs(sync_connection)
    assert utils.known_crontabs() == EXPECTED_CRONTABS
    activity = utils.job_activity()
    assert isinstance(activity, JobActivity)
    assert activity.added >= 0
    assert activity.removed >= 0
    assert activity.as_of.tzinfo is not None


EXPECTED_CRONTABS = [
    KnownCrontab(
        identifier="hourly",
        known_since=datetime(2030, 1, 1, tzinfo=timezone.utc),
        last_execution=datetime(2030, 1, 2, 5, 0, tzinfo=timezone.utc),
    ),
    KnownCrontab(
        identifier="nightly",
        known_since=datetime(2029, 6, 1, tzinfo=timezone.utc),
        last_execution=None,
    ),
]


def _publish_table_counters(connection: psycopg.Connection[Any]) -> None:
    if connection.info.server_version >= 150000:
        connection.execute("select pg_stat_force_next_flush()")


def _insert_known_crontabs(connection: psycopg.Connection[Any]) -> None:
    connection.execute(
        "insert into graphile_worker._private_known_crontabs (identifier, known_since,"
        " last_execution) values ('nightly', '2029-06-01T00:00Z', null),"
        " ('hourly', '2030-01-01T00:00Z', '2030-01-02T05:00Z')"
    )
