"""``migration_status`` reads how far a schema is behind; a worker with ``migrate=False``
refuses to start on a schema that is behind; a crontab naming an unknown task is warned
about at start-up. On every runtime and driver."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import psycopg
import pytest

from graphile_worker import Worker, WorkerOptions, task
from graphile_worker.drivers import DatabaseDriver, create_driver
from graphile_worker.errors import MigrationError
from graphile_worker.migrations import (
    EXTENSION_STEPS,
    LATEST_MIGRATION,
    migrate,
    migration_status,
)

pytestmark = pytest.mark.anyio


@task
async def status_noop(payload: Any) -> None:
    """A task for the worker tests."""


def _namespaces(url: str) -> list[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "select nspname from pg_namespace where nspname = 'graphile_worker'"
        ).fetchall()
    return [row[0] for row in rows]


async def test_status_reads_without_changing(empty_database_url: str, driver_name: str) -> None:
    database: DatabaseDriver = await create_driver(empty_database_url, driver=driver_name)
    try:
        missing = await migration_status(database)
        assert missing.current_version is None
        assert missing.behind
        assert missing.missing_extensions == tuple(step.id for step in EXTENSION_STEPS)
        assert "is not installed" in missing.describe()
        assert _namespaces(empty_database_url) == []

        await migrate(database, up_to=15)
        behind = await migration_status(database)
        assert (behind.current_version, behind.behind, behind.up_to_date) == (15, True, False)

        await migrate(database)
        current = await migration_status(database)
        assert (current.current_version, current.up_to_date) == (LATEST_MIGRATION, True)
    finally:
        await database.aclose()


async def test_worker_without_migrate_refuses_an_empty_schema(
    empty_database_url: str, driver_name: str
) -> None:
    options = WorkerOptions(
        tasks=[status_noop],
        database_url=empty_database_url,
        driver=driver_name,
        migrate=False,
        install_signal_handlers=False,
    )
    with anyio.fail_after(20), pytest.raises(MigrationError) as raised:
        await Worker(options).run_once()
    assert str(raised.value) == (
        f"schema 'graphile_worker' is not installed, this library needs {LATEST_MIGRATION} "
        f"(and extension steps {', '.join(step.id for step in EXTENSION_STEPS)}): "
        "run 'graphile-worker migrate'"
    )
    assert _namespaces(empty_database_url) == []


async def test_unknown_cron_task_is_warned_about_once(
    driver: DatabaseDriver, caplog: pytest.LogCaptureFixture
) -> None:
    options = WorkerOptions(
        tasks=[status_noop],
        driver=driver,
        migrate=False,
        install_signal_handlers=False,
        crontab="0 4 * * * status_noop\n0 5 * * * status_nop\n",
    )
    with caplog.at_level(logging.WARNING, logger="graphile_worker"), anyio.fail_after(20):
        await Worker(options).run_once()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "does not define: 'status_nop';" in warnings[0]
