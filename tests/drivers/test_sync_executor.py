"""PsycopgSyncExecutor: the blocking executor over a caller's own psycopg connection."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg.rows import namedtuple_row

from graphile_worker.drivers import SyncExecutor
from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.errors import (
    ConfigurationError,
    ConnectionLostError,
    QueryError,
    UniqueViolationError,
)


@pytest.fixture
def executor(sync_connection: psycopg.Connection[Any]) -> PsycopgSyncExecutor:
    return PsycopgSyncExecutor(sync_connection)


def test_is_a_sync_executor(executor: PsycopgSyncExecutor) -> None:
    assert isinstance(executor, SyncExecutor)


def test_every_call(executor: PsycopgSyncExecutor) -> None:
    executor.execute_script(
        "create table things (id int primary key, doc jsonb); "
        "insert into things values (1, '{\"a\": 1}'); insert into things values (2, null)"
    )
    inserted = executor.execute(
        "insert into things values (:id, CAST(:doc AS jsonb))",
        {"id": 3, "doc": json.dumps({"b": [1, "100%"]})},
    )
    assert inserted == 1
    assert executor.execute("update things set doc = null where id > :id", {"id": 1}) == 2
    assert executor.fetch("select id, doc from things order by id") == [
        {"id": 1, "doc": {"a": 1}},
        {"id": 2, "doc": None},
        {"id": 3, "doc": None},
    ]
    assert executor.fetchrow("select id from things where id = :id", {"id": 2}) == {"id": 2}
    assert executor.fetchrow("select id from things where false") is None
    assert executor.fetchval("select count(*) from things") == 3
    assert executor.fetchval("select 1 where false") is None
    assert executor.fetchval("select '50%' || CAST(:x AS text)", {"x": "!"}) == "50%!"


def test_rows_are_dicts_whatever_the_connection_row_factory(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True, row_factory=namedtuple_row) as connection:
        executor = PsycopgSyncExecutor(connection)
        assert executor.fetchrow("select 1 as one") == {"one": 1}
        assert executor.fetch("select 2 as two") == [{"two": 2}]
        assert executor.fetchval("select 3 as three") == 3


def test_never_commits(database_url: str, sync_connection: psycopg.Connection[Any]) -> None:
    sync_connection.execute("create table kept (n int)")
    with psycopg.connect(database_url) as connection:  # not autocommit: a transaction opens
        executor = PsycopgSyncExecutor(connection)
        executor.execute("insert into kept values (1)")
        assert executor.fetchval("select count(*) from kept") == 1
        connection.rollback()
    assert sync_connection.execute("select count(*) from kept").fetchone() == (0,)


def test_errors_are_translated(executor: PsycopgSyncExecutor) -> None:
    with pytest.raises(QueryError) as caught:
        executor.execute("selec 1")
    assert caught.value.sqlstate == "42601"
    assert isinstance(caught.value.__cause__, psycopg.Error)
    executor.execute("create table unique_things (id int primary key)")
    executor.execute("insert into unique_things values (1)")
    with pytest.raises(UniqueViolationError):
        executor.execute("insert into unique_things values (1)")
    with pytest.raises(ConfigurationError, match="'b'"):
        executor.fetchval("select CAST(:a AS int) + CAST(:b AS int)", {"a": 1})


def test_terminated_connection(executor: PsycopgSyncExecutor, database_url: str) -> None:
    pid = executor.fetchval("select pg_backend_pid()")
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("select pg_terminate_backend(%s)", [pid])
    with pytest.raises(ConnectionLostError):
        executor.fetchval("select 1")
