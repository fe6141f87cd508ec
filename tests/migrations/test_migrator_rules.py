"""The migrator's rules, which Node's migrator also follows (DESIGN.md, section 1).

* many workers starting at once migrate once, and all of them succeed;
* a database holding a *breaking* migration newer than we know is refused, naming both
  versions; a newer non-breaking one only warns;
* an invalid schema name is refused before any SQL is sent;
* migration 11 refuses to run while jobs are locked (Node raises the same condition).

None of these need Node: they run our migrator against a real server.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.drivers.base import Params, Row
from graphile_worker.errors import (
    ConfigurationError,
    IncompatibleSchemaError,
    InvalidSchemaNameError,
    LockedJobsError,
    UnsupportedPostgresVersionError,
)
from graphile_worker.migrations import LATEST_MIGRATION, MigrationReport, migrate_sync

from .catalog import ledger_rows
from .databases import connect

SCHEMA = "graphile_worker"
ALL_IDS = tuple(range(1, LATEST_MIGRATION + 1))


def migrate(connection: psycopg.Connection[Any], **options: Any) -> MigrationReport:
    return migrate_sync(PsycopgSyncExecutor(connection), schema=SCHEMA, **options)


def ledger_ids(connection: psycopg.Connection[Any]) -> list[int]:
    return [migration_id for migration_id, _ in ledger_rows(connection, SCHEMA)]


class TestConcurrency:
    WORKERS = 10

    def test_ten_migrators_at_once_migrate_once_and_all_succeed(
        self, empty_database_url: str
    ) -> None:
        barrier = threading.Barrier(self.WORKERS)

        def worker() -> MigrationReport:
            with connect(empty_database_url) as connection:
                barrier.wait(timeout=30)
                return migrate(connection)

        with ThreadPoolExecutor(max_workers=self.WORKERS) as pool:
            futures = [pool.submit(worker) for _ in range(self.WORKERS)]
            # .result() re-raises a worker's exception: every one of them must succeed.
            reports = [future.result(timeout=120) for future in futures]

        assert len(reports) == self.WORKERS
        applied = sorted(migration_id for report in reports for migration_id in report.applied)
        assert applied == list(ALL_IDS), "each migration must be applied exactly once"
        # Every caller, including one whose migrations were interleaved with another's, must
        # report the ledger's newest id after its call, not the last id it applied itself.
        assert [report.current_version for report in reports] == [LATEST_MIGRATION] * len(
            reports
        ), [(report.applied, report.current_version) for report in reports]
        with connect(empty_database_url) as connection:
            assert ledger_ids(connection) == list(ALL_IDS)


class TestNewerDatabase:
    def test_a_newer_breaking_migration_is_refused(self, empty_database_url: str) -> None:
        newer = LATEST_MIGRATION + 1
        with connect(empty_database_url) as connection:
            migrate(connection)
            connection.execute(
                f"insert into {SCHEMA}.migrations (id, breaking) values (%s, true)", [newer]
            )
            with pytest.raises(IncompatibleSchemaError) as raised:
                migrate(connection)
            assert raised.value.database_version == newer
            assert raised.value.library_version == LATEST_MIGRATION
            message = str(raised.value)
            assert str(newer) in message
            assert str(LATEST_MIGRATION) in message
            # The refusal left no transaction open behind it.
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert ledger_ids(connection) == [*ALL_IDS, newer]

    def test_a_newer_breaking_migration_is_refused_even_behind_non_breaking_ones(
        self, empty_database_url: str
    ) -> None:
        with connect(empty_database_url) as connection:
            migrate(connection)
            connection.execute(
                f"insert into {SCHEMA}.migrations (id, breaking) values (%s, true), (%s, false)",
                [LATEST_MIGRATION + 1, LATEST_MIGRATION + 2],
            )
            with pytest.raises(IncompatibleSchemaError) as raised:
                migrate(connection)
            assert raised.value.database_version == LATEST_MIGRATION + 1

    def test_a_newer_non_breaking_migration_only_warns(
        self, empty_database_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        newer = LATEST_MIGRATION + 1
        with connect(empty_database_url) as connection:
            migrate(connection)
            connection.execute(
                f"insert into {SCHEMA}.migrations (id, breaking) values (%s, false)", [newer]
            )
            with caplog.at_level(logging.WARNING, logger="graphile_worker.migrations"):
                report = migrate(connection)
        assert report.applied == ()
        warnings = [
            record
            for record in caplog.records
            if record.levelno == logging.WARNING and record.name.startswith("graphile_worker")
        ]
        assert len(warnings) == 1
        assert str(newer) in warnings[0].getMessage()
        assert str(LATEST_MIGRATION) in warnings[0].getMessage()


class RecordingExecutor:
    """Passes every call to a real executor and remembers the SQL it was given."""

    def __init__(self, inner: PsycopgSyncExecutor) -> None:
        self.inner = inner
        self.statements: list[str] = []

    def execute(self, sql: str, params: Params | None = None) -> int:
        self.statements.append(sql)
        return self.inner.execute(sql, params)

    def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        self.statements.append(sql)
        return self.inner.fetch(sql, params)

    def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        self.statements.append(sql)
        return self.inner.fetchrow(sql, params)

    def fetchval(self, sql: str, params: Params | None = None) -> Any:
        self.statements.append(sql)
        return self.inner.fetchval(sql, params)

    def execute_script(self, sql: str) -> None:
        self.statements.append(sql)
        self.inner.execute_script(sql)


class TestArguments:
    @pytest.mark.parametrize(
        "schema",
        ["", "pg_jobs", " padded", "trailing ", "a" * 64, "ü" * 32, "nul\x00byte"],
        ids=[
            "empty",
            "pg-prefix",
            "leading-space",
            "trailing-space",
            "64-bytes",
            "64-utf8-bytes",
            "nul",
        ],
    )
    def test_an_invalid_schema_name_is_refused_before_any_sql(
        self, schema: str, empty_database_url: str
    ) -> None:
        with connect(empty_database_url) as connection:
            executor = RecordingExecutor(PsycopgSyncExecutor(connection))
            with pytest.raises(InvalidSchemaNameError):
                migrate_sync(executor, schema=schema)
            assert executor.statements == []

    @pytest.mark.parametrize("up_to", [0, -1, LATEST_MIGRATION + 1])
    def test_up_to_outside_the_known_migrations_is_refused(
        self, up_to: int, empty_database_url: str
    ) -> None:
        with connect(empty_database_url) as connection:
            executor = RecordingExecutor(PsycopgSyncExecutor(connection))
            with pytest.raises(ConfigurationError):
                migrate_sync(executor, up_to=up_to)
            assert executor.statements == []


class TestLockedJobs:
    """Node migration 000011 aborts when a job was locked in the last four hours."""

    @staticmethod
    def _database_at_10_with_a_locked_job(
        connection: psycopg.Connection[Any], locked_for: str
    ) -> None:
        assert migrate(connection, up_to=10).applied == tuple(range(1, 11))
        connection.execute(f"select {SCHEMA}.add_job('task')")
        connection.execute(
            f"update {SCHEMA}.jobs set locked_by = 'worker_1', locked_at = now() - %s::interval",
            [locked_for],
        )

    def test_migration_11_refuses_recently_locked_jobs(self, empty_database_url: str) -> None:
        with connect(empty_database_url) as connection:
            self._database_at_10_with_a_locked_job(connection, "1 minute")
            with pytest.raises(LockedJobsError):
                migrate(connection)
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert ledger_ids(connection) == list(range(1, 11))
            # Once the worker is gone (its lock released), the migration goes through.
            connection.execute(f"update {SCHEMA}.jobs set locked_by = null, locked_at = null")
            assert migrate(connection).applied == tuple(range(11, LATEST_MIGRATION + 1))

    def test_migration_11_ignores_locks_older_than_four_hours(
        self, empty_database_url: str
    ) -> None:
        with connect(empty_database_url) as connection:
            self._database_at_10_with_a_locked_job(connection, "5 hours")
            assert migrate(connection).applied == tuple(range(11, LATEST_MIGRATION + 1))


class TestCallersTransaction:
    def test_in_transaction_joins_and_never_commits(self, empty_database_url: str) -> None:
        with psycopg.connect(empty_database_url) as connection:
            report = migrate_sync(
                PsycopgSyncExecutor(connection), schema=SCHEMA, in_transaction=True
            )
            assert report.applied == ALL_IDS
            assert connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            connection.rollback()
            exists = connection.execute("select to_regnamespace(%s) is not null", [SCHEMA])
            assert exists.fetchone() == (False,)

    def test_migrating_again_changes_nothing(self, empty_database_url: str) -> None:
        with connect(empty_database_url) as connection:
            first = migrate(connection)
            second = migrate(connection)
        assert first.applied == ALL_IDS
        assert second.applied == ()
        assert second.previous_version == second.current_version == LATEST_MIGRATION
        assert not second.changed


def test_postgresql_older_than_12_is_refused_before_any_change() -> None:
    """The version check is a pure decision of the migration plan (no server here is older
    than 12, and ``server_version_num`` cannot be faked), so drive the plan directly: after
    the first, read-only statement reports PostgreSQL 11, it must stop without asking for
    anything else."""
    from graphile_worker.migrations.migrator import _migration_plan

    plan = _migration_plan(SCHEMA, LATEST_MIGRATION, (), True)
    first = next(plan)
    assert first.sql.lstrip().startswith("select current_setting('server_version_num')")
    with pytest.raises(UnsupportedPostgresVersionError, match=r"PostgreSQL 12 or newer.*110022"):
        plan.send({"server_version": 110022, "has_ledger": False, "has_breaking_column": False})
