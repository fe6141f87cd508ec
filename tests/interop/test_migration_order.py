"""Either library may migrate the schema first; the other then finds nothing to do.

* Node migrates, then our migrator (async on every runtime and driver, and sync) applies
  nothing and leaves the ledger as it was.
* We migrate (our migrator, or Alembic through the shipped lineage), then Node starts: it
  applies nothing, warns about nothing, leaves ledger and catalog as they were, and runs
  jobs.
* A database left behind by an older Node (the real graphile-worker 0.13.0, whose schema
  stops at migration 10 and whose ledger has no ``breaking`` column; or Node's own files
  replayed up to an older id) is upgraded by us to the same schema Node 0.18 builds, and
  Node 0.18 then accepts it and runs the jobs added before the upgrade.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from alembic import command

from graphile_worker.alembic_support import HEAD_REVISION
from graphile_worker.drivers import create_driver
from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.errors import LockedJobsError
from graphile_worker.migrations import (
    BREAKING_MIGRATION_IDS,
    LATEST_MIGRATION,
    migrate,
    migrate_sync,
)
from graphile_worker.utils import SyncWorkerUtils
from tests.alembic.project import create_user_project
from tests.migrations.catalog import EXTENSION_OBJECTS, Snapshot, catalog_snapshot, diff_catalogs
from tests.migrations.node import apply_node_migrations

from .conftest import DEFAULT_SCHEMA
from .node import CURRENT, OLD, NodeWorker, ProcessOutput, node_utils, run_node_once
from .python_tasks import run_python_once
from .tables import jobs, quoted, release, results, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.node]

ALL_IDS = list(range(1, LATEST_MIGRATION + 1))
OLD_RELEASE_LATEST = 10
"""graphile-worker 0.13.0 ships migrations 1..10."""

LedgerRow = tuple[int, bool | None, datetime]


def ledger(connection: psycopg.Connection[Any], schema: str) -> list[LedgerRow]:
    """``(id, breaking, ts)`` rows; ``breaking`` is None for a ledger without that column."""
    name = quoted(schema)
    has_breaking = connection.execute(
        "select exists (select 1 from pg_attribute where attrelid = to_regclass(%s) "
        "and attname = 'breaking' and not attisdropped)",
        (f"{name}.migrations",),
    ).fetchone()
    assert has_breaking is not None
    breaking = "breaking" if has_breaking[0] else "null::boolean"
    rows = connection.execute(
        f"select id, {breaking}, ts from {name}.migrations order by id"
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def add_record(payload: dict[str, Any]) -> dict[str, Any]:
    """A Node ``addJob`` op for the ``record`` task."""
    return {"op": "addJob", "identifier": "record", "payload": payload}


def full_ledger() -> list[tuple[int, bool]]:
    return [(migration_id, migration_id in BREAKING_MIGRATION_IDS) for migration_id in ALL_IDS]


def ids_and_flags(rows: list[LedgerRow]) -> list[tuple[int, bool | None]]:
    return [(row[0], row[1]) for row in rows]


def snapshot(connection: psycopg.Connection[Any], schema: str) -> Snapshot:
    """The schema as Node sees it: our own objects (ledger, queue-order index) left out."""
    return catalog_snapshot(connection, schema, exclude=EXTENSION_OBJECTS)


def assert_node_accepts(
    url: str, schema: str, connection: psycopg.Connection[Any]
) -> ProcessOutput:
    """Node 0.18 starts on the schema we built: migrates nothing, warns nothing, runs jobs."""
    before_ledger = ledger(connection, schema)
    before_catalog = snapshot(connection, schema)
    probe = SyncWorkerUtils(connection, schema=schema).add_job("record", {"probe": True})

    output = run_node_once(url, schema)

    assert output.messages("warning", "error") == []
    assert output.other_stderr == []
    assert ledger(connection, schema) == before_ledger
    assert diff_catalogs(before_catalog, snapshot(connection, schema)) == []
    assert probe.id in {row.job_id for row in results(connection, outcome="ran", side="node")}
    return output


@pytest.fixture
def db(empty_interop_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(empty_interop_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def node_reference(
    interop_node: Path, pg_cluster: Any
) -> Iterator[tuple[list[tuple[int, bool]], Snapshot]]:
    """Ledger and catalog of a schema that Node 0.18's own migrator built from nothing."""
    name = f"gw_interop_reference_{uuid.uuid4().hex[:8]}"
    url = pg_cluster.create_database(name)
    try:
        node_utils(url, "reference", [{"op": "migrate"}])
        with psycopg.connect(url, autocommit=True) as connection:
            rows = ids_and_flags(ledger(connection, "reference"))
            yield [(row[0], bool(row[1])) for row in rows], snapshot(connection, "reference")
    finally:
        pg_cluster.drop_database(name)


class TestNodeFirst:
    async def test_then_python_has_nothing_to_do(
        self, empty_interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        await anyio.to_thread.run_sync(
            functools.partial(node_utils, empty_interop_url, schema, [{"op": "migrate"}])
        )
        node_ledger = ledger(db, schema)
        node_catalog = snapshot(db, schema)
        assert ids_and_flags(node_ledger) == full_ledger()

        async with await create_driver(empty_interop_url, driver=driver_name) as driver:
            report = await migrate(driver, schema=schema)

        assert report.previous_version == LATEST_MIGRATION
        assert report.current_version == LATEST_MIGRATION
        assert report.applied == ()
        assert ledger(db, schema) == node_ledger
        assert diff_catalogs(node_catalog, snapshot(db, schema)) == []

        # Our worker starting up (it migrates first) finds nothing to do either, and runs
        # a job Node queued.
        (queued,) = await anyio.to_thread.run_sync(
            functools.partial(node_utils, empty_interop_url, schema, [add_record({"from": "node"})])
        )
        summary = await run_python_once(empty_interop_url, schema, driver_name)
        assert summary.completed == 1
        assert [row.job_id for row in results(db, side="python")] == [int(queued["id"])]
        assert ledger(db, schema) == node_ledger
        assert diff_catalogs(node_catalog, snapshot(db, schema)) == []

    def test_then_sync_migrator_has_nothing_to_do(
        self, empty_interop_url: str, schema: str, db: psycopg.Connection[Any]
    ) -> None:
        node_utils(empty_interop_url, schema, [{"op": "migrate"}])
        node_ledger = ledger(db, schema)

        report = migrate_sync(PsycopgSyncExecutor(db), schema=schema)

        assert (report.previous_version, report.applied) == (LATEST_MIGRATION, ())
        assert ledger(db, schema) == node_ledger


class TestPythonFirst:
    async def test_our_migrator_then_node(
        self,
        empty_interop_url: str,
        schema: str,
        driver_name: str,
        db: psycopg.Connection[Any],
        node_reference: tuple[list[tuple[int, bool]], Snapshot],
    ) -> None:
        async with await create_driver(empty_interop_url, driver=driver_name) as driver:
            report = await migrate(driver, schema=schema)
        assert report.applied == tuple(ALL_IDS)
        reference_ledger, reference_catalog = node_reference
        assert ids_and_flags(ledger(db, schema)) == reference_ledger
        assert diff_catalogs(reference_catalog, snapshot(db, schema)) == []

        await anyio.to_thread.run_sync(assert_node_accepts, empty_interop_url, schema, db)
        # Node's own migrate() call, not only a worker starting, finds nothing to do either.
        before = ledger(db, schema)
        await anyio.to_thread.run_sync(
            functools.partial(node_utils, empty_interop_url, schema, [{"op": "migrate"}])
        )
        assert ledger(db, schema) == before

    @pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-env", "async-env"])
    def test_alembic_then_node(
        self,
        empty_interop_url: str,
        schema: str,
        db: psycopg.Connection[Any],
        tmp_path: Path,
        asynchronous: bool,
        node_reference: tuple[list[tuple[int, bool]], Snapshot],
    ) -> None:
        project = create_user_project(
            tmp_path,
            empty_interop_url,
            asynchronous=asynchronous,
            schema=None if schema == DEFAULT_SCHEMA else schema,
        )
        command.upgrade(project.config(), "heads")
        reference_ledger, reference_catalog = node_reference
        assert ids_and_flags(ledger(db, schema)) == reference_ledger
        assert diff_catalogs(reference_catalog, snapshot(db, schema)) == []
        versions = {row[0] for row in db.execute("select version_num from alembic_version")}
        assert HEAD_REVISION in versions

        assert_node_accepts(empty_interop_url, schema, db)


class TestOlderNode:
    def test_release_0_13_upgraded_by_us(
        self,
        empty_interop_url: str,
        schema: str,
        db: psycopg.Connection[Any],
        node_reference: tuple[list[tuple[int, bool]], Snapshot],
    ) -> None:
        url = empty_interop_url
        # graphile-worker 0.13.0 installs its schema (migrations 1..10) and queues jobs.
        old_jobs = node_utils(
            url,
            schema,
            [
                {"op": "migrate"},
                {
                    "op": "addJob",
                    "identifier": "record",
                    "payload": {"added_by": "0.13"},
                    "spec": {
                        "queueName": "old-queue",
                        "jobKey": "old-key",
                        "priority": -3,
                        "maxAttempts": 5,
                        "flags": ["legacy"],
                        "runAt": "2020-01-02T03:04:05.678Z",
                    },
                },
                {"op": "addJob", "identifier": "record", "payload": [1, 2]},
            ],
            package=OLD,
        )[1:]
        assert [row[0] for row in ledger(db, schema)] == list(range(1, OLD_RELEASE_LATEST + 1))
        assert {row[1] for row in ledger(db, schema)} == {None}

        report = migrate_sync(PsycopgSyncExecutor(db), schema=schema)

        assert report.previous_version == OLD_RELEASE_LATEST
        assert report.applied == tuple(range(OLD_RELEASE_LATEST + 1, LATEST_MIGRATION + 1))
        reference_ledger, reference_catalog = node_reference
        # Including the breaking flags of 1 and 3, which 0.13 applied without recording them.
        assert ids_and_flags(ledger(db, schema)) == reference_ledger
        assert diff_catalogs(reference_catalog, snapshot(db, schema)) == []

        assert_node_accepts(url, schema, db)
        seen = {row.job_id: row for row in results(db, side="node")}
        first, second = (seen[int(job["id"])] for job in old_jobs)
        assert first.payload == {"added_by": "0.13"}
        assert (first.queue_name, first.key, first.priority, first.max_attempts) == (
            "old-queue",
            "old-key",
            -3,
            5,
        )
        assert first.flags == {"legacy": True}
        assert first.job["run_at"] == "2020-01-02T03:04:05.678Z"
        assert second.payload == [1, 2]
        assert jobs(db, schema) == []

    def test_locked_jobs_of_a_running_0_13_worker_block_migration_11(
        self, empty_interop_url: str, schema: str, db: psycopg.Connection[Any]
    ) -> None:
        """Like Node, we refuse migration 11 while an old worker holds jobs; then it works."""
        url = empty_interop_url
        node_utils(url, schema, [{"op": "migrate"}], package=OLD)
        (held,) = node_utils(
            url, schema, [{"op": "addJob", "identifier": "hold", "payload": {}}], package=OLD
        )
        with NodeWorker(url, schema, package=OLD) as old_worker:
            wait_for(lambda: results(db, outcome="started"), what="the 0.13 worker to hold a job")
            with pytest.raises(LockedJobsError):
                migrate_sync(PsycopgSyncExecutor(db), schema=schema)
            assert [row[0] for row in ledger(db, schema)][-1] == OLD_RELEASE_LATEST
            release(db, int(held["id"]))
            wait_for(lambda: results(db, outcome="ran"), what="the held job to finish")
        assert old_worker.output is not None

        report = migrate_sync(PsycopgSyncExecutor(db), schema=schema)

        assert report.current_version == LATEST_MIGRATION
        assert_node_accepts(url, schema, db)

    @pytest.mark.parametrize("older_id", [1, 11, 14, 18, 19])
    def test_node_files_up_to_an_older_id(
        self,
        empty_interop_url: str,
        schema: str,
        db: psycopg.Connection[Any],
        interop_node: Path,
        older_id: int,
        node_reference: tuple[list[tuple[int, bool]], Snapshot],
    ) -> None:
        """Node 0.18's own migration files, replayed up to an older id, then upgraded by us."""
        apply_node_migrations(db, schema, older_id, package=interop_node / "node_modules" / CURRENT)
        # Positional arguments: the add_job signature of every schema version accepts them.
        # A queue name too: at migration 1 every job needs one.
        row = db.execute(
            f"select id from {quoted(schema)}.add_job('record', %s::json, 'before-upgrade')",
            ('{"before_upgrade": true}',),
        ).fetchone()
        assert row is not None

        report = migrate_sync(PsycopgSyncExecutor(db), schema=schema)

        assert report.applied == tuple(range(older_id + 1, LATEST_MIGRATION + 1))
        reference_ledger, reference_catalog = node_reference
        assert ids_and_flags(ledger(db, schema)) == reference_ledger
        assert diff_catalogs(reference_catalog, snapshot(db, schema)) == []
        assert_node_accepts(empty_interop_url, schema, db)
        ran = {seen.job_id: seen for seen in results(db, outcome="ran")}
        assert ran[row[0]].payload == {"before_upgrade": True}
        assert ran[row[0]].queue_name == "before-upgrade"
