"""graphile-worker's Alembic lineage inside an application's own Alembic project.

Each test builds the application's project in ``tmp_path`` (its own ``env.py`` and an
``app_users`` revision) with ``graphile_worker:alembic/versions`` in ``version_locations``,
and checks that ``alembic upgrade heads`` installs both, that Alembic, our migrator and
Node's migrator agree on the ledger whichever runs first, and that autogenerate leaves our
schema alone.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.script import ScriptDirectory

from graphile_worker.alembic_support import BRANCH_LABEL, VERSION_LOCATION, revision_id
from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.errors import MigrationError
from graphile_worker.migrations import BREAKING_MIGRATION_IDS, LATEST_MIGRATION, migrate_sync
from graphile_worker.migrations.catalog import QUEUE_ORDER_INDEX
from graphile_worker.sql import quote_identifier

from ..migrations.catalog import (
    Snapshot,
    catalog_snapshot,
    catalog_without_extensions,
    diff_catalogs,
)
from ..migrations.node import run_node_migrator
from .project import USER_REVISION, UserProject, create_user_project

LedgerRow = tuple[int, bool, datetime]
ALL_IDS = list(range(1, LATEST_MIGRATION + 1))
HEAD = revision_id(LATEST_MIGRATION)


# ------------------------------------------------------------------------------ helpers


def ledger(url: str, schema: str = "graphile_worker") -> list[LedgerRow]:
    """Every ``(id, breaking, ts)`` of the schema's ledger, in id order."""
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            f"select id, breaking, ts from {quote_identifier(schema)}.migrations order by id"
        ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def ledger_ids(url: str, schema: str = "graphile_worker") -> list[int]:
    return [row[0] for row in ledger(url, schema)]


def alembic_versions(url: str) -> set[str]:
    """The heads recorded in the application's ``alembic_version`` table."""
    with psycopg.connect(url, autocommit=True) as connection:
        return {row[0] for row in connection.execute("select version_num from alembic_version")}


def snapshot(url: str, schema: str = "graphile_worker") -> Snapshot:
    with psycopg.connect(url, autocommit=True) as connection:
        return catalog_snapshot(connection, schema)


def relation_exists(url: str, name: str) -> bool:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("select to_regclass(%s) is not null", (name,)).fetchone()
    return bool(row and row[0])


def our_migrate(url: str, schema: str = "graphile_worker", **options: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as connection:
        return migrate_sync(PsycopgSyncExecutor(connection), schema=schema, **options)


def assert_fully_migrated(url: str, schema: str = "graphile_worker") -> None:
    rows = ledger(url, schema)
    assert [row[0] for row in rows] == ALL_IDS
    assert {row[0] for row in rows if row[1]} == set(BREAKING_MIGRATION_IDS)
    assert relation_exists(url, f"{quote_identifier(schema)}._private_jobs")
    assert relation_exists(url, f"{quote_identifier(schema)}.jobs")


@pytest.fixture
def project(tmp_path: Path, empty_database_url: str) -> UserProject:
    """The application's Alembic project (sync, psycopg) on an empty database."""
    return create_user_project(tmp_path / "app", empty_database_url)


# ------------------------------------------------------------------------------ lineage


def test_lineage_is_one_branch_of_one_revision_per_node_migration() -> None:
    script = ScriptDirectory(str(Path(__file__).parent), version_locations=[VERSION_LOCATION])
    revisions = {rev.revision: rev for rev in script.walk_revisions()}

    assert set(revisions) == {revision_id(number) for number in ALL_IDS}
    assert script.get_heads() == [HEAD]
    assert script.get_revision(BRANCH_LABEL + "@head").revision == HEAD
    for number in ALL_IDS:
        rev = revisions[revision_id(number)]
        expected_down = None if number == 1 else revision_id(number - 1)
        assert rev.down_revision == expected_down
        assert rev.dependencies is None
        # Only the base declares the label; Alembic extends it to every descendant.
        assert rev.module.branch_labels == ((BRANCH_LABEL,) if number == 1 else None)
        assert BRANCH_LABEL in rev.branch_labels
        assert rev.module.upgrade.__module__ == rev.module.__name__


# ------------------------------------------------------------------------------ upgrade


@pytest.mark.node
def test_upgrade_heads_installs_both_lineages_and_every_migrator_agrees(
    project: UserProject, empty_database_url: str, node_graphile_worker: Path
) -> None:
    command.upgrade(project.config(), "heads")

    assert relation_exists(empty_database_url, "public.app_users")
    assert_fully_migrated(empty_database_url)
    assert alembic_versions(empty_database_url) == {USER_REVISION, HEAD}
    after_alembic = ledger(empty_database_url)
    catalog = snapshot(empty_database_url)

    report = our_migrate(empty_database_url)
    assert report.applied == ()
    assert not report.changed
    assert report.current_version == LATEST_MIGRATION

    run_node_migrator(empty_database_url, package=node_graphile_worker)
    assert ledger(empty_database_url) == after_alembic
    assert diff_catalogs(catalog, snapshot(empty_database_url)) == []


def test_alembic_leaves_the_same_schema_as_our_migrator(
    project: UserProject, empty_database_url: str, database_url: str
) -> None:
    command.upgrade(project.config(), "heads")

    assert diff_catalogs(snapshot(database_url), snapshot(empty_database_url)) == []


def test_alembic_cli_with_schema_from_the_command_line(
    tmp_path: Path, empty_database_url: str
) -> None:
    schema = "App Jobs"
    # alembic.ini names another schema: the command line must win.
    project = create_user_project(tmp_path / "app", empty_database_url, schema="not_this_one")
    alembic = shutil.which("alembic", path=str(Path(sys.executable).parent))
    executable = [alembic] if alembic else [sys.executable, "-m", "alembic"]

    completed = subprocess.run(
        [*executable, "-c", str(project.ini), "-x", f"graphile_worker_schema={schema}"]
        + ["upgrade", "heads"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert_fully_migrated(empty_database_url, schema)
    assert relation_exists(empty_database_url, "public.app_users")
    assert not relation_exists(empty_database_url, '"not_this_one".migrations')
    assert not relation_exists(empty_database_url, "graphile_worker.migrations")
    assert alembic_versions(empty_database_url) == {USER_REVISION, HEAD}


def test_schema_from_alembic_ini(tmp_path: Path, empty_database_url: str) -> None:
    project = create_user_project(tmp_path / "app", empty_database_url, schema="ini_jobs")

    command.upgrade(project.config(), "heads")

    assert_fully_migrated(empty_database_url, "ini_jobs")
    assert not relation_exists(empty_database_url, "graphile_worker.migrations")


def test_async_env_over_asyncpg(tmp_path: Path, empty_database_url: str) -> None:
    project = create_user_project(tmp_path / "app", empty_database_url, asynchronous=True)

    command.upgrade(project.config(), "heads")

    assert_fully_migrated(empty_database_url)
    assert relation_exists(empty_database_url, "public.app_users")
    assert our_migrate(empty_database_url).applied == ()


def test_application_revision_can_depend_on_our_head(
    project: UserProject, empty_database_url: str
) -> None:
    """``depends_on = "graphile_worker_000020"`` pulls our lineage in before the app's revision."""
    (project.versions / "app_0002_job_links.py").write_text(
        f"""
import sqlalchemy as sa
from alembic import op

revision = "app_0002"
down_revision = "{USER_REVISION}"
branch_labels = None
depends_on = "{HEAD}"


def upgrade() -> None:
    op.create_table(
        "job_links",
        sa.Column("job_id", sa.BigInteger, sa.ForeignKey("graphile_worker._private_jobs.id")),
    )


def downgrade() -> None:
    op.drop_table("job_links")
"""
    )

    command.upgrade(project.config(), "app@head")

    assert_fully_migrated(empty_database_url)
    assert relation_exists(empty_database_url, "public.job_links")
    # Alembic keeps only the app's head: it implies the head it depends on.
    assert alembic_versions(empty_database_url) == {"app_0002"}
    before = ledger(empty_database_url)
    command.upgrade(project.config(), "heads")
    assert ledger(empty_database_url) == before


# -------------------------------------------------------------------- other orders


def test_our_migrator_first_then_alembic_changes_nothing(tmp_path: Path, database_url: str) -> None:
    """``database_url`` was migrated by our migrator; Alembic only records its head."""
    project = create_user_project(tmp_path / "app", database_url)
    before_ledger = ledger(database_url)
    before_catalog = snapshot(database_url)

    command.upgrade(project.config(), "heads")

    assert ledger(database_url) == before_ledger
    assert diff_catalogs(before_catalog, snapshot(database_url)) == []
    assert alembic_versions(database_url) == {USER_REVISION, HEAD}
    assert relation_exists(database_url, "public.app_users")


@pytest.mark.node
def test_node_first_then_alembic_changes_nothing(
    tmp_path: Path, empty_database_url: str, node_graphile_worker: Path
) -> None:
    run_node_migrator(empty_database_url, "node_jobs", package=node_graphile_worker)
    before_ledger = ledger(empty_database_url, "node_jobs")
    before_catalog = snapshot(empty_database_url, "node_jobs")
    project = create_user_project(tmp_path / "app", empty_database_url, schema="node_jobs")

    command.upgrade(project.config(), "heads")

    # Node's objects are untouched; what Alembic adds is only our own extension objects.
    after = snapshot(empty_database_url, "node_jobs")
    assert ledger(empty_database_url, "node_jobs") == before_ledger
    assert diff_catalogs(before_catalog, catalog_without_extensions(after)) == []
    assert relation_exists(empty_database_url, f"node_jobs.{QUEUE_ORDER_INDEX}")
    assert alembic_versions(empty_database_url) == {USER_REVISION, HEAD}


def test_interleaved_alembic_and_our_migrator(
    project: UserProject, empty_database_url: str
) -> None:
    config = project.config()
    command.upgrade(config, revision_id(10))
    assert ledger_ids(empty_database_url) == list(range(1, 11))
    assert alembic_versions(empty_database_url) == {revision_id(10)}

    report = our_migrate(empty_database_url)
    assert report.applied == tuple(range(11, LATEST_MIGRATION + 1))
    after_ours = ledger(empty_database_url)

    command.upgrade(config, "heads")
    assert ledger(empty_database_url) == after_ours
    assert alembic_versions(empty_database_url) == {USER_REVISION, HEAD}


def test_one_revision_at_a_time_matches_one_go(
    project: UserProject, empty_database_url: str, database_url: str
) -> None:
    config = project.config()
    for number in ALL_IDS:
        command.upgrade(config, revision_id(number))
        assert ledger_ids(empty_database_url) == list(range(1, number + 1))

    assert diff_catalogs(snapshot(database_url), snapshot(empty_database_url)) == []


# --------------------------------------------------------------------- refusals


def test_downgrade_is_refused_and_rolled_back(
    project: UserProject, empty_database_url: str
) -> None:
    config = project.config()
    command.upgrade(config, "heads")
    before = ledger(empty_database_url)

    with pytest.raises(MigrationError, match="no down migrations"):
        command.downgrade(config, f"{BRANCH_LABEL}@-1")

    assert ledger(empty_database_url) == before
    assert alembic_versions(empty_database_url) == {USER_REVISION, HEAD}

    # The application's own branch still downgrades normally.
    command.downgrade(config, "app@base")
    assert not relation_exists(empty_database_url, "public.app_users")
    assert alembic_versions(empty_database_url) == {HEAD}


def test_offline_mode_is_refused_with_a_clear_error(
    project: UserProject, empty_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(MigrationError, match="offline"):
        command.upgrade(project.config(), f"{BRANCH_LABEL}@head", sql=True)
    capsys.readouterr()
    assert not relation_exists(empty_database_url, "graphile_worker.migrations")
