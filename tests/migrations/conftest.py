"""Fixtures shared by the migration tests: Node's package, cached Node catalogs, connections.

The server comes from the suite-wide ``pg_cluster`` / ``empty_database_url`` fixtures; this
module only adds what the migration tests alone need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .catalog import Snapshot, catalog_snapshot, ledger_rows
from .databases import connect, scratch_database
from .node import apply_node_migrations, default_node_package, node_available, node_migration_ids


@pytest.fixture(scope="session")
def node_package(request: pytest.FixtureRequest) -> Path:
    """The pinned npm graphile-worker package (skips the test when it is not installed).

    Prefers the suite's ``node_graphile_worker`` fixture, which runs ``npm ci`` in
    ``tests/node/``; falls back to :func:`~tests.migrations.node.default_node_package`.
    """
    try:
        package = Path(request.getfixturevalue("node_graphile_worker"))
    except pytest.FixtureLookupError:
        package = default_node_package()
    if not node_available(package):
        pytest.skip(f"Node graphile-worker package not found at {package}")
    return package


@dataclass(frozen=True, slots=True)
class NodeState:
    """What Node's migrations ``1..N`` leave behind in schema ``graphile_worker``."""

    catalog: Snapshot
    ledger: list[tuple[int, bool]]


@pytest.fixture(scope="session")
def node_states(pg_cluster: Any, node_package: Path) -> dict[int, NodeState]:
    """Node's catalog and ledger after each of its migrations, computed once per session.

    One scratch database is migrated one step at a time, with a snapshot after each step,
    which is far cheaper than twenty databases.
    """
    states: dict[int, NodeState] = {}
    with scratch_database(pg_cluster, "node_states") as url, connect(url) as connection:
        for migration_id in node_migration_ids(node_package):
            applied = apply_node_migrations(
                connection, "graphile_worker", migration_id, package=node_package
            )
            assert applied == [migration_id]
            states[migration_id] = NodeState(
                catalog=catalog_snapshot(connection, "graphile_worker"),
                ledger=ledger_rows(connection, "graphile_worker"),
            )
    return states
