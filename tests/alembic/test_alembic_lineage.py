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

from graphile_worker.alembic_support import (
    BRANCH_LABEL,
    HEAD_REVISION,
    VERSION_LOCATION,
    LineageRefusalError,
    extension_revision_id,
    revision_id,
)
from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.errors import MigrationError
from graphile_worker.migrations import (
    BREAKING_MIGRATION_IDS,
    EXTENSION_STEPS,
    LATEST_MIGRATION,
    migrate_sync,
)
from graphile_worker.migrations.catalog import QUEUE_ORDER_INDEX
from graphile_worker.sql import quote_identifier
from graphile_worker.sql.recovery import WORKER_REGISTRY_TABLE

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
NODE_HEAD = revision_id(LATEST_MIGRATION)
HEAD = HEAD_REVISION
EXTENSION_REVISIONS = ["graphile_worker_ext_0002"]
"""Our own revisions after the Node ones: one so far, for the steps up to 0002."""
LINEAGE = [revision_id(number) for number in ALL_IDS] + EXTENSION_REVISIONS
"""The whole branch, base first."""


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


def extension_ids(url: str, schema: str = "graphile_worker") -> list[str]:
    """The extension steps recorded in the schema's own ledger, in id order."""
    if not relation_exists(url, f"{quote_identifier(schema)}._pyworker_migrations"):
        return []
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            f"select id from {quote_identifier(schema)}._pyworker_migrations order by id"
        ).fetchall()
    return [row[0] for row in rows]


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
    assert extension_ids(url, schema) == [step.id for step in EXTENSION_STEPS]
    assert relation_exists(url, f"{quote_identifier(schema)}.{WORKER_REGISTRY_TABLE}")


@pytest.fixture
def project(tmp_path: Path, empty_database_url: str) -> UserProject:
    """The application's Alembic project (sync, psycopg) on an empty database."""
    return create_user_project(tmp_path / "app", empty_database_url)


# ------------------------------------------------------------------------------ lineage


def test_lineage_is_one_branch_a_revision_per_node_migration_then_extensions() -> None:
    script = ScriptDirectory(str(Path(__file__).parent), version_locations=[VERSION_LOCATION])
    revisions = {rev.revision: rev for rev in script.walk_revisions()}

    # Node's migrations first, in order, then our extension revisions: one linear branch.
    assert set(revisions) == set(LINEAGE)
    assert script.get_heads() == [HEAD] == [LINEAGE[-1]]
    assert script.get_revision(BRANCH_LABEL + "@head").revision == HEAD
    for position, name in enumerate(LINEAGE):
        rev = revisions[name]
        assert rev.down_revision == (LINEAGE[position - 1] if position else None)
        assert rev.dependencies is None
        # Only the base declares the label; Alembic extends it to every descendant.
        assert rev.module.branch_labels == ((BRANCH_LABEL,) if position == 0 else None)
        assert BRANCH_LABEL in rev.branch_labels
        assert rev.module.upgrade.__module__ == rev.module.__name__
        assert rev.doc.startswith("graphile-worker ")


def test_the_newest_extension_step_has_a_revision() -> None:
    """A new step without a revision would never reach projects already at our head."""
    script = ScriptDirectory(str(Path(__file__).parent), version_locations=[VERSION_LOCATION])

    assert script.get_heads() == [extension_revision_id(EXTENSION_STEPS[-1].id)]
    assert extension_revision_id("0002_worker_registry") == "graphile_worker_ext_0002"


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
    for name in EXTENSION_REVISIONS:
        command.upgrade(config, name)

    assert diff_catalogs(snapshot(database_url), snapshot(empty_database_url)) == []


# ------------------------------------------------------------ extension revisions


def test_project_at_000020_from_before_the_extension_steps_gets_them(
    project: UserProject, empty_database_url: str
) -> None:
    """Deployed before our steps existed: Node's 20 migrations, none of ours, Alembic at 000020.

    No numbered revision runs again for such a project; the extension revision has to.
    """
    our_migrate(empty_database_url, extensions=())
    config = project.config()
    command.stamp(config, NODE_HEAD)
    before = ledger(empty_database_url)
    assert extension_ids(empty_database_url) == []
    assert not relation_exists(empty_database_url, f"graphile_worker.{WORKER_REGISTRY_TABLE}")

    command.upgrade(config, "heads")

    assert_fully_migrated(empty_database_url)
    assert ledger(empty_database_url) == before
    assert alembic_versions(empty_database_url) == {USER_REVISION, HEAD}


def test_extension_revision_changes_nothing_after_a_fresh_000020(
    project: UserProject, empty_database_url: str
) -> None:
    config = project.config()
    command.upgrade(config, NODE_HEAD)
    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        query = "select id, ts from graphile_worker._pyworker_migrations order by id"
        applied_by_000020 = connection.execute(query).fetchall()
        assert [row[0] for row in applied_by_000020] == [step.id for step in EXTENSION_STEPS]

        command.upgrade(config, HEAD)

        assert connection.execute(query).fetchall() == applied_by_000020
    assert alembic_versions(empty_database_url) == {HEAD}


# --------------------------------------------------------------------- refusals


def test_downgrade_is_refused_and_rolled_back(
    project: UserProject, empty_database_url: str
) -> None:
    config = project.config()
    command.upgrade(config, "heads")
    before = ledger(empty_database_url)

    with pytest.raises(LineageRefusalError, match="only go forward") as refused:
        command.downgrade(config, f"{BRANCH_LABEL}@-1")
    assert isinstance(refused.value, MigrationError)
    assert "`alembic downgrade app@-1`" in str(refused.value)

    assert ledger(empty_database_url) == before
    assert alembic_versions(empty_database_url) == {USER_REVISION, HEAD}

    # The application's own branch still downgrades normally.
    command.downgrade(config, "app@base")
    assert not relation_exists(empty_database_url, "public.app_users")
    assert alembic_versions(empty_database_url) == {HEAD}


def test_a_refused_downgrade_rolls_back_everything_the_command_did(
    project: UserProject, empty_database_url: str
) -> None:
    """``downgrade base`` first undoes the application's revisions, which need ours.

    The refusal that follows must take those back too: one transaction for the command.
    """
    (project.versions / "app_0002_job_links.py").write_text(
        f"""
import sqlalchemy as sa
from alembic import op

revision = "app_0002"
down_revision = "{USER_REVISION}"
branch_labels = None
depends_on = "{HEAD}"


def upgrade() -> None:
    op.create_table("job_links", sa.Column("job_id", sa.BigInteger))


def downgrade() -> None:
    op.drop_table("job_links")
"""
    )
    config = project.config()
    command.upgrade(config, "heads")

    with pytest.raises(LineageRefusalError, match="only go forward"):
        command.downgrade(config, "base")

    assert relation_exists(empty_database_url, "public.job_links")
    assert relation_exists(empty_database_url, "public.app_users")
    assert alembic_versions(empty_database_url) == {"app_0002"}
    assert_fully_migrated(empty_database_url)


def test_offline_mode_is_refused_with_a_clear_error(
    project: UserProject, empty_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LineageRefusalError, match="offline"):
        command.upgrade(project.config(), f"{BRANCH_LABEL}@head", sql=True)
    capsys.readouterr()
    assert not relation_exists(empty_database_url, "graphile_worker.migrations")
