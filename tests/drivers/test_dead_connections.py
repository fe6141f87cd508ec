"""Connections the server killed while they sat in the pool are never lent out.

Every backend the driver holds is ended with ``pg_terminate_backend`` from a separate
connection, the way a restart, a failover or an administrator ends them; then the driver
(and a worker running on it) must carry on at once: the next statements succeed on fresh
connections, the next job starts, and no outcome is lost. The worker tests wait for the
next job with the test options' 10-second poll interval, so a claim that failed on a dead
connection (and waited for the next poll) cannot pass the 5-second bound.
"""

from __future__ import annotations

import operator
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from graphile_worker.task import task
from graphile_worker.worker import Worker

from ..worker.conftest import eventually, job_rows, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver

pytestmark = pytest.mark.anyio

POOL_SIZE = 10  # the driver fixture's max_size (create_driver's default)
PROMPTLY = 5.0
"""Seconds within which work must go on after the kill: generous; it takes milliseconds."""


def backends(connection: psycopg.Connection[Any]) -> set[int]:
    """Every client backend connected to this database, except ``connection``'s own."""
    rows = connection.execute(
        "select pid from pg_stat_activity where datname = current_database() "
        "and backend_type = 'client backend' and pid <> pg_backend_pid()"
    ).fetchall()
    return {pid for (pid,) in rows}


async def kill_every_backend(connection: psycopg.Connection[Any]) -> set[int]:
    """Terminate every other backend of the database and wait until all are gone."""
    victims = backends(connection)
    connection.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity "
        "where datname = current_database() and pid <> pg_backend_pid()"
    )
    await eventually(lambda: not victims & backends(connection))
    # asyncpg learns that a connection died when its event loop reads the socket, which
    # may not have happened yet when the backend's process is gone; give the loop that
    # moment, as an application would have it between the kill and its next statement.
    # The psycopg drivers read nothing in the background: the pause changes nothing there.
    await anyio.sleep(0.1)
    return victims


def add_job(connection: psycopg.Connection[Any], payload: str) -> None:
    """Queue a ``counted`` job over the test's own connection, not the driver under test."""
    connection.execute("select graphile_worker.add_job('counted', %s::json)", [payload])


async def fill_the_pool(driver: DatabaseDriver) -> None:
    """Make the driver open as many connections as it may, by running that many at once."""
    async with anyio.create_task_group() as group:
        for _ in range(POOL_SIZE):
            group.start_soon(driver.execute, "select pg_sleep(0.3)")


async def test_statements_after_every_pooled_connection_was_killed_succeed(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    await fill_the_pool(driver)
    killed = await kill_every_backend(sync_connection)
    assert len(killed) >= 3  # the pool really held several connections
    with anyio.fail_after(PROMPTLY):
        # More statements than the pool held connections: each dead one would be tried.
        for n in range(len(killed) + 2):
            assert await driver.fetchval("select :n::int", {"n": n}) == n
        async with driver.transaction() as transaction:
            assert await transaction.fetchval("select 42") == 42
    assert not killed & backends(sync_connection)


@pytest.mark.parametrize("batch_delay", [None, 0.0], ids=["unbatched", "batched"])
async def test_a_worker_whose_connections_are_all_killed_carries_on(
    driver: DatabaseDriver,
    sync_connection: psycopg.Connection[Any],
    batch_delay: float | None,
) -> None:
    runs: dict[int, int] = {}
    release = anyio.Event()

    @task("counted")
    async def counted(payload: dict[str, Any]) -> None:
        runs[payload["n"]] = runs.get(payload["n"], 0) + 1
        if payload.get("hold"):
            await release.wait()

    worker = Worker(
        options(
            driver,
            [counted],
            concurrency=4,
            complete_job_batch_delay=batch_delay,
            fail_job_batch_delay=batch_delay,
        )
    )
    async with worker:
        for round_ in range(3):
            held, after = 2 * round_, 2 * round_ + 1
            release = anyio.Event()
            add_job(sync_connection, f'{{"n": {held}, "hold": true}}')
            await eventually(partial(operator.contains, runs, held))
            await fill_the_pool(driver)
            await kill_every_backend(sync_connection)
            # The held job ends on a worker whose every connection is dead: its outcome must
            # be written, and the next job must start, at once.
            release.set()
            add_job(sync_connection, f'{{"n": {after}}}')
            await eventually(lambda: job_rows(sync_connection) == [], within=PROMPTLY)
            assert runs == dict.fromkeys(range(after + 1), 1)
