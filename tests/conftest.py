"""Suite-wide fixtures: one PostgreSQL per session, a fresh database per test, runtime x driver.

The server is the one in ``DATABASE_URL`` when that is set, otherwise a temporary cluster
started by :mod:`graphile_worker.embedded` (the same code users run for demos). A template
database is migrated once per session; every test that asks for ``database_url`` gets its own
``CREATE DATABASE ... TEMPLATE`` copy, which takes milliseconds, and it is dropped afterwards.

Async tests that ask for ``driver_name`` (or ``driver``) are parametrised over the valid
(anyio backend, driver) pairs only, so an invalid pair is never collected; async tests that
ask only for ``anyio_backend`` run on asyncio and trio.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from graphile_worker.embedded import Cluster, ExistingServer, TemporaryCluster

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver

ANYIO_BACKENDS = ("asyncio", "trio")
"""Every async test that does not care about the driver runs on each of these."""

RUNTIME_DRIVER_PAIRS = (
    ("asyncio", "asyncpg"),
    ("asyncio", "psycopg"),
    ("asyncio", "psycopg-threaded"),
    ("trio", "psycopg-threaded"),
    ("asyncio", "psycopg-anyio"),
    ("trio", "psycopg-anyio"),
)
"""The (anyio backend, driver name) pairs that can work: asyncpg and psycopg's async API are
asyncio-only, so trio gets the two psycopg drivers that run anywhere (threaded and anyio)."""

NODE_PROJECT = Path(__file__).parent / "node"
"""npm project pinning the Node graphile-worker release we are compatible with."""

# Unique per session, so that sessions sharing one server (DATABASE_URL, or several engineers
# on one development server) never touch each other's databases.
_SESSION_TOKEN = uuid.uuid4().hex[:8]
_database_numbers = itertools.count(1)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise async tests over the backends, and driver tests over the valid pairs.

    Both are direct parametrisations of ``anyio_backend`` (which overrides the fixture of
    that name), so a driver test gets the four valid pairs rather than the product of two
    backends and four drivers. Module scope matches anyio's own ``anyio_backend`` fixture,
    so module-scoped async fixtures keep working. anyio's plugin adds ``anyio_backend`` to
    every test marked ``anyio`` before this hook runs.
    """
    if "driver_name" in metafunc.fixturenames:
        metafunc.parametrize(
            ("anyio_backend", "driver_name"),
            RUNTIME_DRIVER_PAIRS,
            ids=[f"{backend}-{driver}" for backend, driver in RUNTIME_DRIVER_PAIRS],
            scope="module",
        )
    elif "anyio_backend" in metafunc.fixturenames:
        metafunc.parametrize("anyio_backend", ANYIO_BACKENDS, scope="module")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """The async runtime a test runs on: asyncio and trio, unless a driver narrows it.

    :func:`pytest_generate_tests` parametrises every test that uses this fixture, so the
    body only runs for a dynamic ``request.getfixturevalue("anyio_backend")``.
    """
    return "asyncio"


@pytest.fixture(scope="module")
def driver_name() -> str:
    """The driver for :func:`graphile_worker.drivers.create_driver`; see RUNTIME_DRIVER_PAIRS.

    :func:`pytest_generate_tests` parametrises every test that uses this fixture, so the
    body only runs for a dynamic ``request.getfixturevalue("driver_name")``.
    """
    return "psycopg-threaded"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The PostgreSQL server for this session: ``DATABASE_URL``, or a temporary cluster."""
    url = os.environ.get("DATABASE_URL")
    cluster: Cluster = ExistingServer(url) if url else TemporaryCluster()
    with cluster:
        yield cluster


def _new_database_name(purpose: str) -> str:
    return f"gwtest_{_SESSION_TOKEN}_{purpose}{next(_database_numbers)}"


@pytest.fixture(scope="session")
def _migrated_template(pg_cluster: Cluster) -> Iterator[str]:
    """Name of a database holding every migration in schema ``graphile_worker``.

    Created and migrated once per session with our own migrator, then only ever cloned.
    """
    try:
        import psycopg

        from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
        from graphile_worker.migrations import migrate_sync
    except ImportError as error:
        pytest.fail(
            f"cannot build the migrated template database: {error}. The migrator "
            f"(graphile_worker.migrations.migrate_sync) and psycopg must import.",
            pytrace=False,
        )
    name = _new_database_name("template")
    url = pg_cluster.create_database(name)
    try:
        # The connection must be closed before the first clone: PostgreSQL refuses to copy
        # a template somebody is connected to.
        with psycopg.connect(url, autocommit=True) as connection:
            migrate_sync(PsycopgSyncExecutor(connection))
        yield name
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture
def database_url(pg_cluster: Cluster, _migrated_template: str) -> Iterator[str]:
    """URL of a fresh database of this test's own, fully migrated (schema graphile_worker)."""
    name = _new_database_name("db")
    url = pg_cluster.create_database(name, template=_migrated_template)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture
def empty_database_url(pg_cluster: Cluster) -> Iterator[str]:
    """URL of a fresh database of this test's own, with no graphile-worker schema at all."""
    name = _new_database_name("empty")
    url = pg_cluster.create_database(name)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture
async def driver(database_url: str, driver_name: str) -> AsyncIterator[DatabaseDriver]:
    """An open driver of kind ``driver_name`` on ``database_url``, closed after the test."""
    from graphile_worker.drivers import create_driver

    opened: DatabaseDriver = await create_driver(database_url, driver=driver_name)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def sync_connection(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit psycopg connection to ``database_url``, closed after the test."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def _pinned_node_version() -> str:
    manifest = json.loads((NODE_PROJECT / "package.json").read_text())
    version: str = manifest["dependencies"]["graphile-worker"]
    return version


def _installed_node_version(package_dir: Path) -> str | None:
    try:
        manifest = json.loads((package_dir / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("version")
    return version if isinstance(version, str) else None


@pytest.fixture(scope="session")
def node_graphile_worker() -> Path:
    """Path of the pinned npm graphile-worker package, installed with ``npm ci`` if needed.

    Skips when Node.js or npm is missing, unless ``CI`` is set: there a missing Node would
    silently drop the interoperability tests, so it fails instead.
    """
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        reason = (
            f"{' and '.join(missing)} not found on PATH; install Node.js 20+ with npm to run "
            f"the Node graphile-worker interoperability tests"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
        pytest.skip(reason)

    pinned = _pinned_node_version()
    package_dir = NODE_PROJECT / "node_modules" / "graphile-worker"
    # A lock file keeps parallel pytest processes (xdist) from running npm ci together.
    with (NODE_PROJECT / ".npm-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_node_version(package_dir) != pinned:
            completed = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=NODE_PROJECT,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if completed.returncode != 0:
                pytest.fail(
                    f"`npm ci` in {NODE_PROJECT} failed with exit status "
                    f"{completed.returncode}:\n{completed.stdout}\n{completed.stderr}",
                    pytrace=False,
                )
    installed = _installed_node_version(package_dir)
    if installed != pinned:
        pytest.fail(
            f"expected graphile-worker {pinned} in {package_dir}, found {installed or 'nothing'}",
            pytrace=False,
        )
    return package_dir
