"""Our migrations leave exactly the schema Node graphile-worker 0.18.0's migrations leave.

The oracle is the npm package: its ``sql/`` files replayed the way Node's migrator runs them
(for "Node up to N"), and its real ``runMigrations`` (for the full chain and custom schema
names). Catalogs are compared with :mod:`tests.migrations.catalog`; a failure lists every
difference, one per line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.migrations import LATEST_MIGRATION, MIGRATIONS, MigrationReport, migrate_sync

from .catalog import (
    EXTENSION_OBJECTS,
    Snapshot,
    catalog_snapshot,
    catalog_without_extensions,
    diff_catalogs,
    ledger_rows,
)
from .databases import connect, scratch_database
from .node import apply_node_migrations, node_breaking_ids, node_migration_ids, run_node_migrator

if TYPE_CHECKING:
    import psycopg

    from .conftest import NodeState

pytestmark = pytest.mark.node

SCHEMA = "graphile_worker"
MIGRATION_IDS = [migration.id for migration in MIGRATIONS]


def migrate_ours(
    connection: psycopg.Connection[Any], schema: str = SCHEMA, up_to: int | None = None
) -> MigrationReport:
    """Our migrator with no extension steps: exactly the objects Node also defines."""
    return migrate_sync(PsycopgSyncExecutor(connection), schema=schema, up_to=up_to, extensions=())


def assert_same_catalog(expected: Snapshot, actual: Snapshot, what: str) -> None:
    differences = diff_catalogs(expected, actual)
    if differences:
        pytest.fail(
            f"{what}: {len(differences)} difference(s)\n" + "\n".join(differences),
            pytrace=False,
        )


@pytest.fixture(scope="module")
def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH")
    return node


def test_our_migration_list_matches_node(node_package: Path) -> None:
    """Same ids, same breaking flags: both libraries read and write one ledger."""
    assert [migration.id for migration in MIGRATIONS] == list(node_migration_ids(node_package))
    assert max(node_migration_ids(node_package)) == LATEST_MIGRATION
    assert {m.id for m in MIGRATIONS if m.breaking} == node_breaking_ids(node_package)


@pytest.mark.parametrize("migration_id", MIGRATION_IDS, ids=lambda n: f"migration-{n:06d}")
def test_each_migration_matches_node(
    migration_id: int,
    empty_database_url: str,
    node_package: Path,
    node_states: dict[int, NodeState],
) -> None:
    """Node 1..N-1 then our N leaves what Node 1..N leaves: catalog, ledger, announcement."""
    with connect(empty_database_url) as connection:
        if migration_id > 1:
            apply_node_migrations(connection, SCHEMA, migration_id - 1, package=node_package)
        connection.execute('listen "worker:migrate"')

        report = migrate_ours(connection, up_to=migration_id)

        announced = [
            (notification.channel, json.loads(notification.payload))
            for notification in connection.notifies(timeout=0)
        ]
        assert report.applied == (migration_id,)
        expected = node_states[migration_id]
        assert_same_catalog(
            expected.catalog,
            catalog_snapshot(connection, SCHEMA),
            f"Node 1..{migration_id} vs Node 1..{migration_id - 1} + ours {migration_id}",
        )
        assert ledger_rows(connection, SCHEMA) == expected.ledger
        breaking = migration_id in node_breaking_ids(node_package)
        assert announced == [
            ("worker:migrate", {"migrationNumber": migration_id, "breaking": breaking})
        ]


def test_replay_matches_node_real_migrator(
    pg_cluster: Any, node_binary: str, node_states: dict[int, NodeState]
) -> None:
    """The replay helper the per-migration test trusts is faithful to Node's own migrator."""
    with scratch_database(pg_cluster, "node_real") as url:
        run_node_migrator(url, SCHEMA)
        with connect(url) as connection:
            assert_same_catalog(
                node_states[LATEST_MIGRATION].catalog,
                catalog_snapshot(connection, SCHEMA),
                "Node replay vs Node runMigrations",
            )
            assert ledger_rows(connection, SCHEMA) == node_states[LATEST_MIGRATION].ledger


@pytest.mark.parametrize("schema", [SCHEMA, "Custom Jobs"])
def test_full_chain_matches_node_real_migrator(
    schema: str, pg_cluster: Any, node_binary: str, node_package: Path
) -> None:
    """Ours 1..20 on an empty database equals Node's runMigrations, default or custom schema."""
    with (
        scratch_database(pg_cluster, "node_full") as node_url,
        scratch_database(pg_cluster, "ours_full") as ours_url,
    ):
        run_node_migrator(node_url, schema, package=node_package)
        with connect(node_url) as node, connect(ours_url) as ours:
            report = migrate_ours(ours, schema)
            assert report.previous_version is None
            assert report.applied == tuple(MIGRATION_IDS)
            assert report.current_version == LATEST_MIGRATION
            assert_same_catalog(
                catalog_snapshot(node, schema),
                catalog_snapshot(ours, schema),
                f"Node runMigrations vs ours, schema {schema!r}",
            )
            assert ledger_rows(ours, schema) == ledger_rows(node, schema)


def test_our_default_migration_differs_from_node_only_by_our_extensions(
    pg_cluster: Any, node_binary: str, node_package: Path
) -> None:
    """What a worker's own migrate() leaves: Node's catalog plus our extension objects only."""
    with (
        scratch_database(pg_cluster, "node_ext") as node_url,
        scratch_database(pg_cluster, "ours_ext") as ours_url,
    ):
        run_node_migrator(node_url, SCHEMA, package=node_package)
        with connect(node_url) as node, connect(ours_url) as ours:
            migrate_sync(PsycopgSyncExecutor(ours), schema=SCHEMA)
            expected = catalog_snapshot(node, SCHEMA)
            actual = catalog_snapshot(ours, SCHEMA)
            assert_same_catalog(expected, catalog_without_extensions(actual), "Node vs ours")
            added = diff_catalogs(expected, actual)
            assert added, "our extension objects are missing"
            assert all(": unexpected (" in line for line in added), added
            assert all(any(name in line for name in EXTENSION_OBJECTS) for line in added), added


@pytest.mark.parametrize("ours_up_to", [1, 10, 11, 19])
def test_node_continues_where_we_stopped(
    ours_up_to: int,
    empty_database_url: str,
    node_binary: str,
    node_package: Path,
    node_states: dict[int, NodeState],
) -> None:
    """A mixed fleet: we migrate part-way, Node's migrator finishes, the result is Node's."""
    with connect(empty_database_url) as connection:
        migrate_ours(connection, up_to=ours_up_to)
        run_node_migrator(empty_database_url, SCHEMA, package=node_package)
        final = node_states[LATEST_MIGRATION]
        assert_same_catalog(
            final.catalog,
            catalog_snapshot(connection, SCHEMA),
            f"ours 1..{ours_up_to} + Node runMigrations vs Node 1..{LATEST_MIGRATION}",
        )
        assert ledger_rows(connection, SCHEMA) == final.ledger


def test_we_accept_a_database_node_migrated(
    empty_database_url: str, node_binary: str, node_package: Path
) -> None:
    """After Node's migrator, ours finds nothing to do and changes nothing."""
    run_node_migrator(empty_database_url, SCHEMA, package=node_package)
    with connect(empty_database_url) as connection:
        before = catalog_snapshot(connection, SCHEMA)
        report = migrate_ours(connection)
        assert report.applied == ()
        assert report.previous_version == report.current_version == LATEST_MIGRATION
        assert_same_catalog(before, catalog_snapshot(connection, SCHEMA), "after a no-op")


def test_extension_steps_never_alter_node_objects(
    empty_database_url: str, node_states: dict[int, NodeState]
) -> None:
    """With our extension steps on, Node's objects and ledger are untouched; we only add."""
    with connect(empty_database_url) as connection:
        migrate_sync(PsycopgSyncExecutor(connection), schema=SCHEMA)
        differences = diff_catalogs(
            node_states[LATEST_MIGRATION].catalog, catalog_snapshot(connection, SCHEMA)
        )
        ledger = ledger_rows(connection, SCHEMA)
    altered = [line for line in differences if ": unexpected (" not in line]
    if altered:
        pytest.fail("extension steps changed Node's objects:\n" + "\n".join(altered), pytrace=False)
    assert ledger == node_states[LATEST_MIGRATION].ledger
