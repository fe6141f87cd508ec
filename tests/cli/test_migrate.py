"""``graphile-worker migrate``: installs or upgrades the schema and says what it did."""

from __future__ import annotations

import psycopg
import pytest

from graphile_worker.migrations import LATEST_MIGRATION

from .conftest import UNREACHABLE_URL, CliCall, assert_one_line_error


def _ledger(url: str, schema: str) -> list[int]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(f'select id from "{schema}".migrations order by id').fetchall()
    return [row[0] for row in rows]


def test_installs_then_reports_up_to_date(cli: CliCall, empty_database_url: str) -> None:
    first = cli("migrate", "-c", empty_database_url)
    assert first.stdout.strip() == (
        f"Schema 'graphile_worker': version none -> {LATEST_MIGRATION} "
        f"(applied {LATEST_MIGRATION} migrations)"
    )
    assert _ledger(empty_database_url, "graphile_worker") == list(range(1, LATEST_MIGRATION + 1))

    second = cli("migrate", "--connection", empty_database_url)
    assert second.stdout.strip() == (
        f"Schema 'graphile_worker': version {LATEST_MIGRATION} -> {LATEST_MIGRATION} "
        "(already up to date)"
    )


def test_upgrades_a_partly_migrated_schema(cli: CliCall, empty_database_url: str) -> None:
    from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
    from graphile_worker.migrations import migrate_sync

    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        migrate_sync(PsycopgSyncExecutor(connection), up_to=11)
    result = cli("migrate", "-c", empty_database_url)
    assert f"version 11 -> {LATEST_MIGRATION}" in result.stdout
    assert f"applied {LATEST_MIGRATION - 11} migrations" in result.stdout


def test_custom_schema_by_flag_and_environment(cli: CliCall, empty_database_url: str) -> None:
    cli("migrate", "-c", empty_database_url, "-s", "my_jobs")
    assert len(_ledger(empty_database_url, "my_jobs")) == LATEST_MIGRATION

    # Node reads GRAPHILE_WORKER_SCHEMA too.
    result = cli(
        "migrate", env={"DATABASE_URL": empty_database_url, "GRAPHILE_WORKER_SCHEMA": "env_jobs"}
    )
    assert "Schema 'env_jobs': version none" in result.stdout
    assert len(_ledger(empty_database_url, "env_jobs")) == LATEST_MIGRATION


def test_reads_database_url(cli: CliCall, database_url: str) -> None:
    result = cli("migrate", env={"DATABASE_URL": database_url})
    assert "already up to date" in result.stdout


@pytest.mark.parametrize("schema", ["pg_jobs", " padded", ""])
def test_bad_schema_name_is_one_line(cli: CliCall, database_url: str, schema: str) -> None:
    result = cli("migrate", "-c", database_url, "-s", schema, expect=1)
    assert_one_line_error(result, "schema name")


def test_unreachable_database_is_one_line(cli: CliCall) -> None:
    result = cli("migrate", "-c", UNREACHABLE_URL, expect=1)
    assert_one_line_error(result, "PostgreSQL at 127.0.0.1:1 (database 'nowhere')")
    assert "secret" not in result.stderr


def test_missing_connection_is_one_line(cli: CliCall) -> None:
    result = cli("migrate", expect=1)
    assert_one_line_error(result, "DATABASE_URL")


def test_unsupported_url_is_one_line(cli: CliCall) -> None:
    result = cli("migrate", "-c", "mysql://localhost/db", expect=1)
    assert_one_line_error(result, "unsupported database URL")


def test_debug_log_level_adds_the_traceback(cli: CliCall) -> None:
    result = cli("--log-level", "debug", "migrate", "-c", UNREACHABLE_URL, expect=1)
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: PostgreSQL at 127.0.0.1:1")


def test_multi_line_messages_are_cut_to_their_first_line() -> None:
    from graphile_worker.cli._common import _one_line
    from graphile_worker.embedded import EmbeddedPostgresError

    error = EmbeddedPostgresError("PostgreSQL exited while starting; its log ends with:\nFATAL: x")
    assert _one_line(error) == (
        "PostgreSQL exited while starting; its log ends with: (run with --log-level debug "
        "for details)"
    )
