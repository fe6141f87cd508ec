"""Every driver against a server that only accepts TLS, verifying its certificate.

The server (``tls_server``) has ``hostssl`` lines only in ``pg_hba.conf``, so nothing here
could pass over a plain connection: the first test proves that such a connection is refused.
The URLs are what a managed service hands out: ``sslmode=verify-full`` with ``sslrootcert``
naming the CA certificate, and a host the server's certificate lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import psycopg
import pytest

from graphile_worker.drivers import create_driver
from graphile_worker.errors import ConnectionLostError
from graphile_worker.task import task
from graphile_worker.utils import WorkerUtils
from graphile_worker.worker import Worker

from ..worker.conftest import eventually, options

if TYPE_CHECKING:
    from pathlib import Path

    from graphile_worker.drivers import DatabaseDriver
    from tests._servers import TlsServer

pytestmark = pytest.mark.anyio

_SESSION_USES_TLS = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
# The worker's LISTEN connection, and whether it is encrypted.
_LISTENER_USES_TLS = """
select ssl.ssl from pg_stat_activity as activity join pg_stat_ssl as ssl using (pid)
where activity.datname = current_database() and activity.query ilike 'listen%'
  and activity.pid <> pg_backend_pid()
"""


async def test_a_connection_without_tls_is_refused(
    driver_name: str, tls_server: TlsServer, tls_database: str
) -> None:
    url = tls_server.url(tls_database, sslmode="disable")
    # "..., no encryption" since PostgreSQL 14, "..., SSL off" before.
    with pytest.raises(ConnectionLostError, match="no pg_hba.conf entry"):
        await create_driver(url, driver=driver_name)


async def test_the_worker_migrates_runs_jobs_and_wakes_over_verified_tls(
    driver_name: str, tls_server: TlsServer, tls_database: str
) -> None:
    url = tls_server.verified_url(tls_database)
    done: list[int] = []

    @task("over_tls")
    async def over_tls(payload: dict[str, int]) -> None:
        done.append(payload["n"])

    async with create_driver(url, driver=driver_name) as utils_driver:
        assert await utils_driver.fetchval(_SESSION_USES_TLS) is True
        utils = WorkerUtils(utils_driver)
        # The worker opens its own pool and LISTEN connection from the URL, and migrates the
        # empty database first; a ten-second poll leaves only NOTIFY to start the job soon.
        settings = options(driver_name, [over_tls], database_url=url, migrate=True)
        async with Worker(settings):
            await eventually(lambda: _listener_encrypted(utils_driver))
            await anyio.sleep(0.1)  # idle: the first claim came back empty
            await utils.add_job("over_tls", {"n": 1})
            await eventually(lambda: done == [1])


async def _listener_encrypted(driver: DatabaseDriver) -> bool:
    rows = await driver.fetch(_LISTENER_USES_TLS)
    return [row["ssl"] for row in rows] == [True]


async def test_a_certificate_from_another_authority_is_refused_clearly(
    driver_name: str, tls_server: TlsServer, tls_database: str
) -> None:
    url = tls_server.verified_url(tls_database, authority=tls_server.other_authority)
    with pytest.raises(ConnectionLostError) as caught:
        await create_driver(url, driver=driver_name)
    message = str(caught.value)
    assert message.startswith("TLS certificate verification failed"), message
    assert "sslrootcert" in message


async def test_a_missing_root_certificate_file_is_named(
    driver_name: str, tls_server: TlsServer, tls_database: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    url = tls_server.url(tls_database, sslmode="verify-full", sslrootcert=str(missing))
    with pytest.raises(ConnectionLostError, match="does not exist") as caught:
        await create_driver(url, driver=driver_name)
    assert str(missing) in str(caught.value)


async def test_sslrootcert_system_is_libpq_only(
    driver_name: str, tls_server: TlsServer, tls_database: str
) -> None:
    # libpq 16+ reads "system" as the operating system's CA store, which does not hold the
    # throwaway CA; asyncpg has no such value and would report a bare "[Errno 2]".
    url = tls_server.url(tls_database, sslmode="verify-full", sslrootcert="system")
    if driver_name == "asyncpg":
        expected = "asyncpg driver does not support sslrootcert=system"
    elif psycopg.pq.version() >= 160000:
        expected = "TLS certificate verification failed"
    else:
        expected = 'root certificate file "system" does not exist'
    with pytest.raises(ConnectionLostError, match=expected):
        await create_driver(url, driver=driver_name)
