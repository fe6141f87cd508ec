"""The migrator's own rules: reports, the extension ledger, transactions, async and sync paths.

Parity with Node (catalogs, behaviour, concurrency, refusal of newer breaking migrations) is
proved in ``tests/migrations/``; this module covers what only our migrator has.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from graphile_worker.drivers import DatabaseDriver
from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.errors import ConfigurationError, InvalidSchemaNameError, QueryError
from graphile_worker.migrations import (
    EXTENSION_STEPS,
    LATEST_MIGRATION,
    ExtensionStep,
    migrate,
    migrate_sync,
)
from graphile_worker.migrations.catalog import QUEUE_ORDER_INDEX

SCHEMA = "Migrator Tests"
AUDIT_STEP = ExtensionStep(
    id="0001_job_audit",
    requires=20,
    sql="create table {schema}.job_audit (id bigint primary key, note text not null);",
)
AUDIT_INDEX_STEP = ExtensionStep(
    id="0002_job_audit_note_index",
    requires=20,
    sql="create index job_audit_note_idx on {schema}.job_audit (note);",
)


def _ledger(connection: psycopg.Connection[Any], schema: str) -> list[tuple[int, bool]]:
    rows = connection.execute(
        f'select id, breaking from "{schema}".migrations order by id'
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def _extension_ledger(connection: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = connection.execute(f'select id from "{schema}"._pyworker_migrations order by id')
    return [row[0] for row in rows.fetchall()]


def _exists(connection: psycopg.Connection[Any], qualified: str) -> bool:
    row = connection.execute("select to_regclass(%s) is not null", [qualified]).fetchone()
    assert row is not None
    return bool(row[0])


@pytest.fixture
def empty_connection(empty_database_url: str) -> Any:
    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        yield connection


class TestSyncMigrator:
    def test_reports_what_it_applied_then_nothing(
        self, empty_connection: psycopg.Connection[Any]
    ) -> None:
        executor = PsycopgSyncExecutor(empty_connection)
        first = migrate_sync(executor, schema=SCHEMA, up_to=7)
        assert first.previous_version is None
        assert first.current_version == 7
        assert first.applied == tuple(range(1, 8))
        assert first.changed

        second = migrate_sync(executor, schema=SCHEMA)
        assert second.previous_version == 7
        assert second.applied == tuple(range(8, LATEST_MIGRATION + 1))

        third = migrate_sync(executor, schema=SCHEMA)
        assert third.applied == ()
        assert not third.changed
        assert third.current_version == LATEST_MIGRATION
        assert [id_ for id_, _ in _ledger(empty_connection, SCHEMA)] == list(
            range(1, LATEST_MIGRATION + 1)
        )

    def test_no_extension_ledger_while_there_are_no_steps(
        self, empty_connection: psycopg.Connection[Any]
    ) -> None:
        migrate_sync(PsycopgSyncExecutor(empty_connection), schema=SCHEMA, extensions=())
        assert not _exists(empty_connection, f'"{SCHEMA}"._pyworker_migrations')
        assert not _exists(empty_connection, f'"{SCHEMA}".{QUEUE_ORDER_INDEX}')

    def test_default_steps_add_the_queue_order_index_once(
        self, empty_connection: psycopg.Connection[Any]
    ) -> None:
        executor = PsycopgSyncExecutor(empty_connection)
        report = migrate_sync(executor, schema=SCHEMA)
        assert report.extensions_applied == tuple(step.id for step in EXTENSION_STEPS)
        assert _exists(empty_connection, f'"{SCHEMA}".{QUEUE_ORDER_INDEX}')
        assert migrate_sync(executor, schema=SCHEMA).extensions_applied == ()

    def test_a_dropped_queue_order_index_stays_dropped(
        self, empty_connection: psycopg.Connection[Any]
    ) -> None:
        # Dropping it is the documented way to opt out; the ledger remembers the step.
        executor = PsycopgSyncExecutor(empty_connection)
        migrate_sync(executor, schema=SCHEMA)
        empty_connection.execute(f'drop index "{SCHEMA}".{QUEUE_ORDER_INDEX}')
        assert migrate_sync(executor, schema=SCHEMA).extensions_applied == ()
        assert not _exists(empty_connection, f'"{SCHEMA}".{QUEUE_ORDER_INDEX}')

    def test_extension_steps_apply_once_in_their_own_ledger(
        self, empty_connection: psycopg.Connection[Any]
    ) -> None:
        executor = PsycopgSyncExecutor(empty_connection)
        report = migrate_sync(executor, schema=SCHEMA, extensions=[AUDIT_STEP])
        assert report.extensions_applied == ("0001_job_audit",)
        assert _exists(empty_connection, f'"{SCHEMA}".job_audit')

        again = migrate_sync(executor, schema=SCHEMA, extensions=[AUDIT_STEP, AUDIT_INDEX_STEP])
        assert again.applied == ()
        assert again.extensions_applied == ("0002_job_audit_note_index",)
        assert _extension_ledger(empty_connection, SCHEMA) == [
            "0001_job_audit",
            "0002_job_audit_note_index",
        ]
        # Node's ledger never sees our steps.
        assert max(id_ for id_, _ in _ledger(empty_connection, SCHEMA)) == LATEST_MIGRATION

    def test_extension_step_waits_for_the_migration_it_needs(
        self, empty_connection: psycopg.Connection[Any]
    ) -> None:
        executor = PsycopgSyncExecutor(empty_connection)
        report = migrate_sync(executor, schema=SCHEMA, up_to=10, extensions=[AUDIT_STEP])
        assert report.extensions_applied == ()
        assert not _exists(empty_connection, f'"{SCHEMA}"._pyworker_migrations')

    def test_failing_extension_step_rolls_back_and_is_not_recorded(
        self, empty_connection: psycopg.Connection[Any]
    ) -> None:
        broken = ExtensionStep(
            id="0001_broken", sql="create table {schema}.x (id nonsense_type);", requires=20
        )
        executor = PsycopgSyncExecutor(empty_connection)
        with pytest.raises(QueryError) as caught:
            migrate_sync(executor, schema=SCHEMA, extensions=[broken])
        assert caught.value.sqlstate == "42704"
        # The numbered migrations were committed one by one; the failed step left nothing.
        assert max(id_ for id_, _ in _ledger(empty_connection, SCHEMA)) == LATEST_MIGRATION
        assert not _exists(empty_connection, f'"{SCHEMA}"._pyworker_migrations')
        assert empty_connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    def test_in_transaction_mode_joins_the_callers_transaction(
        self, empty_connection: psycopg.Connection[Any]
    ) -> None:
        executor = PsycopgSyncExecutor(empty_connection)
        empty_connection.execute("begin")
        report = migrate_sync(executor, schema=SCHEMA, in_transaction=True)
        assert report.applied == tuple(range(1, LATEST_MIGRATION + 1))
        empty_connection.execute("rollback")
        assert not _exists(empty_connection, f'"{SCHEMA}".migrations')

    @pytest.mark.parametrize("up_to", [0, -1, LATEST_MIGRATION + 1])
    def test_up_to_out_of_range_is_refused(
        self, empty_connection: psycopg.Connection[Any], up_to: int
    ) -> None:
        with pytest.raises(ConfigurationError, match="up_to"):
            migrate_sync(PsycopgSyncExecutor(empty_connection), up_to=up_to)

    def test_invalid_schema_is_refused_before_any_sql(
        self, empty_connection: psycopg.Connection[Any]
    ) -> None:
        with pytest.raises(InvalidSchemaNameError):
            migrate_sync(PsycopgSyncExecutor(empty_connection), schema="pg_nope")
        row = empty_connection.execute(
            "select count(*) from pg_namespace where nspname = 'pg_nope'"
        ).fetchone()
        assert row == (0,)


class TestAsyncMigrator:
    pytestmark = pytest.mark.anyio

    async def test_migrates_through_each_driver(
        self, empty_database_url: str, driver_name: str
    ) -> None:
        from graphile_worker.drivers import create_driver

        driver: DatabaseDriver = await create_driver(empty_database_url, driver=driver_name)
        try:
            report = await migrate(driver, schema=SCHEMA, extensions=[AUDIT_STEP])
            assert report.applied == tuple(range(1, LATEST_MIGRATION + 1))
            assert report.extensions_applied == ("0001_job_audit",)
            again = await migrate(driver, schema=SCHEMA, extensions=[AUDIT_STEP])
            assert not again.changed
            ids = await driver.fetch(f'select id from "{SCHEMA}".migrations order by id')
            assert [row["id"] for row in ids] == list(range(1, LATEST_MIGRATION + 1))
        finally:
            await driver.aclose()

    async def test_failure_rolls_back_only_the_failing_step(
        self, empty_database_url: str, driver_name: str
    ) -> None:
        from graphile_worker.drivers import create_driver

        broken = ExtensionStep(id="0001_broken", sql="select 1/0;", requires=20)
        driver = await create_driver(empty_database_url, driver=driver_name)
        try:
            with pytest.raises(QueryError) as caught:
                await migrate(driver, schema=SCHEMA, extensions=[broken])
            assert caught.value.sqlstate == "22012"
            latest = await driver.fetchval(f'select max(id) from "{SCHEMA}".migrations')
            assert latest == LATEST_MIGRATION
            ledger = await driver.fetchval(
                "select to_regclass(:name)", {"name": f'"{SCHEMA}"._pyworker_migrations'}
            )
            assert ledger is None
        finally:
            await driver.aclose()

    async def test_needs_a_driver_unless_in_a_transaction(self, empty_database_url: str) -> None:
        class NotADriver:
            pass

        with pytest.raises(ConfigurationError, match="DatabaseDriver"):
            await migrate(NotADriver(), schema=SCHEMA)  # type: ignore[arg-type]
