"""A worker that shares the application's SQLAlchemy engine: ``WorkerOptions(driver=engine)``.

Each (runtime, driver) pair stands for an engine, as in ``tests/drivers/test_engine_driver.py``:
an ``AsyncEngine`` over asyncpg and over psycopg on asyncio, and a sync ``Engine`` over psycopg
(pooled, and with ``NullPool``) on asyncio and trio. Every worker here polls only every 10 s,
so a job that runs within a few seconds was found through ``LISTEN`` on a connection borrowed
from the engine, or at start-up, never by a poll.
"""

from __future__ import annotations

import operator
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from graphile_worker import sqlalchemy as gw_sqlalchemy
from graphile_worker.drivers import SQLAlchemyEngineDriver
from graphile_worker.errors import ConnectionLostError, DriverUnavailableError
from graphile_worker.task import task
from graphile_worker.utils import WorkerUtils
from graphile_worker.worker import Worker, WorkerOptions

from ..drivers.test_dead_connections import kill_every_backend
from ..drivers.test_engine_driver import (  # noqa: F401 - engine_fixture is a fixture
    app_query,
    borrowed,
    dispose,
    engine_fixture,
    make_engine,
)
from .conftest import eventually, job_rows, options

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine

pytestmark = pytest.mark.anyio

PROMPTLY = 5.0
"""Seconds within which a job must run: far below the 10-second poll interval."""


def engine_options(engine: Engine | AsyncEngine, tasks: list[object], **overrides: Any) -> Any:
    """The worker tests' options, with the engine itself as ``driver``."""
    application_engine: Any = engine  # options() is typed for names and drivers
    return options(application_engine, tasks, **overrides)


def add_job(connection: psycopg.Connection[Any], identifier: str, payload: str) -> None:
    """Queue a job over the test's own connection (it sends ``NOTIFY`` as any add_job does)."""
    connection.execute("select graphile_worker.add_job(%s, %s::json)", [identifier, payload])


async def test_jobs_queued_before_and_after_start_run_promptly(
    engine: Engine | AsyncEngine, sync_connection: psycopg.Connection[Any]
) -> None:
    seen: list[int] = []

    @task("record")
    async def record(payload: dict[str, int]) -> None:
        seen.append(payload["n"])

    add_job(sync_connection, "record", '{"n": 1}')
    worker_options = engine_options(engine, [record])
    assert isinstance(worker_options.driver, SQLAlchemyEngineDriver)
    async with Worker(worker_options):
        await eventually(lambda: seen == [1], within=PROMPTLY)
        # The application queues through the same engine; NOTIFY wakes the worker.
        await WorkerUtils(engine).add_job("record", {"n": 2})
        await eventually(lambda: seen == [1, 2], within=PROMPTLY)
        add_job(sync_connection, "record", '{"n": 3}')
        await eventually(lambda: seen == [1, 2, 3], within=PROMPTLY)
    assert job_rows(sync_connection) == []


async def test_jobs_queued_in_the_applications_transaction_run_and_rollbacks_add_none(
    engine: Engine | AsyncEngine, sync_connection: psycopg.Connection[Any]
) -> None:
    seen: list[str] = []

    @task("deliver")
    async def deliver(payload: dict[str, str]) -> None:
        seen.append(payload["order"])

    async def queue(order: str, *, commit: bool) -> None:
        if isinstance(engine, AsyncEngine):
            async with AsyncSession(engine) as session, session.begin():
                await gw_sqlalchemy.add_job(session, "deliver", {"order": order})
                if not commit:
                    await session.rollback()
            return

        def in_session() -> None:
            with Session(engine) as session, session.begin():
                gw_sqlalchemy.add_job(session, "deliver", {"order": order})
                if not commit:
                    session.rollback()

        await anyio.to_thread.run_sync(in_session)

    async with Worker(engine_options(engine, [deliver])):
        await queue("rolled back", commit=False)
        await queue("committed", commit=True)
        await eventually(lambda: seen == ["committed"], within=PROMPTLY)
        await queue("also rolled back", commit=False)
        await queue("committed too", commit=True)
        await eventually(lambda: seen == ["committed", "committed too"], within=PROMPTLY)
    assert job_rows(sync_connection) == []


async def test_a_busy_worker_borrows_at_most_max_pool_size_connections_plus_listen(
    engine: Engine | AsyncEngine, sync_connection: psycopg.Connection[Any]
) -> None:
    """Concurrency 4 over 2 connections: jobs, claims and outcomes queue for them."""
    done: list[int] = []

    @task("slow")
    async def slow(payload: dict[str, int], ctx: Any) -> None:
        async with ctx.transaction() as tx:
            await tx.execute("select pg_sleep(0.05)")
        await ctx.add_job("slow_child", {"n": payload["n"]})
        done.append(payload["n"])

    @task("slow_child")
    async def slow_child(payload: dict[str, int]) -> None:
        pass

    for n in range(8):
        add_job(sync_connection, "slow", f'{{"n": {n}}}')
    peak = 0
    finished = anyio.Event()

    async def watch() -> None:
        nonlocal peak
        while not finished.is_set():
            peak = max(peak, borrowed(engine, sync_connection))
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        async with Worker(
            engine_options(engine, [slow, slow_child], concurrency=4, max_pool_size=2)
        ):
            await eventually(lambda: len(done) == 8 and not job_rows(sync_connection), within=15)
        finished.set()
    assert 1 <= peak <= 2 + 1  # max_pool_size, plus the LISTEN connection


async def test_the_engine_stays_usable_after_the_worker_stops(
    engine: Engine | AsyncEngine, sync_connection: psycopg.Connection[Any]
) -> None:
    runs: list[int] = []

    @task("record")
    async def record(payload: dict[str, int]) -> None:
        runs.append(payload["n"])

    worker_options = engine_options(engine, [record])
    for n in (1, 2):  # the same options (and driver) serve a second run
        add_job(sync_connection, "record", f'{{"n": {n}}}')
        async with Worker(worker_options):
            await eventually(lambda n=n: runs[-1:] == [n], within=PROMPTLY)
        assert await app_query(engine) == 42
        pool: Any = engine.pool
        if not isinstance(pool, NullPool):
            assert pool.checkedout() == 0  # the LISTEN connection went too
    assert runs == [1, 2]


async def test_a_worker_on_an_unreachable_engine_fails_at_start(driver_name: str) -> None:
    unreachable = make_engine("postgresql://postgres@127.0.0.1:1/postgres", driver_name)

    @task("never")
    async def never(payload: object) -> None:
        raise AssertionError("no job can run without a database")

    try:
        worker = Worker(engine_options(unreachable, [never]))
        with anyio.fail_after(30), pytest.raises(ConnectionLostError, match="SQLAlchemy engine"):
            await worker.run_once()
    finally:
        await dispose(unreachable)


async def test_a_worker_whose_engine_connections_are_all_killed_carries_on(
    engine: Engine | AsyncEngine, sync_connection: psycopg.Connection[Any]
) -> None:
    """Pooled and LISTEN connections are ended at once; no outcome and no job is lost."""
    runs: dict[int, int] = {}
    release = anyio.Event()

    @task("counted")
    async def counted(payload: dict[str, Any]) -> None:
        runs[payload["n"]] = runs.get(payload["n"], 0) + 1
        if payload.get("hold"):
            await release.wait()

    async with Worker(engine_options(engine, [counted], concurrency=2)):
        for round_ in range(2):
            held, after = 2 * round_, 2 * round_ + 1
            release = anyio.Event()
            add_job(sync_connection, "counted", f'{{"n": {held}, "hold": true}}')
            await eventually(partial(operator.contains, runs, held), within=PROMPTLY)
            await kill_every_backend(sync_connection)
            # The held job ends after every connection died: its outcome must be written,
            # and the next job (announced by NOTIFY, or found by the poll the listener's
            # reconnect triggers) must run, well before the 10-second poll.
            release.set()
            add_job(sync_connection, "counted", f'{{"n": {after}}}')
            await eventually(lambda: job_rows(sync_connection) == [], within=PROMPTLY)
            assert runs == dict.fromkeys(range(after + 1), 1)


def test_an_async_engine_on_trio_fails_at_start_naming_the_sync_engine() -> None:
    @task("never")
    async def never(payload: object) -> None:
        raise AssertionError("unreachable")

    async def run() -> None:
        engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/postgres")
        worker = Worker(
            WorkerOptions(
                tasks=[never], driver=engine, install_signal_handlers=False, migrate=False
            )
        )
        with pytest.raises(DriverUnavailableError, match="sync Engine"):
            await worker.run_once()

    anyio.run(run, backend="trio")
