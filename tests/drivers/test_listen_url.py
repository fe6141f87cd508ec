"""``create_driver(listen_url=...)``: LISTEN on a direct connection, queries through another URL.

Behind PgBouncer in transaction mode the pool's URL cannot carry ``LISTEN``, so the one
listening connection goes straight to PostgreSQL. The tests tell the two URLs apart by
pointing them at two databases: ``NOTIFY`` never crosses databases, so the first notification
received says which one the listener is connected to.
"""

from __future__ import annotations

from typing import Any

import anyio
import psycopg
import pytest

from graphile_worker.drivers import Notification, create_driver
from graphile_worker.errors import ConfigurationError

pytestmark = pytest.mark.anyio


def _notify(url: str, payload: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("select pg_notify('jobs:insert', %s)", (payload,))


def _database(url: str) -> str:
    with psycopg.connect(url) as connection:
        row: Any = connection.execute("select current_database()").fetchone()
        return str(row[0])


async def test_listen_goes_to_listen_url_and_queries_to_url(
    database_url: str, empty_database_url: str, driver_name: str
) -> None:
    async with create_driver(
        database_url, driver=driver_name, listen_url=empty_database_url
    ) as driver:
        assert await driver.fetchval("select current_database()") == _database(database_url)
        stream = driver.listen("jobs:insert")
        assert stream is not None
        async with stream as notifications:
            # Sent first, on the pool's database: a listener there would receive it first.
            await anyio.to_thread.run_sync(_notify, database_url, "through the pool's URL")
            await anyio.to_thread.run_sync(_notify, empty_database_url, "through listen_url")
            with anyio.fail_after(10):
                received = await notifications.__anext__()
    assert received == Notification("jobs:insert", "through listen_url")


async def test_without_listen_url_the_listener_uses_url(
    database_url: str, empty_database_url: str, driver_name: str
) -> None:
    async with create_driver(database_url, driver=driver_name) as driver:
        stream = driver.listen("jobs:insert")
        assert stream is not None
        async with stream as notifications:
            await anyio.to_thread.run_sync(_notify, empty_database_url, "elsewhere")
            await anyio.to_thread.run_sync(_notify, database_url, "here")
            with anyio.fail_after(10):
                received = await notifications.__anext__()
    assert received == Notification("jobs:insert", "here")


def test_a_listen_url_that_is_not_postgresql_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unsupported database URL 'mysql://"):
        create_driver("postgresql://localhost/db", listen_url="mysql://localhost/db")


def test_worker_options_refuse_a_listen_url_that_is_not_a_string() -> None:
    from graphile_worker.task import task
    from graphile_worker.worker import WorkerOptions

    @task("listen_url_noop")
    async def noop(payload: object) -> None:
        pass

    with pytest.raises(ConfigurationError, match="listen_url must be a str, not 5"):
        WorkerOptions(tasks=[noop], listen_url=5)  # type: ignore[arg-type]
    assert WorkerOptions(tasks=[noop], listen_url="postgresql://db/x").listen_url == (
        "postgresql://db/x"
    )
