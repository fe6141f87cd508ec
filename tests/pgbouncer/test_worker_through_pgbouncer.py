"""The worker, ``WorkerUtils``, the migrator and cron through PgBouncer in transaction mode.

Every driver connects to ``pgbouncer_url`` with prepared statements off, as the README says
to; the one ``LISTEN`` connection goes straight to PostgreSQL (``database_url``), because
notifications cannot come back through transaction pooling. What a worker did is read over
a direct connection (``sync_connection``). Each test also checks, on PgBouncer's admin
console, that its database really was reached through a transaction-mode pool.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import psycopg
import pytest

from graphile_worker.crontab import parse_crontab
from graphile_worker.drivers import create_driver
from graphile_worker.errors import QueryError
from graphile_worker.migrations import migrate
from graphile_worker.migrations.catalog import LATEST_MIGRATION
from graphile_worker.task import task
from graphile_worker.utils import SyncWorkerUtils, WorkerUtils
from graphile_worker.worker import ManualCronClock, Worker

from ..worker.conftest import eventually, job_rows, options

if TYPE_CHECKING:
    from tests._servers import PgBouncer

pytestmark = pytest.mark.anyio


def assert_pooled(pgbouncer: PgBouncer, url: str) -> None:
    """The database of ``url`` has a PgBouncer pool, in transaction mode."""
    database = url.rpartition("/")[2].partition("?")[0]
    pools = pgbouncer.pools()
    assert database in pools, sorted(pools)
    assert pools[database]["pool_mode"] == "transaction"


async def test_jobs_run_and_a_direct_listen_connection_wakes_the_worker(
    driver_name: str,
    pgbouncer: PgBouncer,
    pgbouncer_url: str,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
) -> None:
    done: list[int] = []

    @task("pooled")
    async def pooled(payload: dict[str, int]) -> None:
        await anyio.lowlevel.checkpoint()  # let other jobs' statements interleave
        done.append(payload["n"])

    async with create_driver(
        pgbouncer_url, driver=driver_name, prepared_statements=False, listen_url=database_url
    ) as driver:
        utils = WorkerUtils(driver)
        for number in range(12):
            await utils.add_job("pooled", {"n": number})
        # Four jobs at once: their transactions share PgBouncer's server connections. The
        # ten-second poll leaves only NOTIFY to find the last job soon.
        async with Worker(options(driver, [pooled], concurrency=4, poll_interval=10.0)):
            await eventually(lambda: len(done) == 12)
            await anyio.sleep(0.1)  # idle: the claim after the last job came back empty
            await utils.add_job("pooled", {"n": 12})
            await eventually(lambda: len(done) == 13)
    assert sorted(done) == list(range(13))
    assert job_rows(sync_connection) == []
    assert_pooled(pgbouncer, pgbouncer_url)


async def test_without_a_listen_url_polling_still_finds_jobs(
    driver_name: str, pgbouncer_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    # LISTEN through the pooler is accepted, but its notifications go astray: nothing fails,
    # and the worker finds new jobs by polling instead.
    done: list[int] = []

    @task("polled")
    async def polled(payload: dict[str, int]) -> None:
        done.append(payload["n"])

    async with (
        create_driver(pgbouncer_url, driver=driver_name, prepared_statements=False) as driver,
        Worker(options(driver, [polled], poll_interval=0.2)),
    ):
        await WorkerUtils(driver).add_job("polled", {"n": 1})
        await eventually(lambda: done == [1])
    assert job_rows(sync_connection) == []


async def test_the_migrator_works_through_pgbouncer(
    driver_name: str, pgbouncer: PgBouncer, empty_database_url: str
) -> None:
    # Each migration is one transaction under pg_advisory_xact_lock, which a transaction
    # pooler keeps on one server connection from BEGIN to COMMIT.
    url = pgbouncer.url(empty_database_url)
    async with create_driver(url, driver=driver_name, prepared_statements=False) as driver:
        first = await migrate(driver)
        again = await migrate(driver)
    assert (first.previous_version, first.current_version) == (None, LATEST_MIGRATION)
    assert again.current_version == LATEST_MIGRATION and not again.changed
    assert_pooled(pgbouncer, url)


async def test_a_cron_item_fires_through_pgbouncer(
    driver_name: str,
    pgbouncer_url: str,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
) -> None:
    start = datetime(2030, 1, 1, 9, 59, 30, tzinfo=timezone.utc)
    clock = ManualCronClock(start)

    @task("idle")
    async def idle(payload: object) -> None:
        """Known to the worker so that it starts; the cron job is for another task."""

    async with create_driver(
        pgbouncer_url, driver=driver_name, prepared_statements=False, listen_url=database_url
    ) as driver:
        crontab = parse_crontab("* * * * * every_minute")
        async with Worker(options(driver, [idle], crontab=crontab, cron_clock=clock)):
            clock.advance(timedelta(minutes=1))
            await eventually(lambda: len(job_rows(sync_connection)) == 1)
    (job,) = job_rows(sync_connection)
    assert job["task_identifier"] == "every_minute"
    assert job["run_at"] == datetime(2030, 1, 1, 10, 0, tzinfo=timezone.utc)


async def test_prepared_statement_errors_name_the_fix(driver_name: str, pgbouncer_url: str) -> None:
    # What a transaction pooler does to prepared statements, made on purpose: a statement
    # prepared twice on one server connection (42P05), and one that is not there (26000).
    async with create_driver(
        pgbouncer_url, driver=driver_name, prepared_statements=False
    ) as driver:
        with pytest.raises(QueryError, match="--no-prepared-statements") as caught:
            async with driver.transaction() as transaction:
                await transaction.execute("prepare gw_twice as select 1")
                await transaction.execute("prepare gw_twice as select 1")
        assert caught.value.sqlstate == "42P05"
        with pytest.raises(QueryError, match="prepared_statements=False") as caught:
            await driver.execute("execute gw_never_prepared")
        assert caught.value.sqlstate == "26000"


def test_sync_worker_utils_add_jobs_through_pgbouncer(
    pgbouncer_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    # psycopg prepares a statement after its fifth run on a connection unless told not to;
    # prepare_threshold=None is the sync equivalent of prepared_statements=False.
    with psycopg.connect(pgbouncer_url, autocommit=True, prepare_threshold=None) as connection:
        utils = SyncWorkerUtils(connection)
        for number in range(8):
            utils.add_job("sync_pooled", {"n": number})
    assert [row["payload"] for row in job_rows(sync_connection)] == [{"n": n} for n in range(8)]


async def test_recovery_heartbeats_and_sweeps_through_pgbouncer(
    driver_name: str,
    pgbouncer: PgBouncer,
    pgbouncer_url: str,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
) -> None:
    # The sweep's advisory lock is transaction-scoped, and the whole sweep is one
    # transaction, which a transaction pooler keeps on one server connection.
    from graphile_worker.recovery import RecoveryOptions

    from ..worker.test_recovery import DEAD, registered, stage_dead_worker

    done: list[int] = []

    @task("recovered")
    async def recovered(payload: dict[str, int]) -> None:
        done.append(payload["n"])

    async with create_driver(
        pgbouncer_url, driver=driver_name, prepared_statements=False
    ) as driver:
        utils = WorkerUtils(driver)
        ids = [(await utils.add_job("recovered", {"n": n})).id for n in range(3)]
        stage_dead_worker(sync_connection, ids, recovery_delay=0)
        assert (await utils.sweep(dry_run=True)).workers == (DEAD,)
        fast = RecoveryOptions(heartbeat_interval=0.2, stale_after=1.0, recovery_delay=0.0)
        worker = Worker(options(driver, [recovered], recovery=fast, poll_interval=0.2))
        async with worker:
            await eventually(lambda: sorted(done) == [0, 1, 2])
            assert registered(sync_connection) == [worker.worker_id]
            assert [info.worker_id for info in await utils.list_workers()] == [worker.worker_id]
    assert registered(sync_connection) == []
    assert job_rows(sync_connection) == []
    assert_pooled(pgbouncer, pgbouncer_url)
