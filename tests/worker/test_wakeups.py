"""How a running worker finds jobs: NOTIFY, the delayed-job timer, polling, reconnects,
and serial queues under concurrency.

Every worker here polls only every 10 s, so a job that runs within a second or two was
found by a notification or the timer, not by a poll.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from graphile_worker.spec import JobSpec
from graphile_worker.task import task
from graphile_worker.worker import Worker

from .conftest import eventually, job_row, job_rows, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio


def recording_task(started: dict[int, datetime]) -> object:
    @task("record_start")
    async def record_start(payload: dict[str, int]) -> None:
        started[payload["n"]] = datetime.now(timezone.utc)

    return record_start


async def test_a_job_added_while_idle_starts_at_once(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started: dict[int, datetime] = {}
    async with Worker(options(driver, [recording_task(started)], poll_interval=10.0)):
        await anyio.sleep(0.1)  # idle: the first claim came back empty
        job = await utils.add_job("record_start", {"n": 1})
        with anyio.fail_after(2):
            await eventually(lambda: job_row(sync_connection, job.id) is None)
    assert 1 in started


async def test_a_delayed_job_starts_on_time_through_the_timer(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started: dict[int, datetime] = {}
    async with Worker(options(driver, [recording_task(started)], poll_interval=10.0)):
        await anyio.sleep(0.05)
        run_at = datetime.now(timezone.utc) + timedelta(seconds=0.4)
        job = await utils.add_job("record_start", {"n": 1}, spec=JobSpec(run_at=run_at))
        # A second, later job added afterwards must not push the first one back, and the
        # timer must re-arm for it after the first has run.
        later = await utils.add_job(
            "record_start", {"n": 2}, spec=JobSpec(run_at=run_at + timedelta(seconds=0.3))
        )
        await eventually(lambda: job_row(sync_connection, later.id) is None, within=3)
    assert job_row(sync_connection, job.id) is None
    assert run_at <= started[1] < run_at + timedelta(seconds=1.5)
    assert run_at + timedelta(seconds=0.3) <= started[2]


async def test_a_delayed_job_queued_before_start_is_found_by_the_timer(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started: dict[int, datetime] = {}
    run_at = datetime.now(timezone.utc) + timedelta(seconds=0.3)
    job = await utils.add_job("record_start", {"n": 1}, spec=JobSpec(run_at=run_at))
    async with Worker(options(driver, [recording_task(started)], poll_interval=10.0)):
        await eventually(lambda: job_row(sync_connection, job.id) is None, within=3)
    assert started[1] >= run_at


async def test_polling_finds_jobs_inserted_without_a_notification(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    started: dict[int, datetime] = {}
    async with Worker(options(driver, [recording_task(started)], poll_interval=0.2)):
        await anyio.sleep(0.05)
        # A plain INSERT sends no NOTIFY: only a poll can find it.
        sync_connection.execute(
            """
            with task as (
              insert into graphile_worker._private_tasks (identifier)
              values ('record_start') on conflict (identifier) do update set identifier = excluded.identifier
              returning id
            )
            insert into graphile_worker._private_jobs (task_id, payload)
            select id, '{"n": 1}' from task
            """
        )
        await eventually(lambda: not job_rows(sync_connection), within=3)
    assert 1 in started


async def test_the_listener_reconnects_after_its_backend_is_terminated(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started: dict[int, datetime] = {}

    def listener_pids() -> set[int]:
        rows = sync_connection.execute(
            """
            select pid from pg_stat_activity
            where datname = current_database() and query ilike 'listen%'
              and pid <> pg_backend_pid()
            """
        ).fetchall()
        return {row[0] for row in rows}

    async with Worker(options(driver, [recording_task(started)], poll_interval=10.0)):
        await eventually(lambda: len(listener_pids()) == 1)
        (old,) = listener_pids()
        sync_connection.execute("select pg_terminate_backend(%s)", (old,))
        await eventually(lambda: bool(listener_pids() - {old}), within=10)
        job = await utils.add_job("record_start", {"n": 1})
        await eventually(lambda: job_row(sync_connection, job.id) is None, within=3)
    assert 1 in started


async def test_a_serial_queue_never_runs_two_jobs_at_once(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    running = {"queue": 0, "all": 0}
    peak = {"queue": 0, "all": 0}
    order: list[int] = []

    @task("tracked")
    async def tracked(payload: dict[str, Any]) -> None:
        key = "queue" if payload["queued"] else None
        running["all"] += 1
        peak["all"] = max(peak["all"], running["all"])
        if key:
            running[key] += 1
            peak[key] = max(peak[key], running[key])
            order.append(payload["n"])
        await anyio.sleep(0.02)
        running["all"] -= 1
        if key:
            running[key] -= 1

    for n in range(8):
        await utils.add_job("tracked", {"queued": True, "n": n}, spec=JobSpec(queue_name="serial"))
        await utils.add_job("tracked", {"queued": False, "n": n})
    # Two workers of four slots each compete for the queue: only the database keeps it serial.
    first = Worker(options(driver, [tracked], concurrency=4))
    second = Worker(options(driver, [tracked], concurrency=4))
    async with anyio.create_task_group() as group:
        group.start_soon(first.run_once)
        group.start_soon(second.run_once)

    assert job_rows(sync_connection) == []
    assert peak["queue"] == 1
    assert peak["all"] > 2
    assert order == list(range(8))
    (locked,) = sync_connection.execute(
        "select count(*) from graphile_worker._private_job_queues where locked_by is not null"
    ).fetchone()  # type: ignore[misc]
    assert locked == 0


async def test_a_breaking_migration_we_do_not_know_stops_the_worker(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    worker = Worker(options(driver, [recording_task({})]))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await anyio.sleep(0.2)
            # Announcements of migrations we know, or that are not breaking, are harmless.
            sync_connection.execute(
                """select pg_notify('worker:migrate', '{"migrationNumber": 19, "breaking": true}')"""
            )
            sync_connection.execute(
                """select pg_notify('worker:migrate', '{"migrationNumber": 999, "breaking": false}')"""
            )
            await anyio.sleep(0.3)
            assert "running" in repr(worker)
            sync_connection.execute(
                """select pg_notify('worker:migrate', '{"migrationNumber": 999, "breaking": true}')"""
            )
    assert "idle" in repr(worker)


async def test_the_worker_survives_losing_every_connection(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started: dict[int, datetime] = {}
    async with Worker(options(driver, [recording_task(started)], poll_interval=0.3)):
        await anyio.sleep(0.1)
        sync_connection.execute(
            """
            select pg_terminate_backend(pid) from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid()
            """
        )
        # The pool and the listener both come back; the job is found either way.
        sync_connection.execute("select graphile_worker.add_job('record_start', '{\"n\": 1}')")
        await eventually(lambda: not job_rows(sync_connection), within=10)
    assert 1 in started


async def test_an_outcome_is_recorded_even_if_the_pool_lost_its_connections(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @task("saboteur")
    def saboteur(payload: Any) -> None:
        # Every pooled connection dies while the job runs; completing it must still work.
        sync_connection.execute(
            """
            select pg_terminate_backend(pid) from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid()
            """
        )

    job = await utils.add_job("saboteur", {})
    summary = await Worker(options(driver, [saboteur])).run_once()
    assert summary.completed == 1
    assert job_row(sync_connection, job.id) is None
