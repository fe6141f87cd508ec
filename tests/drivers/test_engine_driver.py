"""SQLAlchemyEngineDriver: the driver contract over an application's own SQLAlchemy engine.

The conformance suite runs again here with the ``driver`` fixture replaced by a driver over an
engine. Each of the suite's (runtime, driver) pairs stands for the engine built on the
closest DBAPI, so every engine runs on every runtime it supports and no invalid pair exists:

========================  ==========================================  ===============
pair's driver name        engine                                      runtimes
========================  ==========================================  ===============
``asyncpg``               ``AsyncEngine``, ``postgresql+asyncpg``     asyncio
``psycopg``               ``AsyncEngine``, ``postgresql+psycopg``     asyncio
``psycopg-threaded``      ``Engine``, ``postgresql+psycopg``          asyncio, trio
``psycopg-anyio``         ``Engine``, ``postgresql+psycopg``,         asyncio, trio
                          ``NullPool`` (a connection per checkout)
========================  ==========================================  ===============

The tests after the suite check what only an engine-backed driver promises: the engine is
the application's (never disposed), connections are borrowed within ``max_connections``,
dead pooled connections are skipped, and a misfit engine or runtime is refused clearly.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from graphile_worker.drivers import DatabaseDriver, Notification, SQLAlchemyEngineDriver
from graphile_worker.errors import (
    ConfigurationError,
    ConnectionLostError,
    DriverUnavailableError,
)

from . import test_conformance as conformance
from .test_dead_connections import backends, kill_every_backend

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine

    from graphile_worker.embedded import Cluster

pytestmark = pytest.mark.anyio

# driver name of the pair -> (dialect, async engine?, extra create_engine arguments)
ENGINES: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "asyncpg": ("postgresql+asyncpg", True, {}),
    "psycopg": ("postgresql+psycopg", True, {}),
    "psycopg-threaded": ("postgresql+psycopg", False, {}),
    "psycopg-anyio": ("postgresql+psycopg", False, {"poolclass": NullPool}),
}


def engine_url(database_url: str, dialect: str) -> str:
    """``database_url`` (``postgresql://...``) spelled for a SQLAlchemy dialect."""
    return dialect + database_url.removeprefix("postgresql")


def make_engine(database_url: str, driver_name: str, **arguments: Any) -> Engine | AsyncEngine:
    """The application's engine that stands for ``driver_name`` (see the module docstring)."""
    dialect, is_async, extra = ENGINES[driver_name]
    settings = {**extra, **arguments}
    if settings.get("poolclass") is NullPool:
        for name in ("pool_size", "max_overflow", "pool_timeout"):
            settings.pop(name, None)
    url = engine_url(database_url, dialect)
    made: Engine | AsyncEngine
    if is_async:
        made = create_async_engine(url, **settings)
    else:
        made = sqlalchemy.create_engine(url, **settings)
    _count_checkouts(made)
    return made


class _Lent:
    """Connections an engine has lent out, counted by its pool's checkout/checkin events."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()  # a sync engine lends from worker threads

    def checkout(self, *_: object) -> None:
        with self._lock:
            self.count += 1

    def checkin(self, *_: object) -> None:
        with self._lock:
            self.count -= 1


_LENT: dict[int, _Lent] = {}


def _count_checkouts(engine: Engine | AsyncEngine) -> None:
    target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    lent = _LENT[id(target)] = _Lent()
    sqlalchemy.event.listen(target, "checkout", lent.checkout)
    sqlalchemy.event.listen(target, "checkin", lent.checkin)


async def dispose(engine: Engine | AsyncEngine) -> None:
    """What the application does at exit; the driver never does it."""
    if isinstance(engine, AsyncEngine):
        await engine.dispose()
    else:
        await anyio.to_thread.run_sync(engine.dispose)


def borrowed(engine: Engine | AsyncEngine, connection: psycopg.Connection[Any]) -> int:
    """Connections the engine has lent out now.

    A pooling engine counts them itself (``pool.checkedout()``). A ``NullPool`` engine does
    not, and counting its open backends in ``pg_stat_activity`` would overcount: a backend
    outlives its client's close for a moment. Its pool's checkout and checkin events are
    counted instead (see :func:`make_engine`).
    """
    pool: Any = engine.pool
    if isinstance(pool, NullPool):
        target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        return _LENT[id(target)].count
    count: int = pool.checkedout()
    return count


@pytest.fixture(name="engine")
async def engine_fixture(
    database_url: str, driver_name: str
) -> AsyncIterator[Engine | AsyncEngine]:
    """The application's engine for this pair, disposed by the test, as an application would
    (never by the driver). The worker tests import it too."""
    created = make_engine(database_url, driver_name)
    try:
        yield created
    finally:
        await dispose(created)


@pytest.fixture
async def driver(engine: Engine | AsyncEngine) -> DatabaseDriver:
    """Overrides the suite's ``driver``: a driver borrowing from the engine."""
    return SQLAlchemyEngineDriver(engine)


# ----------------------------------------------------------------- the conformance suite


class TestStatements(conformance.TestStatements):
    pass


class TestTypes(conformance.TestTypes):
    pass


class TestTransactions(conformance.TestTransactions):
    pass


class TestListen(conformance.TestListen):
    async def test_keeps_retrying_while_the_server_refuses(  # type: ignore[override]
        self, driver: DatabaseDriver, pg_cluster: Cluster
    ) -> None:
        """The suite's test ends the listener's session only, and an engine's pool then
        hands the listener an idle connection it already had; here every session ends."""
        import psycopg

        stream = driver.listen("jobs:insert")
        assert stream is not None
        database = await driver.fetchval("select current_database()")
        allow = f'alter database "{database}" with allow_connections '
        async with stream as notifications:
            with psycopg.connect(pg_cluster.admin_url, autocommit=True) as admin:
                admin.execute(allow + "false")
                try:
                    admin.execute(
                        "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s",
                        [database],
                    )
                    # Attempts fail (and back off) while connections are refused.
                    with anyio.move_on_after(0.7):
                        await notifications.__anext__()
                        pytest.fail("reconnected although the database refused connections")
                finally:
                    admin.execute(allow + "true")
            assert await conformance._next(notifications, seconds=15) == conformance.RECONNECTED
            await driver.execute("select pg_notify('jobs:insert', 'back')")
            assert await conformance._next(notifications) == Notification("jobs:insert", "back")


class TestErrors(conformance.TestErrors):
    pass


class TestCancellation(conformance.TestCancellation):
    async def test_cancelled_calls_do_not_leak_connections(
        self, database_url: str, driver_name: str
    ) -> None:
        """The suite's test opens a pool of one; here, an engine whose pool holds one."""
        small = make_engine(database_url, driver_name, pool_size=1, max_overflow=0, pool_timeout=10)
        try:
            driver = SQLAlchemyEngineDriver(small)
            for _ in range(3):
                with anyio.move_on_after(0.2):
                    await driver.fetchval("select pg_sleep(30)")
                with anyio.move_on_after(0.2):
                    async with driver.transaction() as tx:
                        await tx.fetchval("select pg_sleep(30)")
            with anyio.fail_after(15):  # with a leaked connection the pool would time out
                assert await driver.fetchval("select 2") == 2
                async with driver.transaction() as tx:
                    assert await tx.fetchval("select 3") == 3
        finally:
            await dispose(small)


# ------------------------------------------------------------- what engines add to the contract


async def app_query(engine: Engine | AsyncEngine) -> Any:
    """A statement the application runs through its engine itself."""
    query = sqlalchemy.text("select 41 + 1")
    if isinstance(engine, AsyncEngine):
        async with engine.connect() as connection:
            return (await connection.execute(query)).scalar()

    def run() -> Any:
        with engine.connect() as connection:
            return connection.execute(query).scalar()

    return await anyio.to_thread.run_sync(run)


async def test_the_engine_stays_the_applications(engine: Engine | AsyncEngine) -> None:
    async with SQLAlchemyEngineDriver(engine) as driver:
        assert await driver.fetchval("select 1") == 1
        stream = driver.listen("jobs:insert")
        assert stream is not None
        async with stream:
            pass
    # Closing the driver leaves the engine, its pool and the driver itself usable.
    assert await app_query(engine) == 42
    assert await driver.fetchval("select 2") == 2
    assert driver.engine is engine
    pool: Any = engine.pool
    if not isinstance(pool, NullPool):
        assert pool.checkedout() == 0


async def test_never_borrows_more_than_max_connections(
    engine: Engine | AsyncEngine, sync_connection: psycopg.Connection[Any]
) -> None:
    driver = SQLAlchemyEngineDriver(engine, max_connections=2)
    peak = 0
    done = anyio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, borrowed(engine, sync_connection))
            await anyio.sleep(0.01)

    async def transact() -> None:
        async with driver.transaction() as tx:
            await tx.execute("select pg_sleep(0.1)")

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        async with anyio.create_task_group() as calls:
            for _ in range(3):
                calls.start_soon(driver.execute, "select pg_sleep(0.1)")
                calls.start_soon(transact)
        done.set()
    assert 1 <= peak <= 2


async def test_statements_skip_pooled_connections_the_server_ended(
    engine: Engine | AsyncEngine, sync_connection: psycopg.Connection[Any]
) -> None:
    driver = SQLAlchemyEngineDriver(engine)
    async with anyio.create_task_group() as group:  # make the pool hold several
        for _ in range(4):
            group.start_soon(driver.execute, "select pg_sleep(0.2)")
    killed = await kill_every_backend(sync_connection)
    with anyio.fail_after(5):
        for n in range(6):
            assert await driver.fetchval("select CAST(:n AS int)", {"n": n}) == n
        async with driver.transaction() as tx:
            assert await tx.fetchval("select 42") == 42
    assert not killed & backends(sync_connection)


async def test_an_unreachable_server_is_a_lost_connection_naming_the_engine(
    driver_name: str,
) -> None:
    unreachable = make_engine("postgresql://postgres:secret@127.0.0.1:1/postgres", driver_name)
    try:
        driver = SQLAlchemyEngineDriver(unreachable)
        with anyio.fail_after(30), pytest.raises(ConnectionLostError) as caught:
            await driver.fetchval("select 1")
        message = str(caught.value)
        assert "SQLAlchemy engine" in message
        assert "127.0.0.1:1" in message
        assert "secret" not in message
    finally:
        await dispose(unreachable)


async def test_a_missing_database_is_a_lost_connection(database_url: str, driver_name: str) -> None:
    base = database_url.rpartition("/")[0]
    missing = make_engine(f"{base}/no_such_database", driver_name)
    try:
        with pytest.raises(ConnectionLostError, match="no_such_database"):
            async with SQLAlchemyEngineDriver(missing).transaction():
                pass
    finally:
        await dispose(missing)


# ------------------------------------------------------- refusals that need no database


def test_an_async_engine_on_trio_is_refused_naming_the_sync_engine() -> None:
    async def use() -> None:
        engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/postgres")
        driver = SQLAlchemyEngineDriver(engine)
        with pytest.raises(DriverUnavailableError, match="sync Engine"):
            await driver.fetchval("select 1")
        with pytest.raises(DriverUnavailableError, match="asyncio only"):
            async with driver.transaction():
                pass

    anyio.run(use, backend="trio")


def test_only_postgresql_engines_are_accepted() -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        SQLAlchemyEngineDriver(sqlalchemy.create_engine("sqlite://"))
    with pytest.raises(ConfigurationError, match="Engine or AsyncEngine"):
        SQLAlchemyEngineDriver("postgresql://localhost/app")  # type: ignore[arg-type]
    engine = sqlalchemy.create_engine("postgresql+psycopg://localhost/app")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigurationError, match="max_connections"):
            SQLAlchemyEngineDriver(engine, max_connections=bad)  # type: ignore[arg-type]
