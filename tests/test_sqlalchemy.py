"""Adding jobs inside a caller's SQLAlchemy transaction, sync and async.

Each test checks the three promises of :mod:`graphile_worker.sqlalchemy`: the job is visible
inside the caller's transaction before commit and invisible outside it, a rollback discards
it and a commit keeps it, and no connection other than the caller's is used. The async
tests run on asyncio only (SQLAlchemy's asyncio extension has no trio support), each inside
``anyio.run(..., backend="asyncio")``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Awaitable, Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session

from graphile_worker.drivers.sqlalchemy import SQLAlchemyAsyncExecutor, SQLAlchemySyncExecutor
from graphile_worker.errors import ConnectionLostError, QueryError, UniqueViolationError
from graphile_worker.spec import JobSpec
from graphile_worker.sqlalchemy import add_job, add_jobs, using
from graphile_worker.utils import SyncWorkerUtils, WorkerUtils

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession


COUNT_JOBS = "select count(*) from graphile_worker.jobs"


@dataclasses.dataclass
class Notify:
    IDENTIFIER: ClassVar[str] = "notify"
    user_id: int


def sqlalchemy_url(database_url: str, dialect: str) -> sa.URL:
    return make_url(database_url).set(drivername=f"postgresql+{dialect}")


def count(connection: psycopg.Connection[Any], sql: str = COUNT_JOBS) -> int:
    row = connection.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def backends(connection: psycopg.Connection[Any]) -> int:
    """Connections open to this test's database, the observer's own included."""
    return count(
        connection, "select count(*) from pg_stat_activity where datname = current_database()"
    )


@pytest.fixture
def observer(sync_connection: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """A connection outside the caller's transaction."""
    return sync_connection


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    # One pooled connection and no overflow: asking the pool for a second would fail.
    created = sa.create_engine(
        sqlalchemy_url(database_url, "psycopg"), pool_size=1, max_overflow=0, pool_timeout=1
    )
    yield created
    created.dispose()


# ------------------------------------------------------------------------------------ sync


@pytest.fixture(params=["session", "connection"])
def bind(request: pytest.FixtureRequest, engine: Engine) -> Iterator[Session | Connection]:
    """A caller's Session or Connection, with a transaction that the test ends."""
    if request.param == "session":
        with Session(engine) as session:
            yield session
    else:
        with engine.connect() as connection:
            yield connection


class TestSyncTransactions:
    def test_rollback_discards_the_job(
        self, bind: Session | Connection, observer: psycopg.Connection[Any]
    ) -> None:
        job = add_job(bind, "welcome", {"user": 1})
        assert bind.execute(sa.text(COUNT_JOBS)).scalar() == 1
        assert count(observer) == 0
        assert backends(observer) == 2
        bind.rollback()
        assert count(observer) == 0
        assert (
            bind.execute(
                sa.text("select count(*) from graphile_worker._private_jobs where id = :id"),
                {"id": job.id},
            ).scalar()
            == 0
        )

    def test_commit_keeps_the_jobs(
        self, bind: Session | Connection, observer: psycopg.Connection[Any]
    ) -> None:
        job = add_job(bind, Notify(user_id=7), spec=JobSpec(queue_name="n", priority=3))
        batch = add_jobs(bind, [("a", [1]), (Notify(user_id=8), JobSpec(job_key="n8"))])
        assert count(observer) == 0
        bind.commit()
        assert count(observer) == 3
        assert (job.task_identifier, job.payload, job.queue_name) == ("notify", {"user_id": 7}, "n")
        assert [(j.task_identifier, j.payload, j.key) for j in batch] == [
            ("a", [1], None),
            ("notify", {"user_id": 8}, "n8"),
        ]

    def test_payloads_come_back_decoded(self, bind: Session | Connection) -> None:
        for payload in ("text", 5, [1, "2"], {"k": None}):
            assert add_job(bind, "t", payload).payload == payload

    def test_using_gives_sync_utils_in_the_transaction(
        self, bind: Session | Connection, observer: psycopg.Connection[Any]
    ) -> None:
        utils = SyncWorkerUtils(observer, schema="graphile_worker").using(bind)
        assert isinstance(utils, SyncWorkerUtils)
        job = utils.add_job("t", {}, spec=JobSpec(job_key="k"))
        assert utils.remove_job("k") == job
        assert isinstance(using(bind), SyncWorkerUtils)

    def test_migrate_inside_the_transaction(
        self, bind: Session | Connection, observer: psycopg.Connection[Any]
    ) -> None:
        schemas = "select count(*) from pg_namespace where nspname = 'in_tx'"
        report = using(bind, schema="in_tx").migrate()
        assert report.current_version == 20
        add_job(bind, "t", {}, schema="in_tx")
        assert count(observer, schemas) == 0
        bind.rollback()
        assert count(observer, schemas) == 0
        using(bind, schema="in_tx").migrate()
        bind.commit()
        assert count(observer, schemas) == 1


class TestSyncExecutor:
    def test_errors_are_translated(self, engine: Engine) -> None:
        with engine.connect() as connection:
            executor = SQLAlchemySyncExecutor(connection)
            with pytest.raises(QueryError) as caught:
                executor.execute("select 1/0")
            assert caught.value.sqlstate == "22012"
            connection.rollback()
            executor.execute("create temp table t (x int primary key)")
            executor.execute("insert into t values (:x)", {"x": 1})
            with pytest.raises(UniqueViolationError):
                executor.execute("insert into t values (:x)", {"x": 1})

    def test_lost_connection(self, engine: Engine, observer: psycopg.Connection[Any]) -> None:
        with engine.connect() as connection:
            executor = SQLAlchemySyncExecutor(connection)
            pid = executor.fetchval("select pg_backend_pid()")
            observer.execute("select pg_terminate_backend(%s)", (pid,))
            with pytest.raises(ConnectionLostError):
                executor.fetchval("select 1")

    def test_script_with_several_statements(self, engine: Engine) -> None:
        with Session(engine) as session:
            executor = SQLAlchemySyncExecutor(session)
            executor.execute_script(
                "create temp table t (x text); insert into t values ('100%'); "
                "insert into t values (':not_a_parameter')"
            )
            assert executor.fetchval("select count(*) from t") == 2
            assert executor.fetch("select x from t order by x") == [
                {"x": "100%"},
                {"x": ":not_a_parameter"},
            ]
            with pytest.raises(QueryError) as caught:
                executor.execute_script("select 1; select * from missing_table")
            assert caught.value.sqlstate == "42P01"


# ----------------------------------------------------------------------------------- async


def asyncio_extension() -> ModuleType:
    """SQLAlchemy's asyncio extension, which needs greenlet (``SQLAlchemy[asyncio]``).

    Without greenlet the async tests skip, except under CI, where that would hide them.
    """
    if importlib.util.find_spec("greenlet") is None:
        reason = "SQLAlchemy's asyncio extension needs greenlet: pip install 'SQLAlchemy[asyncio]'"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
        pytest.skip(reason)
    import sqlalchemy.ext.asyncio

    return sqlalchemy.ext.asyncio


def run_async(
    database_url: str, dialect: str, test: Callable[[AsyncEngine], Awaitable[None]]
) -> None:
    extension = asyncio_extension()

    async def main() -> None:
        created: AsyncEngine = extension.create_async_engine(
            sqlalchemy_url(database_url, dialect), pool_size=1, max_overflow=0, pool_timeout=1
        )
        try:
            await test(created)
        finally:
            await created.dispose()

    anyio.run(main, backend="asyncio")


ASYNC_DIALECTS = pytest.mark.parametrize("dialect", ["asyncpg", "psycopg"])


@ASYNC_DIALECTS
@pytest.mark.parametrize("kind", ["session", "connection"])
def test_async_rollback_and_commit(
    database_url: str, observer: psycopg.Connection[Any], dialect: str, kind: str
) -> None:
    async def check(bind: AsyncSession | AsyncConnection) -> None:
        job = await add_job(bind, "welcome", {"user": 1})
        assert job.task_identifier == "welcome"
        assert (await bind.execute(sa.text(COUNT_JOBS))).scalar() == 1
        assert count(observer) == 0
        assert backends(observer) == 2
        await bind.rollback()
        assert count(observer) == 0
        jobs = await add_jobs(bind, [Notify(user_id=1), ("plain", "text payload")])
        assert [(j.task_identifier, j.payload) for j in jobs] == [
            ("notify", {"user_id": 1}),
            ("plain", "text payload"),
        ]
        await bind.commit()
        assert count(observer) == 2

    async def test(engine: AsyncEngine) -> None:
        if kind == "session":
            async with asyncio_extension().AsyncSession(engine) as session:
                await check(session)
        else:
            async with engine.connect() as connection:
                await check(connection)

    run_async(database_url, dialect, test)


@ASYNC_DIALECTS
def test_async_using_and_migrate_in_transaction(
    database_url: str, observer: psycopg.Connection[Any], dialect: str
) -> None:
    schemas = "select count(*) from pg_namespace where nspname = 'async_tx'"

    async def test(engine: AsyncEngine) -> None:
        async with asyncio_extension().AsyncSession(engine) as session:
            utils = SyncWorkerUtils(observer).using(session)
            assert isinstance(utils, WorkerUtils)
            custom = using(session, schema="async_tx")
            assert (await custom.migrate()).current_version == 20
            assert (await custom.add_job("t", [1, 2])).payload == [1, 2]
            assert count(observer, schemas) == 0
            await session.rollback()
            assert count(observer, schemas) == 0
            for payload in ("text", 3.5, None):
                stored = (await utils.add_job("t", payload)).payload
                assert stored == ({} if payload is None else payload)
            await session.rollback()

    run_async(database_url, dialect, test)


@ASYNC_DIALECTS
def test_async_executor_errors_and_scripts(
    database_url: str, observer: psycopg.Connection[Any], dialect: str
) -> None:
    async def test(engine: AsyncEngine) -> None:
        async with engine.connect() as connection:
            executor = SQLAlchemyAsyncExecutor(connection)
            with pytest.raises(QueryError) as caught:
                await executor.fetchval("select 1/0")
            assert caught.value.sqlstate == "22012"
            await connection.rollback()
            await executor.execute_script(
                "create temp table t (x text primary key); insert into t values ('50%')"
            )
            assert await executor.fetchrow("select x from t") == {"x": "50%"}
            with pytest.raises(UniqueViolationError):
                await executor.execute("insert into t values (:x)", {"x": "50%"})
            await connection.rollback()
            with pytest.raises(QueryError) as caught:
                await executor.execute_script("select 1; select * from missing_table")
            assert caught.value.sqlstate == "42P01"
            await connection.rollback()
            pid = await executor.fetchval("select pg_backend_pid()")
            observer.execute("select pg_terminate_backend(%s)", (pid,))
            with pytest.raises(ConnectionLostError):
                await executor.fetchval("select 1")

    run_async(database_url, dialect, test)
