"""Dead-worker recovery: the registry, the sweep's rules, the worker's heartbeat and hooks.

A dead worker is staged in SQL (a registry row with an old heartbeat, jobs and queues locked
in its name, as its claims would have left them), so each rule is tested exactly; killing a
real worker process is the chaos suite's job. Everything is read back over a separate
connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from graphile_worker import JobSpec
from graphile_worker.errors import ConfigurationError, MigrationError
from graphile_worker.hooks import Observer, Plugin, WorkerRecovered
from graphile_worker.recovery import (
    LONG_RUNNING_FLAG,
    RECOVERED_PREFIX,
    FailJob,
    RecoverLater,
    RecoveryOptions,
    StaleJob,
)
from graphile_worker.task import task
from graphile_worker.worker import Worker, WorkerContext

from .conftest import eventually, job_row, job_rows, options

if TYPE_CHECKING:
    from collections.abc import Iterable

    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio

FAST = RecoveryOptions(heartbeat_interval=0.2, stale_after=1.0, recovery_delay=0.0)
"""Short enough for a test to watch a sweep happen."""

DEAD = "graphile_worker_deadbeefdeadbeef00"


def stage_dead_worker(
    connection: psycopg.Connection[Any],
    job_ids: Iterable[int],
    *,
    worker_id: str = DEAD,
    running: Iterable[int] = (),
    silent_for: float = 3600.0,
    stale_after: float = 300.0,
    long_running_stale_after: float = 7200.0,
    recovery_delay: float = 30.0,
) -> None:
    """A registered worker that stopped heartbeating ``silent_for`` seconds ago, holding jobs."""
    ids = list(job_ids)
    connection.execute(
        """
        insert into graphile_worker._pyworker_workers (
          worker_id, hostname, pid, library_version, started_at, last_heartbeat_at,
          heartbeat_interval, stale_after, long_running_stale_after, recovery_delay,
          running_job_ids
        ) values (
          %(id)s, 'elsewhere', 4242, 'test', now() - interval '1 day',
          now() - make_interval(secs => %(silent)s), interval '30 seconds',
          make_interval(secs => %(stale)s), make_interval(secs => %(long)s),
          make_interval(secs => %(delay)s), %(running)s
        )
        """,
        {
            "id": worker_id,
            "silent": silent_for,
            "stale": stale_after,
            "long": long_running_stale_after,
            "delay": recovery_delay,
            "running": list(running),
        },
    )
    lock_jobs(connection, ids, worker_id)


def lock_jobs(connection: psycopg.Connection[Any], ids: list[int], worker_id: str) -> None:
    """What a claim by ``worker_id`` leaves: jobs and their queues locked, attempts spent."""
    connection.execute(
        """
        update graphile_worker._private_jobs
        set locked_by = %(worker)s, locked_at = now(), attempts = attempts + 1
        where id = any(%(ids)s)
        """,
        {"worker": worker_id, "ids": ids},
    )
    connection.execute(
        """
        update graphile_worker._private_job_queues
        set locked_by = %(worker)s, locked_at = now()
        where id in (
          select job_queue_id from graphile_worker._private_jobs where id = any(%(ids)s)
        )
        """,
        {"worker": worker_id, "ids": ids},
    )


def registered(connection: psycopg.Connection[Any]) -> list[str]:
    rows = connection.execute(
        "select worker_id from graphile_worker._pyworker_workers order by worker_id"
    ).fetchall()
    return [row[0] for row in rows]


async def add(utils: WorkerUtils, count: int, **spec: Any) -> list[int]:
    jobs = [
        await utils.add_job("work", {"n": n}, spec=JobSpec(**spec) if spec else None)
        for n in range(count)
    ]
    return [job.id for job in jobs]


# ------------------------------------------------------------------------------- the sweep


async def test_sweep_hands_back_a_dead_workers_jobs_and_queue(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started, waiting = await add(utils, 2)
    (queued,) = await add(utils, 1, queue_name="serial")
    stage_dead_worker(sync_connection, [started, waiting, queued], running=[started])

    report = await utils.sweep()

    assert report.workers == (DEAD,)
    assert report.forgotten_workers == (DEAD,)
    assert report.unlocked_queues == ("serial",)
    by_id = {entry.job.id: entry for entry in report.jobs}
    assert {entry.action for entry in by_id.values()} == {"recovered"}
    assert by_id[started].attempt_spent and by_id[started].job.started
    assert not by_id[waiting].attempt_spent and not by_id[queued].attempt_spent
    rows = {row["id"]: row for row in job_rows(sync_connection)}
    assert rows[started]["attempts"] == 1  # it ran: the claim's attempt counts
    assert rows[waiting]["attempts"] == 0 and rows[queued]["attempts"] == 0  # refunded
    for job_id in (started, waiting, queued):
        row = rows[job_id]
        assert row["locked_by"] is None and row["locked_at"] is None
        assert row["last_error"].startswith(RECOVERED_PREFIX + f"worker {DEAD}")
        assert row["run_at"] == by_id[job_id].run_at
    assert rows[queued]["queue_locked_by"] is None
    assert "was running, so the attempt counts" in rows[started]["last_error"]
    assert "attempt was refunded" in rows[waiting]["last_error"]
    assert registered(sync_connection) == []
    # Runnable again only after the dead worker's recovery delay (30 s).
    delays = sync_connection.execute(
        "select extract(epoch from run_at - now()) from graphile_worker._private_jobs"
    ).fetchall()
    assert all(25 < delay <= 30 for (delay,) in delays)


async def test_a_second_recovery_without_a_real_attempt_spends_it(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    (job_id,) = await add(utils, 1)
    stage_dead_worker(sync_connection, [job_id])
    await utils.sweep()
    assert job_row(sync_connection, job_id)["attempts"] == 0  # type: ignore[index]
    # The job kills its next worker too, before any heartbeat reports it running.
    stage_dead_worker(sync_connection, [job_id], worker_id=DEAD + "2")
    report = await utils.sweep()
    (entry,) = report.jobs
    assert entry.job.previously_recovered and entry.attempt_spent
    row = job_row(sync_connection, job_id)
    assert row is not None
    assert row["attempts"] == 1
    assert "recovered before without a real attempt" in row["last_error"]


async def test_live_and_unregistered_workers_are_left_alone(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    live, node, dead = await add(utils, 3)
    stage_dead_worker(sync_connection, [live], worker_id="graphile_worker_alive", silent_for=1)
    lock_jobs(sync_connection, [node], "pool-0123456789abcdef")  # a Node worker never registers
    stage_dead_worker(sync_connection, [dead])

    report = await utils.sweep()

    assert report.workers == (DEAD,)
    assert [entry.job.id for entry in report.jobs] == [dead]
    assert job_row(sync_connection, live)["locked_by"] == "graphile_worker_alive"  # type: ignore[index]
    assert job_row(sync_connection, node)["locked_by"] == "pool-0123456789abcdef"  # type: ignore[index]
    assert registered(sync_connection) == ["graphile_worker_alive"]


async def test_dead_names_a_worker_whatever_its_heartbeat(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    (job_id,) = await add(utils, 1)
    stage_dead_worker(sync_connection, [job_id], silent_for=0)
    assert (await utils.sweep()).workers == ()
    report = await utils.sweep(dead=[DEAD])
    assert report.workers == (DEAD,)
    row = job_row(sync_connection, job_id)
    assert row is not None
    assert row["locked_by"] is None
    assert "reported dead" in row["last_error"]
    with pytest.raises(ConfigurationError, match="list of worker ids"):
        await utils.sweep(dead=DEAD)


async def test_long_running_jobs_wait_for_the_longer_threshold(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    (short,) = await add(utils, 1)
    (long,) = await add(utils, 1, queue_name="reports", flags=[LONG_RUNNING_FLAG])
    stage_dead_worker(sync_connection, [short, long], silent_for=600, long_running_stale_after=3600)

    report = await utils.sweep()

    actions = {entry.job.id: entry.action for entry in report.jobs}
    assert actions == {short: "recovered", long: "deferred"}
    assert job_row(sync_connection, short)["locked_by"] is None  # type: ignore[index]
    assert job_row(sync_connection, long)["locked_by"] == DEAD  # type: ignore[index]
    # Its queue stays locked (the job may still be running), and so does the worker's row.
    assert report.unlocked_queues == ()
    assert report.forgotten_workers == ()
    assert registered(sync_connection) == [DEAD]
    workers = await utils.list_workers()
    assert [(worker.worker_id, worker.stale, worker.locked_jobs) for worker in workers] == [
        (DEAD, True, 1)
    ]

    sync_connection.execute(
        "update graphile_worker._pyworker_workers set last_heartbeat_at = now() - interval '2 hours'"
    )
    report = await utils.sweep()
    assert [(entry.job.id, entry.action) for entry in report.jobs] == [(long, "recovered")]
    assert report.unlocked_queues == ("reports",)
    assert registered(sync_connection) == []


async def test_dry_run_changes_nothing(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    ids = await add(utils, 2)
    stage_dead_worker(sync_connection, ids, running=ids[:1])
    before = job_rows(sync_connection)

    report = await utils.sweep(dry_run=True)

    assert report.dry_run and report.workers == (DEAD,)
    assert [(entry.job.id, entry.attempt_spent, entry.run_at) for entry in report.jobs] == [
        (ids[0], True, None),
        (ids[1], False, None),
    ]
    assert job_rows(sync_connection) == before
    assert registered(sync_connection) == [DEAD]


async def test_sync_utils_sweep_and_list(
    database_url: str, sync_connection: psycopg.Connection[Any], utils: WorkerUtils
) -> None:
    from graphile_worker.utils import SyncWorkerUtils

    ids = await add(utils, 1)
    stage_dead_worker(sync_connection, ids)
    with SyncWorkerUtils.connect(database_url) as sync_utils:
        assert [worker.worker_id for worker in sync_utils.list_workers()] == [DEAD]
        assert sync_utils.sweep(dry_run=True).workers == (DEAD,)
        assert registered(sync_connection) == [DEAD]
        report = sync_utils.sweep()
    assert [entry.job.id for entry in report.jobs] == ids
    assert registered(sync_connection) == []


async def test_a_schema_without_the_registry_says_how_to_get_it(
    utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    sync_connection.execute("drop table graphile_worker._pyworker_workers")
    with pytest.raises(MigrationError, match="graphile-worker migrate"):
        await utils.list_workers()
    with pytest.raises(MigrationError, match="no worker registry"):
        await utils.sweep()


def test_recovery_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="at least twice heartbeat_interval"):
        RecoveryOptions(heartbeat_interval=10, stale_after=15)
    with pytest.raises(ConfigurationError, match="long_running_stale_after"):
        RecoveryOptions(stale_after=600, long_running_stale_after=300)
    with pytest.raises(ConfigurationError, match="recovery_delay must be 0 or more"):
        RecoveryOptions(recovery_delay=-1)
    with pytest.raises(ConfigurationError, match="heartbeat_interval must be a finite"):
        RecoveryOptions(heartbeat_interval=float("nan"))
    with pytest.raises(ConfigurationError, match="RecoverLater needs a delay"):
        RecoverLater(-5)


# ------------------------------------------------------------------------- in the worker


@task("work")
async def work(payload: Any, ctx: WorkerContext) -> None:
    return None


class Recoveries(Observer):
    def __init__(self) -> None:
        self.events: list[WorkerRecovered] = []

    def on_worker_recovered(self, event: WorkerRecovered) -> None:
        self.events.append(event)


async def test_a_running_worker_registers_heartbeats_and_unregisters(
    driver: DatabaseDriver, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    worker = Worker(options(driver, [work], recovery=FAST))
    async with worker:
        assert registered(sync_connection) == [worker.worker_id]
        first = sync_connection.execute(
            "select last_heartbeat_at from graphile_worker._pyworker_workers"
        ).fetchone()
        await eventually(
            lambda: (
                sync_connection.execute(
                    "select last_heartbeat_at from graphile_worker._pyworker_workers"
                ).fetchone()
                != first
            )
        )
        (info,) = await _list(driver)
        assert info.worker_id == worker.worker_id and not info.stale
        assert info.heartbeat_interval == FAST.heartbeat_interval
    assert registered(sync_connection) == []


async def _list(driver: DatabaseDriver) -> list[Any]:
    from graphile_worker.recovery import list_workers

    return await list_workers(driver)


async def test_connections_carry_the_worker_id(
    database_url: str, driver_name: str, sync_connection: psycopg.Connection[Any]
) -> None:
    worker = Worker(options(driver_name, [work], database_url=database_url))
    async with worker:
        names = {
            row[0]
            for row in sync_connection.execute(
                "select application_name from pg_stat_activity where datname = current_database()"
            ).fetchall()
        }
    assert worker.worker_id in names


async def test_the_worker_sweeps_at_start_and_runs_what_it_recovered(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    ids = await add(utils, 3)
    stage_dead_worker(sync_connection, ids, recovery_delay=0)
    observer = Recoveries()
    worker = Worker(options(driver, [work], recovery=FAST, hooks=[observer]))
    async with worker:
        await eventually(lambda: job_rows(sync_connection) == [])
    (event,) = observer.events
    assert event.worker_id == worker.worker_id and event.recovered_worker_id == DEAD
    assert sorted(entry.job.id for entry in event.jobs) == ids


async def test_recover_job_interceptors_decide(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    fail_me, later, broken, default = await add(utils, 4)
    stage_dead_worker(sync_connection, [fail_me, later, broken, default], recovery_delay=0)
    seen: list[StaleJob] = []

    def decide(job: StaleJob) -> Any:
        seen.append(job)
        if job.id == fail_me:
            return FailJob("charges a card; a person must look")
        if job.id == later:
            return RecoverLater(3600)
        if job.id == broken:
            raise RuntimeError("hook bug")
        return None  # not a decision: logged, recovered as usual

    plugin = Plugin("policy", recover_job=[decide])
    async with Worker(options(driver, [work], recovery=FAST, hooks=[plugin])):
        await eventually(lambda: job_row(sync_connection, default) is None)
        await eventually(lambda: job_row(sync_connection, broken) is None)
    assert sorted(job.id for job in seen) == [fail_me, later, broken, default]
    failed = job_row(sync_connection, fail_me)
    assert failed is not None
    assert failed["attempts"] == failed["max_attempts"] and failed["locked_by"] is None
    assert failed["last_error"].endswith("failed for good: charges a card; a person must look")
    postponed = job_row(sync_connection, later)
    assert postponed is not None and postponed["locked_by"] is None
    delay = sync_connection.execute(
        "select extract(epoch from run_at - now()) from graphile_worker._private_jobs "
        "where id = %s",
        (later,),
    ).fetchone()
    assert delay is not None and 3500 < delay[0] <= 3600


async def test_a_worker_given_up_while_alive_registers_again(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any], caplog: Any
) -> None:
    caplog.set_level(logging.ERROR, logger="graphile_worker.worker")
    worker = Worker(options(driver, [work], recovery=FAST))
    async with worker:
        sync_connection.execute("delete from graphile_worker._pyworker_workers")
        await eventually(lambda: registered(sync_connection) == [worker.worker_id])
        await eventually(lambda: "was given up as dead" in caplog.text)


async def test_without_a_registry_the_worker_runs_without_recovery(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    caplog: Any,
) -> None:
    caplog.set_level(logging.WARNING, logger="graphile_worker.worker")
    sync_connection.execute("drop table graphile_worker._pyworker_workers")
    await add(utils, 2)
    summary = await Worker(options(driver, [work], recovery=FAST)).run_once()
    assert summary.completed == 2
    assert "Dead-worker recovery is off" in caplog.text


async def test_recovery_off_neither_registers_nor_sweeps(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    ids = await add(utils, 1)
    stage_dead_worker(sync_connection, ids)
    async with Worker(options(driver, [work], recovery=None)):
        await anyio.sleep(0.3)
        assert registered(sync_connection) == [DEAD]
    assert job_row(sync_connection, ids[0])["locked_by"] == DEAD  # type: ignore[index]
