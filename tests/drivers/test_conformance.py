"""Every driver behaves the same: statements, types, transactions, LISTEN, errors, cancellation.

Each test runs once per valid (anyio backend, driver) pair through the ``driver`` fixture, so
a difference between asyncpg, psycopg and threaded psycopg (on asyncio and on trio) shows up
as a failure of exactly one parametrisation.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import anyio
import pytest

from graphile_worker.drivers import AsyncExecutor, DatabaseDriver, Notification, create_driver
from graphile_worker.errors import (
    ConfigurationError,
    ConnectionLostError,
    DatabaseError,
    GraphileWorkerError,
    QueryError,
    UniqueViolationError,
)
from graphile_worker.sql._statement import fetch_values

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from graphile_worker.embedded import Cluster

pytestmark = pytest.mark.anyio

RECONNECTED = Notification("", "")
UNREACHABLE_URL = "postgresql://postgres@127.0.0.1:1/postgres"  # nothing listens on port 1


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


async def _create_items_table(executor: AsyncExecutor) -> None:
    await executor.execute_script(
        """
        create table items (id int primary key, name text, doc jsonb);
        create table counters (name text primary key, value int not null default 0);
        """
    )


async def _next(notifications: AsyncIterator[Notification], seconds: float = 10) -> Notification:
    with anyio.fail_after(seconds):
        return await notifications.__anext__()


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Wait until ``check()`` is true; fail after ``seconds``."""
    with anyio.fail_after(seconds):
        while True:
            if await check():
                return
            await anyio.sleep(0.05)


async def _listener_pid(driver: DatabaseDriver) -> int:
    """Backend pid of the driver's LISTEN connection (its last statement was LISTEN)."""
    pid = await driver.fetchval(
        """
        select pid from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid()
          and query ilike 'listen %'
        """
    )
    assert isinstance(pid, int), "no LISTEN connection found in pg_stat_activity"
    return pid


class TestStatements:
    async def test_is_a_database_driver(self, driver: DatabaseDriver) -> None:
        assert isinstance(driver, DatabaseDriver)

    async def test_fetchval_binds_named_parameters(self, driver: DatabaseDriver) -> None:
        value = await driver.fetchval(
            "select CAST(:a AS int) + CAST(:b AS int) * CAST(:a AS int)", {"a": 2, "b": 5}
        )
        assert value == 12

    async def test_extra_parameters_are_ignored(self, driver: DatabaseDriver) -> None:
        assert await driver.fetchval("select CAST(:a AS text)", {"a": "x", "unused": 1}) == "x"

    async def test_fetch_returns_dict_rows_in_order(self, driver: DatabaseDriver) -> None:
        rows = await driver.fetch(
            "select n, 'row ' || n as label from generate_series(1, :count) as n order by n",
            {"count": 3},
        )
        assert rows == [
            {"n": 1, "label": "row 1"},
            {"n": 2, "label": "row 2"},
            {"n": 3, "label": "row 3"},
        ]
        assert list(rows[0]) == ["n", "label"]

    async def test_fetch_values_gives_positional_rows_in_column_order(
        self, driver: DatabaseDriver
    ) -> None:
        """The worker's claim reads rows by position; a transaction executor (which may lack
        the drivers' own fast path) must give the same values through ``fetch``."""
        sql = (
            "select n, 'row ' || n as label, CAST('{\"k\": 1}' AS jsonb) as doc, "
            "CAST(null AS text) as nothing from generate_series(1, :count) as n order by n"
        )
        columns = ("n", "label", "doc", "nothing")
        expected = [(n, f"row {n}", {"k": 1}, None) for n in (1, 2, 3)]
        rows = await fetch_values(driver, sql, {"count": 3}, columns)
        assert [tuple(row) for row in rows] == expected
        assert [row[1] for row in rows] == ["row 1", "row 2", "row 3"]
        async with driver.transaction() as tx:
            rows = await fetch_values(tx, sql, {"count": 3}, columns)
            assert [tuple(row) for row in rows] == expected
            single = await fetch_values(tx, "select 5 as five", {}, ("five",))
            assert [tuple(row) for row in single] == [(5,)]
        assert await fetch_values(driver, sql, {"count": 0}, columns) == []

    async def test_fetchrow_and_fetchval_without_rows(self, driver: DatabaseDriver) -> None:
        assert await driver.fetchrow("select 1 as one where false") is None
        assert await driver.fetchval("select 1 where false") is None
        assert await driver.fetch("select 1 where false") == []

    async def test_fetchrow_returns_the_first_row(self, driver: DatabaseDriver) -> None:
        row = await driver.fetchrow("select n from generate_series(7, 9) as n order by n")
        assert row == {"n": 7}

    async def test_nulls_in_both_directions(self, driver: DatabaseDriver) -> None:
        row = await driver.fetchrow(
            "select CAST(:missing AS text) is null as was_null, CAST(null AS int) as nothing",
            {"missing": None},
        )
        assert row == {"was_null": True, "nothing": None}

    async def test_percent_signs_survive_with_and_without_parameters(
        self, driver: DatabaseDriver
    ) -> None:
        assert await driver.fetchval("select '100%'") == "100%"
        assert await driver.fetchval("select '100%' || CAST(:x AS text)", {"x": "!"}) == "100%!"

    async def test_double_colon_casts_are_left_alone(self, driver: DatabaseDriver) -> None:
        assert await driver.fetchval("select '42'::int + CAST(:n AS int)", {"n": 1}) == 43

    async def test_missing_parameter_is_a_configuration_error(self, driver: DatabaseDriver) -> None:
        with pytest.raises(ConfigurationError, match="'b'"):
            await driver.fetchval("select CAST(:a AS int) + CAST(:b AS int)", {"a": 1})

    async def test_execute_returns_rows_affected(self, driver: DatabaseDriver) -> None:
        assert await driver.execute("create table numbers (n int)") == -1
        inserted = await driver.execute(
            "insert into numbers select generate_series(1, :count)", {"count": 5}
        )
        assert inserted == 5
        assert await driver.execute("update numbers set n = n + 1 where n > :n", {"n": 2}) == 3
        assert await driver.execute("delete from numbers where n > 100") == 0

    async def test_execute_script_runs_every_statement(self, driver: DatabaseDriver) -> None:
        await driver.execute_script(
            """
            create table notes (body text);
            insert into notes values ('50% off');
            insert into notes values ('second');
            -- a comment, and a statement with a dollar-quoted body
            do $$ begin insert into notes values ('third'); end $$;
            """
        )
        bodies = await driver.fetch("select body from notes order by body")
        assert [row["body"] for row in bodies] == ["50% off", "second", "third"]


class TestTypes:
    @pytest.mark.parametrize("sql_type", ["json", "jsonb"])
    async def test_json_round_trip(self, driver: DatabaseDriver, sql_type: str) -> None:
        document = {"to": "a@example.com", "tags": ["x", "y"], "n": 1.5, "none": None, "ok": True}
        value = await driver.fetchval(
            f"select CAST(:doc AS {sql_type})",
            {"doc": json.dumps(document)},
        )
        assert value == document

    async def test_json_scalars_and_arrays(self, driver: DatabaseDriver) -> None:
        row = await driver.fetchrow(
            "select CAST(:s AS jsonb) as s, CAST(:a AS json) as a, CAST(:n AS jsonb) as n",
            {"s": json.dumps("hello"), "a": json.dumps([1, [2]]), "n": "null"},
        )
        assert row == {"s": "hello", "a": [1, [2]], "n": None}

    async def test_json_column_round_trip(self, driver: DatabaseDriver) -> None:
        await _create_items_table(driver)
        document = {"nested": {"list": [1, 2, 3]}, "text": "ünïcode"}
        await driver.execute(
            "insert into items (id, name, doc) values (:id, :name, CAST(:doc AS jsonb))",
            {"id": 1, "name": "first", "doc": json.dumps(document)},
        )
        row = await driver.fetchrow("select id, name, doc from items")
        assert row == {"id": 1, "name": "first", "doc": document}

    async def test_json_parameters_must_be_serialised(self, driver: DatabaseDriver) -> None:
        with pytest.raises(QueryError):
            await driver.fetchval("select CAST(:doc AS jsonb)", {"doc": {"not": "serialised"}})

    async def test_timestamptz_is_an_aware_datetime(self, driver: DatabaseDriver) -> None:
        moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
        value = await driver.fetchval("select CAST(:at AS timestamptz)", {"at": moment})
        assert isinstance(value, datetime)
        assert value.tzinfo is not None
        assert value == moment

    async def test_now_is_aware(self, driver: DatabaseDriver) -> None:
        value = await driver.fetchval("select now()")
        assert value.utcoffset() is not None
        assert abs(value - datetime.now(timezone.utc)) < timedelta(minutes=5)

    async def test_arrays_in_both_directions(self, driver: DatabaseDriver) -> None:
        row = await driver.fetchrow(
            """
            select CAST(:ids AS bigint[]) as ids, CAST(:names AS text[]) as names,
                   array_length(CAST(:ids AS bigint[]), 1) as length,
                   CAST('{}' AS int[]) as empty
            """,
            {"ids": [1, 2, 2**40], "names": ["a", "b c", "ü"]},
        )
        assert row == {
            "ids": [1, 2, 2**40],
            "names": ["a", "b c", "ü"],
            "length": 3,
            "empty": [],
        }

    async def test_any_with_an_array_parameter(self, driver: DatabaseDriver) -> None:
        rows = await driver.fetch(
            "select n from generate_series(1, 10) n where n = any(CAST(:wanted AS int[])) "
            "order by n",
            {"wanted": [3, 5, 11]},
        )
        assert [row["n"] for row in rows] == [3, 5]

    async def test_scalars(self, driver: DatabaseDriver) -> None:
        row = await driver.fetchrow(
            "select CAST(:big AS bigint) as big, CAST(:flag AS boolean) as flag, "
            "CAST(:text AS text) as text, CAST(:real AS float8) as real",
            {"big": 2**62, "flag": False, "text": "it's", "real": 0.25},
        )
        assert row == {"big": 2**62, "flag": False, "text": "it's", "real": 0.25}


class TestTransactions:
    async def test_commit_makes_writes_visible(self, driver: DatabaseDriver) -> None:
        await _create_items_table(driver)
        async with driver.transaction() as tx:
            await tx.execute("insert into items (id, name) values (1, 'a')")
            assert await tx.fetchval("select count(*) from items") == 1
            # Not committed yet: another pooled connection cannot see it.
            assert await driver.fetchval("select count(*) from items") == 0
        assert await driver.fetchval("select count(*) from items") == 1

    async def test_exception_rolls_back_and_propagates(self, driver: DatabaseDriver) -> None:
        await _create_items_table(driver)
        with pytest.raises(Boom):
            async with driver.transaction() as tx:
                await tx.execute("insert into items (id, name) values (1, 'a')")
                raise Boom
        assert await driver.fetchval("select count(*) from items") == 0

    async def test_commit_after_a_caught_failure_raises(self, driver: DatabaseDriver) -> None:
        await _create_items_table(driver)
        with pytest.raises(QueryError) as caught:
            async with driver.transaction() as tx:
                await tx.execute("insert into items (id, name) values (1, 'a')")
                with pytest.raises(QueryError):
                    await tx.execute("selec 1")
        assert caught.value.sqlstate == "25P02"
        assert await driver.fetchval("select count(*) from items") == 0

    async def test_failed_statement_rolls_back_the_whole_transaction(
        self, driver: DatabaseDriver
    ) -> None:
        await _create_items_table(driver)
        with pytest.raises(UniqueViolationError) as caught:
            async with driver.transaction() as tx:
                await tx.execute("insert into items (id, name) values (1, 'a')")
                await tx.execute("insert into items (id, name) values (1, 'again')")
        assert caught.value.sqlstate == "23505"
        assert await driver.fetchval("select count(*) from items") == 0

    async def test_executor_supports_every_call(self, driver: DatabaseDriver) -> None:
        await _create_items_table(driver)
        async with driver.transaction() as tx:
            assert isinstance(tx, AsyncExecutor)
            await tx.execute_script(
                "insert into counters (name) values ('a'); insert into counters (name) values ('b')"
            )
            updated = await tx.execute(
                "update counters set value = value + :by where name = :name", {"by": 2, "name": "a"}
            )
            assert updated == 1
            assert await tx.fetchrow("select value from counters where name = 'a'") == {"value": 2}
            rows = await tx.fetch("select name from counters order by name")
            assert [row["name"] for row in rows] == ["a", "b"]

    async def test_transaction_is_one_backend(self, driver: DatabaseDriver) -> None:
        async with driver.transaction() as tx:
            first = await tx.fetchval("select pg_backend_pid()")
            await tx.execute("select pg_advisory_xact_lock(42)")
            assert await tx.fetchval("select pg_backend_pid()") == first
            assert await tx.fetchval("select txid_current_if_assigned() is null") is True
            assert await tx.fetchval("select now() = statement_timestamp()") is False

    async def test_executor_cannot_be_used_after_the_block(self, driver: DatabaseDriver) -> None:
        async with driver.transaction() as tx:
            await tx.fetchval("select 1")
        # Its connection is back in the pool (maybe lent to someone else): refuse, loudly.
        with pytest.raises((RuntimeError, ConnectionLostError)):
            await tx.fetchval("select 1")

    async def test_connection_is_reused_after_transactions(self, driver: DatabaseDriver) -> None:
        for _ in range(25):  # more than max_size: a leaked connection would hang here
            with anyio.fail_after(10):
                async with driver.transaction() as tx:
                    await tx.fetchval("select 1")
            with pytest.raises(Boom):
                async with driver.transaction():
                    raise Boom


class TestListen:
    async def test_notification_with_colon_channel(self, driver: DatabaseDriver) -> None:
        stream = driver.listen("jobs:insert")
        assert stream is not None
        async with stream as notifications:
            await driver.execute("select pg_notify('jobs:insert', :payload)", {"payload": "{}"})
            assert await _next(notifications) == Notification("jobs:insert", "{}")

    async def test_several_channels_and_order(self, driver: DatabaseDriver) -> None:
        stream = driver.listen("jobs:insert", "other")
        assert stream is not None
        async with stream as notifications:
            await driver.execute_script(
                "select pg_notify('other', '1'); select pg_notify('jobs:insert', '2');"
                "select pg_notify('unheard', 'x'); select pg_notify('other', '3');"
            )
            received = [await _next(notifications) for _ in range(3)]
        assert received == [
            Notification("other", "1"),
            Notification("jobs:insert", "2"),
            Notification("other", "3"),
        ]

    async def test_notify_inside_transaction_arrives_on_commit(
        self, driver: DatabaseDriver
    ) -> None:
        stream = driver.listen("jobs:insert")
        assert stream is not None
        async with stream as notifications:
            with pytest.raises(Boom):
                async with driver.transaction() as tx:
                    await tx.execute("select pg_notify('jobs:insert', 'rolled back')")
                    raise Boom
            async with driver.transaction() as tx:
                await tx.execute("select pg_notify('jobs:insert', 'committed')")
            assert await _next(notifications) == Notification("jobs:insert", "committed")

    async def test_reconnects_after_backend_is_terminated(self, driver: DatabaseDriver) -> None:
        stream = driver.listen("jobs:insert")
        assert stream is not None
        async with stream as notifications:
            pid = await _listener_pid(driver)
            assert await driver.fetchval("select pg_terminate_backend(:pid)", {"pid": pid})
            assert await _next(notifications) == RECONNECTED
            assert await _listener_pid(driver) != pid
            await driver.execute("select pg_notify('jobs:insert', 'after reconnect')")
            assert await _next(notifications) == Notification("jobs:insert", "after reconnect")

    async def test_keeps_retrying_while_the_server_refuses(
        self, driver: DatabaseDriver, driver_name: str, pg_cluster: Cluster
    ) -> None:
        stream = driver.listen("jobs:insert")
        assert stream is not None
        database = await driver.fetchval("select current_database()")
        allow = f'alter database "{database}" with allow_connections '
        async with (
            stream as notifications,
            create_driver(pg_cluster.admin_url, driver=driver_name, min_size=1) as admin,
        ):
            pid = await _listener_pid(driver)
            await admin.execute(allow + "false")
            try:
                await driver.execute("select pg_terminate_backend(:pid)", {"pid": pid})
                # Several attempts fail (and back off) before connections are allowed again.
                with anyio.move_on_after(0.7):
                    await notifications.__anext__()
                    pytest.fail("reconnected although the database refused connections")
            finally:
                await admin.execute(allow + "true")
            assert await _next(notifications, seconds=15) == RECONNECTED
            await driver.execute("select pg_notify('jobs:insert', 'back')")
            assert await _next(notifications) == Notification("jobs:insert", "back")

    async def test_breaking_out_closes_the_listen_connection(self, driver: DatabaseDriver) -> None:
        stream = driver.listen("jobs:insert")
        assert stream is not None
        async with stream as notifications:
            await _listener_pid(driver)
        del notifications

        async def closed() -> bool:
            count = await driver.fetchval(
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and query ilike 'listen %' and pid <> pg_backend_pid()"
            )
            return bool(count == 0)

        await _eventually(closed)

    async def test_channel_names_are_checked_before_connecting(
        self, driver: DatabaseDriver
    ) -> None:
        with pytest.raises(ConfigurationError):
            driver.listen()
        with pytest.raises(ConfigurationError):
            driver.listen("")


class TestErrors:
    async def test_syntax_error(self, driver: DatabaseDriver) -> None:
        with pytest.raises(QueryError) as caught:
            await driver.execute("selec 1")
        assert caught.value.sqlstate == "42601"
        assert not isinstance(caught.value, UniqueViolationError)
        assert caught.value.__cause__ is not None

    async def test_errors_are_ours_in_every_call(self, driver: DatabaseDriver) -> None:
        for call in (driver.execute, driver.fetch, driver.fetchrow, driver.fetchval):
            with pytest.raises(QueryError) as caught:
                await call("select * from no_such_table", None)
            assert caught.value.sqlstate == "42P01"
        with pytest.raises(QueryError) as caught:
            await fetch_values(driver, "select * from no_such_table", {}, ("a", "b"))
        assert caught.value.sqlstate == "42P01"
        with pytest.raises(QueryError):
            await driver.execute_script("select 1; selec 2")

    async def test_unique_violation(self, driver: DatabaseDriver) -> None:
        await _create_items_table(driver)
        await driver.execute("insert into items (id) values (1)")
        with pytest.raises(UniqueViolationError) as caught:
            await driver.execute("insert into items (id) values (:id)", {"id": 1})
        assert caught.value.sqlstate == "23505"
        assert isinstance(caught.value, QueryError)

    async def test_raised_exception_keeps_sqlstate(self, driver: DatabaseDriver) -> None:
        with pytest.raises(QueryError) as caught:
            await driver.execute_script(
                "do $$ begin raise exception 'custom' using errcode = 'P0002'; end $$"
            )
        assert caught.value.sqlstate == "P0002"
        assert "custom" in str(caught.value)

    async def test_query_canceled_is_not_a_lost_connection(self, driver: DatabaseDriver) -> None:
        with pytest.raises(QueryError) as caught:
            async with driver.transaction() as tx:
                await tx.execute("set local statement_timeout = 50")
                await tx.execute("select pg_sleep(5)")
        assert caught.value.sqlstate == "57014"
        assert not isinstance(caught.value, ConnectionLostError)
        assert await driver.fetchval("select 1") == 1

    async def test_terminated_connection(self, driver: DatabaseDriver) -> None:
        with pytest.raises(ConnectionLostError):
            async with driver.transaction() as tx:
                pid = await tx.fetchval("select pg_backend_pid()")
                await driver.execute("select pg_terminate_backend(:pid)", {"pid": pid})
                with anyio.fail_after(10):
                    while True:  # the server needs a moment to end the backend
                        await tx.fetchval("select 1")
                        await anyio.sleep(0.02)
        # The pool replaces the dead connection.
        with anyio.fail_after(10):
            assert await driver.fetchval("select 1") == 1

    async def test_no_driver_exception_escapes(self, driver: DatabaseDriver) -> None:
        with pytest.raises(GraphileWorkerError) as caught:
            await driver.fetchval("select 1 / 0")
        assert caught.value.sqlstate == "22012"  # type: ignore[attr-defined]
        assert type(caught.value).__module__ == "graphile_worker.errors"


async def test_unreachable_server(driver_name: str) -> None:
    with anyio.fail_after(30), pytest.raises(ConnectionLostError):
        await create_driver(UNREACHABLE_URL, driver=driver_name)


class TestCancellation:
    async def _no_sleeping_backends(self, driver: DatabaseDriver) -> bool:
        count = await driver.fetchval(
            "select count(*) from pg_stat_activity where datname = current_database() "
            "and state = 'active' and query like 'select pg_sleep(30)%'"
        )
        return bool(count == 0)

    async def test_cancel_long_query(self, driver: DatabaseDriver) -> None:
        started = anyio.current_time()
        with anyio.move_on_after(0.3) as scope:
            await driver.fetchval("select pg_sleep(30)")
        assert scope.cancelled_caught
        assert anyio.current_time() - started < 15
        with anyio.fail_after(10):
            assert await driver.fetchval("select 1") == 1
        # The server stopped the query too, rather than running it to its end.
        await _eventually(lambda: self._no_sleeping_backends(driver))

    async def test_cancel_inside_transaction_rolls_back(self, driver: DatabaseDriver) -> None:
        await _create_items_table(driver)
        with anyio.move_on_after(0.3) as scope:
            async with driver.transaction() as tx:
                await tx.execute("insert into items (id) values (1)")
                await tx.fetchval("select pg_sleep(30)")
        assert scope.cancelled_caught
        with anyio.fail_after(10):
            assert await driver.fetchval("select count(*) from items") == 0

    async def test_cancelled_calls_do_not_leak_connections(
        self, database_url: str, driver_name: str
    ) -> None:
        async with create_driver(database_url, driver=driver_name, max_size=1) as small:
            for _ in range(3):
                with anyio.move_on_after(0.2):
                    await small.fetchval("select pg_sleep(30)")
                with anyio.move_on_after(0.2):
                    async with small.transaction() as tx:
                        await tx.fetchval("select pg_sleep(30)")
            with anyio.fail_after(15):  # with a leaked connection this would wait forever
                assert await small.fetchval("select 2") == 2
                async with small.transaction() as tx:
                    assert await tx.fetchval("select 3") == 3

    async def test_cancel_while_listening(self, driver: DatabaseDriver) -> None:
        stream = driver.listen("jobs:insert")
        assert stream is not None
        with anyio.move_on_after(0.2) as scope:
            async with stream as notifications:
                await notifications.__anext__()
        assert scope.cancelled_caught
        assert await driver.fetchval("select 1") == 1


class TestClose:
    async def test_context_manager_closes(self, database_url: str, driver_name: str) -> None:
        async with create_driver(database_url, driver=driver_name) as opened:
            assert await opened.fetchval("select 1") == 1
        with pytest.raises(DatabaseError):
            await opened.fetchval("select 1")

    async def test_aclose_closes_every_connection(
        self, database_url: str, driver_name: str, driver: DatabaseDriver
    ) -> None:
        url = database_url + "?application_name=gw_closing_test"
        opened = await create_driver(url, driver=driver_name, min_size=3)
        async with opened.transaction() as tx:
            await tx.fetchval("select 1")
        await opened.fetch("select 1")
        assert await self._open_connections(driver) >= 3
        await opened.aclose()
        await _eventually(lambda: self._all_closed(driver))

    async def _all_closed(self, driver: DatabaseDriver) -> bool:
        return await self._open_connections(driver) == 0

    async def _open_connections(self, driver: DatabaseDriver) -> int:
        count: int = await driver.fetchval(
            "select count(*) from pg_stat_activity where application_name = 'gw_closing_test'"
        )
        return count
