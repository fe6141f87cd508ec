"""The anyio psycopg driver's own failure modes: dead pooled connections, cancellation,
a full pool, stale prepared statements and a lost LISTEN connection, on asyncio and trio.

The conformance suite runs every shared behaviour on this driver too; these tests aim at what
its hand-written pool and connection handling must get right. Failures are real:
``pg_terminate_backend`` from another connection, ``DEALLOCATE ALL``, DDL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import psycopg
import pytest

from graphile_worker.drivers import Notification, create_driver
from graphile_worker.drivers.psycopg_anyio import PsycopgAnyioDriver
from graphile_worker.errors import ConnectionLostError, QueryError

from .test_conformance import _eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

pytestmark = pytest.mark.anyio

DRIVER = "psycopg-anyio"
APPLICATION = "gw_anyio_driver_test"
RECONNECTED = Notification("", "")
SLEEP = "select pg_sleep(30)"


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


@pytest.fixture
def url(database_url: str) -> str:
    """The test database, with an application name that finds the driver's backends."""
    return f"{database_url}?application_name={APPLICATION}"


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[PsycopgAnyioDriver]:
    """A second driver that watches and terminates the backends of the one under test."""
    async with create_driver(database_url, driver=DRIVER) as opened:
        assert isinstance(opened, PsycopgAnyioDriver)
        yield opened


async def _backends(
    admin: PsycopgAnyioDriver, *, query: str | None = None, state: str = "active"
) -> list[int]:
    """Backend pids of the driver under test; with ``query``, only those in ``state`` whose
    latest statement is ``query``."""
    rows = await admin.fetch(
        "select pid from pg_stat_activity where application_name = :name "
        "and (CAST(:query AS text) is null or (state = :state and query = :query)) "
        "order by pid",
        {"name": APPLICATION, "query": query, "state": state},
    )
    return [row["pid"] for row in rows]


async def _terminate(admin: PsycopgAnyioDriver, pid: int) -> None:
    """End backend ``pid`` and wait until it is gone."""
    assert await admin.fetchval("select pg_terminate_backend(:pid)", {"pid": pid})

    async def gone() -> bool:
        return pid not in await _backends(admin)

    await _eventually(gone)


async def _running(admin: PsycopgAnyioDriver, statement: str, state: str = "active") -> int:
    """Wait until a backend of the driver under test runs (or, idle, last ran) ``statement``;
    its pid."""
    found: list[int] = []

    async def started() -> bool:
        found[:] = await _backends(admin, query=statement, state=state)
        return bool(found)

    await _eventually(started)
    return found[0]


class TestIdleConnectionTerminated:
    async def test_next_call_gets_a_fresh_connection(
        self, url: str, admin: PsycopgAnyioDriver
    ) -> None:
        async with create_driver(url, driver=DRIVER, max_size=1) as driver:
            pid = await driver.fetchval("select pg_backend_pid()")
            await _terminate(admin, pid)
            assert await driver.fetchval("select pg_backend_pid()") != pid
            async with driver.transaction() as tx:
                assert await tx.fetchval("select 1") == 1

    async def test_every_idle_connection_is_replaced(
        self, url: str, admin: PsycopgAnyioDriver
    ) -> None:
        async with create_driver(url, driver=DRIVER, min_size=3, max_size=3) as driver:
            old = await _backends(admin)
            assert len(old) == 3
            for pid in old:
                await _terminate(admin, pid)
            pids: list[int] = []

            async def hold() -> None:
                async with driver.transaction() as tx:
                    pids.append(await tx.fetchval("select pg_backend_pid()"))
                    await tx.fetchval("select pg_sleep(0.2)")

            with anyio.fail_after(10):
                async with anyio.create_task_group() as group:
                    for _ in range(3):
                        group.start_soon(hold)
            assert len(set(pids)) == 3
            assert not set(pids) & set(old)


async def _terminated_while_sleeping(
    admin: PsycopgAnyioDriver, work: Callable[[], Awaitable[object]]
) -> tuple[list[ConnectionLostError], int]:
    """Run ``work`` (which ends in ``select pg_sleep(30)``), terminate its backend while it
    sleeps; return the errors it raised and the pid it had."""
    caught: list[ConnectionLostError] = []

    async def run() -> None:
        try:
            await work()
        except ConnectionLostError as error:
            caught.append(error)

    with anyio.fail_after(15):
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            pid = await _running(admin, SLEEP)
            assert await admin.fetchval("select pg_terminate_backend(:pid)", {"pid": pid})
    return caught, pid


class TestConnectionTerminatedMidQuery:
    async def test_call_raises_connection_lost_and_the_pool_recovers(
        self, url: str, admin: PsycopgAnyioDriver
    ) -> None:
        async with create_driver(url, driver=DRIVER, max_size=1) as driver:
            caught, pid = await _terminated_while_sleeping(admin, lambda: driver.fetchval(SLEEP))
            assert len(caught) == 1
            assert isinstance(caught[0].__cause__, psycopg.Error)
            with anyio.fail_after(10):
                assert await driver.fetchval("select pg_backend_pid()") != pid

    async def test_inside_a_transaction(self, url: str, admin: PsycopgAnyioDriver) -> None:
        async with create_driver(url, driver=DRIVER, max_size=1) as driver:
            await driver.execute("create table items (id int)")

            async def write_then_sleep() -> None:
                async with driver.transaction() as tx:
                    await tx.execute("insert into items values (1)")
                    await tx.fetchval(SLEEP)

            caught, pid = await _terminated_while_sleeping(admin, write_then_sleep)
            assert len(caught) == 1
            with anyio.fail_after(10):
                assert await driver.fetchval("select count(*) from items") == 0
                async with driver.transaction() as tx:
                    assert await tx.fetchval("select pg_backend_pid()") != pid


class TestCancellation:
    async def _nothing_sleeps(self, admin: PsycopgAnyioDriver) -> bool:
        return not await _backends(admin, query=SLEEP)

    async def test_cancelled_call_keeps_its_connection_usable(
        self, url: str, admin: PsycopgAnyioDriver
    ) -> None:
        async with create_driver(url, driver=DRIVER, max_size=1) as driver:
            pid = await driver.fetchval("select pg_backend_pid()")
            with anyio.move_on_after(0.3) as scope:
                await driver.fetchval(SLEEP)
            assert scope.cancelled_caught
            # The server stopped the statement before the call returned, and the one
            # connection went back to the pool, idle: the same backend serves again.
            assert await self._nothing_sleeps(admin)
            with anyio.fail_after(10):
                assert await driver.fetchval("select pg_backend_pid()") == pid
            assert await _backends(admin) == [pid]

    async def test_cancelled_transaction_keeps_its_connection(self, url: str) -> None:
        async with create_driver(url, driver=DRIVER, max_size=1) as driver:
            with anyio.move_on_after(0.3) as scope:
                async with driver.transaction() as tx:
                    pid = await tx.fetchval("select pg_backend_pid()")
                    await tx.fetchval(SLEEP)
            assert scope.cancelled_caught
            with anyio.fail_after(10):
                async with driver.transaction() as tx:
                    assert await tx.fetchval("select pg_backend_pid()") == pid
                    # A new transaction: the cancelled one was rolled back, not carried on.
                    assert await tx.fetchval("select txid_current_if_assigned() is null")

    async def test_repeated_cancellations_leak_nothing(
        self, url: str, admin: PsycopgAnyioDriver
    ) -> None:
        async with create_driver(url, driver=DRIVER, max_size=2) as driver:
            for round_number in range(4):
                with anyio.move_on_after(0.1 + 0.05 * round_number):
                    async with anyio.create_task_group() as group:
                        group.start_soon(driver.fetchval, SLEEP)
                        group.start_soon(driver.execute, SLEEP)
                        async with driver.transaction() as tx:  # waits for a free slot
                            await tx.fetchval(SLEEP)
            with anyio.fail_after(10):
                async with driver.transaction() as first, driver.transaction() as second:
                    assert await first.fetchval("select 1") == 1
                    assert await second.fetchval("select 2") == 2
            assert len(await _backends(admin)) <= 2
            await _eventually(lambda: self._nothing_sleeps(admin))

    async def test_cancelled_while_waiting_for_the_pool(self, url: str) -> None:
        async with create_driver(url, driver=DRIVER, max_size=1) as driver:
            async with driver.transaction() as tx:
                with anyio.move_on_after(0.2) as scope:
                    await driver.fetchval("select 1")  # the only connection is in use
                assert scope.cancelled_caught
                assert await tx.fetchval("select 2") == 2
            with anyio.fail_after(10):
                assert await driver.fetchval("select 3") == 3


class TestPool:
    async def test_a_full_pool_makes_callers_wait_then_serves_them(
        self, url: str, admin: PsycopgAnyioDriver
    ) -> None:
        async with create_driver(url, driver=DRIVER, min_size=1, max_size=2) as driver:
            events: list[str] = []
            release = anyio.Event()
            holding = 0

            async def hold() -> None:
                nonlocal holding
                async with driver.transaction() as tx:
                    await tx.fetchval("select 1")
                    holding += 1
                    await release.wait()
                events.append("released")

            async def wait_for_a_connection() -> None:
                assert await driver.fetchval("select 3") == 3
                events.append("served")

            with anyio.fail_after(15):
                async with anyio.create_task_group() as group:
                    group.start_soon(hold)
                    group.start_soon(hold)
                    await _eventually(lambda: _at_least(lambda: holding, 2))
                    group.start_soon(wait_for_a_connection)
                    await anyio.wait_all_tasks_blocked()
                    assert events == []
                    assert len(await _backends(admin)) == 2  # none opened beyond max_size
                    release.set()
            assert events.count("released") == 2
            assert events.index("served") > events.index("released")

    async def test_connections_are_opened_on_demand_up_to_max_size(
        self, url: str, admin: PsycopgAnyioDriver
    ) -> None:
        async with create_driver(url, driver=DRIVER, min_size=1, max_size=3) as driver:
            assert len(await _backends(admin)) == 1
            async with (
                driver.transaction() as first,
                driver.transaction() as second,
                driver.transaction() as third,
            ):
                pids = {
                    await first.fetchval("select pg_backend_pid()"),
                    await second.fetchval("select pg_backend_pid()"),
                    await third.fetchval("select pg_backend_pid()"),
                }
            assert len(pids) == 3
            assert sorted(pids) == await _backends(admin)  # kept idle for the next callers

    async def test_overlapping_statements_in_one_transaction_are_refused(self, url: str) -> None:
        async with create_driver(url, driver=DRIVER) as driver:
            async with driver.transaction() as tx, anyio.create_task_group() as group:
                group.start_soon(tx.fetchval, "select pg_sleep(0.5)")
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(RuntimeError, match="one after another"):
                    await tx.fetchval("select 1")
            assert await driver.fetchval("select 1") == 1


async def _at_least(value: Callable[[], int], wanted: int) -> bool:
    return value() >= wanted


class TestPreparedStatements:
    async def _prepared(self, driver: PsycopgAnyioDriver) -> int:
        count: int = await driver.fetchval("select count(*) from pg_prepared_statements")
        return count

    async def test_prepared_after_the_threshold(self, url: str) -> None:
        driver = await PsycopgAnyioDriver.open(url, max_size=1, prepare_threshold=2)
        async with driver:
            for n in range(2):
                assert await driver.fetchval("select CAST(:n AS int)", {"n": n}) == n
            assert await self._prepared(driver) == 0
            assert await driver.fetchval("select CAST(:n AS int)", {"n": 2}) == 2
            assert await self._prepared(driver) == 1

    async def test_a_result_type_changed_by_ddl_is_prepared_again(self, url: str) -> None:
        driver = await PsycopgAnyioDriver.open(url, max_size=1, prepare_threshold=0)
        async with driver:
            await driver.execute("create table items (id int)")
            await driver.execute("insert into items values (1)")
            assert await driver.fetch("select * from items") == [{"id": 1}]
            await driver.execute("alter table items add column name text default 'x'")
            assert await driver.fetch("select * from items") == [{"id": 1, "name": "x"}]

    async def test_inside_a_transaction_the_error_stands(self, url: str) -> None:
        driver = await PsycopgAnyioDriver.open(url, max_size=1, prepare_threshold=0)
        async with driver:
            await driver.execute("create table items (id int)")
            assert await driver.fetch("select * from items") == []
            await driver.execute("alter table items add column name text")
            with pytest.raises(QueryError) as caught:
                async with driver.transaction() as tx:
                    await tx.fetch("select * from items")
            assert caught.value.sqlstate == "0A000"
            assert await driver.fetch("select * from items") == []

    async def test_statements_dropped_by_deallocate_are_prepared_again(self, url: str) -> None:
        driver = await PsycopgAnyioDriver.open(url, max_size=1, prepare_threshold=0)
        async with driver:
            assert await driver.fetchval("select CAST(:n AS int) + 1", {"n": 1}) == 2
            assert await self._prepared(driver) >= 1
            await driver.execute_script("deallocate all")
            assert await driver.fetchval("select CAST(:n AS int) + 1", {"n": 2}) == 3


class TestListen:
    async def test_survives_repeated_termination(self, url: str, admin: PsycopgAnyioDriver) -> None:
        async with create_driver(url, driver=DRIVER) as driver:
            stream = driver.listen("jobs:insert")
            assert stream is not None
            async with stream as notifications:
                for round_number in range(3):
                    pid = await _running(admin, 'LISTEN "jobs:insert"', state="idle")
                    await admin.fetchval("select pg_terminate_backend(:pid)", {"pid": pid})
                    with anyio.fail_after(10):
                        assert await notifications.__anext__() == RECONNECTED
                    payload = f"round {round_number}"
                    await admin.execute("select pg_notify('jobs:insert', :p)", {"p": payload})
                    with anyio.fail_after(10):
                        received = await notifications.__anext__()
                    assert received == Notification("jobs:insert", payload)

    async def test_notifications_read_with_a_statement_reply_are_kept(self, url: str) -> None:
        """A notification can reach the listening connection while it runs a statement (its
        idle ping); it must not be lost in the reply. A session's own NOTIFY is delivered
        just before its ReadyForQuery, so it always arrives that way."""
        async with create_driver(url, driver=DRIVER) as driver:
            assert isinstance(driver, PsycopgAnyioDriver)
            listener: Any = await driver._open_listener(["jobs:insert"])
            try:
                await listener._connection.command(b"select pg_notify('jobs:insert', 'mine')")
                assert await listener.receive(0) == [Notification("jobs:insert", "mine")]
                assert await listener.receive(0) == []
                await listener.ping()
            finally:
                await listener.close()
