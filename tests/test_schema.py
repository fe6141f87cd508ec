"""``graphile_worker.schema`` describes the migrated database exactly, and typed queries work.

The Table objects are compared with what SQLAlchemy reflects from a database our migrator
built (default schema and a custom one that needs quoting): every relation, column order,
type, nullability, server default, identity and generated column, and every named
constraint and index. Then typed selects and inserts run through them on the sync psycopg
and async asyncpg dialects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import anyio
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex

import graphile_worker.schema as schema_module
from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.errors import InvalidSchemaNameError
from graphile_worker.migrations import BREAKING_MIGRATION_IDS, LATEST_MIGRATION, migrate_sync
from graphile_worker.migrations.catalog import ExtensionStep
from graphile_worker.schema import VIEW_INFO_KEY, WorkerTables, tables_for_schema
from graphile_worker.sql import quote_identifier

CUSTOM_SCHEMA = 'Custom "Jobs"'
_DIALECT = postgresql.dialect()
# Creates our extension ledger, which only exists once some extension step was applied.
_PROBE_STEP = ExtensionStep(id="test_schema_probe", sql="select 1", requires=20)


def _sqlalchemy_url(database_url: str, driver: str) -> str:
    url = make_url(database_url).set(drivername=f"postgresql+{driver}")
    return url.render_as_string(hide_password=False)


def _normalise_sql(text: str | None) -> str | None:
    if text is None:
        return None
    return " ".join(re.sub(r"[()]", " ", text).lower().split())


@pytest.fixture(params=["graphile_worker", CUSTOM_SCHEMA], ids=["default", "custom"])
def migrated(request: pytest.FixtureRequest, empty_database_url: str) -> Iterator[tuple[str, str]]:
    """``(database url, schema)``: every migration and our extension ledger applied."""
    schema: str = request.param
    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        migrate_sync(PsycopgSyncExecutor(connection), schema=schema, extensions=(_PROBE_STEP,))
    yield empty_database_url, schema


@pytest.fixture
def sync_engine(migrated: tuple[str, str]) -> Iterator[sa.Engine]:
    engine = sa.create_engine(_sqlalchemy_url(migrated[0], "psycopg"))
    yield engine
    engine.dispose()


# -------------------------------------------------------------------------- building


def test_tables_are_built_once_per_schema_name() -> None:
    assert tables_for_schema() is tables_for_schema("graphile_worker")
    assert tables_for_schema("a") is tables_for_schema("a")
    assert tables_for_schema("a") is not tables_for_schema("b")
    assert tables_for_schema("a").metadata is not tables_for_schema("b").metadata
    custom = tables_for_schema(CUSTOM_SCHEMA)
    assert custom.schema == CUSTOM_SCHEMA
    assert custom.metadata.schema == CUSTOM_SCHEMA
    assert {table.schema for table in custom.metadata.tables.values()} == {CUSTOM_SCHEMA}
    assert len(custom.metadata.tables) == 7


@pytest.mark.parametrize("bad", ["", "pg_jobs", "x" * 64, " padded"])
def test_invalid_schema_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSchemaNameError):
        tables_for_schema(bad)


def test_module_level_names_are_the_default_schemas() -> None:
    default = tables_for_schema()
    assert schema_module.DEFAULT_TABLES is default
    assert schema_module.metadata is default.metadata
    for name in (
        "private_jobs",
        "private_job_queues",
        "private_tasks",
        "private_known_crontabs",
        "migrations",
        "pyworker_migrations",
        "jobs",
    ):
        assert getattr(schema_module, name) is getattr(default, name)
    assert default.jobs.info[VIEW_INFO_KEY] is True
    assert default.jobs not in default.tables


def test_custom_schema_is_quoted_in_sql() -> None:
    custom = tables_for_schema(CUSTOM_SCHEMA)
    compiled = str(sa.select(custom.jobs.c.id).compile(dialect=_DIALECT))
    assert compiled.endswith(f"FROM {quote_identifier(CUSTOM_SCHEMA)}.jobs")


# --------------------------------------------------------------- against the catalog


def _check_columns(table: sa.Table, reflected: list[dict[str, Any]]) -> None:
    assert [column["name"] for column in reflected] == [column.name for column in table.c]
    for ours, theirs in zip(table.c, reflected, strict=True):
        where = f"{table.name}.{ours.name}"
        assert ours.type.compile(dialect=_DIALECT) == theirs["type"].compile(dialect=_DIALECT), (
            where
        )
        assert ours.nullable == theirs["nullable"], where
        identity = theirs.get("identity")
        assert (ours.identity is not None) == (identity is not None), where
        if identity is not None:
            assert ours.identity is not None
            assert ours.identity.always == identity["always"], where
        computed = theirs.get("computed")
        assert (ours.computed is not None) == (computed is not None), where
        if computed is not None:
            assert ours.computed is not None
            assert ours.computed.persisted == computed["persisted"], where
            assert _normalise_sql(str(ours.computed.sqltext)) == _normalise_sql(
                computed["sqltext"]
            ), where
        default = ours.server_default
        ours_default = str(default.arg) if isinstance(default, sa.DefaultClause) else None
        assert ours_default == theirs["default"], where


def _check_constraints(table: sa.Table, inspector: sa.Inspector, schema: str) -> None:
    name = table.name
    primary = inspector.get_pk_constraint(name, schema=schema)
    assert table.primary_key.name == primary["name"]
    assert [c.name for c in table.primary_key.columns] == primary["constrained_columns"]

    uniques = {
        c.name: [column.name for column in c.columns]
        for c in table.constraints
        if isinstance(c, sa.UniqueConstraint)
    }
    reflected_uniques = {
        u["name"]: u["column_names"] for u in inspector.get_unique_constraints(name, schema=schema)
    }
    assert uniques == reflected_uniques

    checks = {
        c.name: _normalise_sql(str(c.sqltext))
        for c in table.constraints
        if isinstance(c, sa.CheckConstraint)
    }
    reflected_checks = {
        c["name"]: _normalise_sql(c["sqltext"])
        for c in inspector.get_check_constraints(name, schema=schema)
    }
    assert checks == reflected_checks

    indexes = {}
    for index in table.indexes:
        ddl = str(CreateIndex(index).compile(dialect=_DIALECT))
        indexes[index.name] = (
            [column.name for column in index.columns],
            list(index.dialect_options["postgresql"]["include"] or []),
            _normalise_sql(ddl.partition(" WHERE ")[2] or None),
        )
    reflected_indexes = {
        i["name"]: (
            i["column_names"],
            i["dialect_options"].get("postgresql_include", []),
            _normalise_sql(i["dialect_options"].get("postgresql_where")),
        )
        for i in inspector.get_indexes(name, schema=schema)
        if not i.get("duplicates_constraint")
    }
    assert indexes == reflected_indexes


def test_tables_match_the_migrated_catalog(
    migrated: tuple[str, str], sync_engine: sa.Engine
) -> None:
    schema = migrated[1]
    tables = tables_for_schema(schema)
    inspector = sa.inspect(sync_engine)

    assert set(inspector.get_table_names(schema=schema)) == {t.name for t in tables.tables}
    assert inspector.get_view_names(schema=schema) == [tables.jobs.name]
    for table in tables.tables:
        _check_columns(table, inspector.get_columns(table.name, schema=schema))
        _check_constraints(table, inspector, schema)
    _check_columns(tables.jobs, inspector.get_columns(tables.jobs.name, schema=schema))


def test_alembic_compare_metadata_finds_no_difference(
    migrated: tuple[str, str], sync_engine: sa.Engine
) -> None:
    """A second, independent judge: Alembic's own comparison of metadata and database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    schema = migrated[1]
    tables = tables_for_schema(schema)

    def only_our_schema(name: str | None, type_: str, parents: Any) -> bool:
        return name == schema if type_ == "schema" else True

    def not_views(item: Any, name: str | None, type_: str, *rest: Any) -> bool:
        return not (type_ == "table" and item.info.get(VIEW_INFO_KEY))

    with sync_engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": only_our_schema,
                "include_object": not_views,
                "compare_server_default": True,
                "compare_type": True,
            },
        )
        assert compare_metadata(context, tables.metadata) == []


# ------------------------------------------------------------------------ typed use


_ADD_JOB = sa.text(
    "select (j).id from {schema}.add_job('send_email', CAST(:payload AS json),"
    " queue_name => 'emails', priority => 3, flags => array['urgent']) as j"
)


def _add_job_sql(schema: str) -> sa.TextClause:
    return sa.text(str(_ADD_JOB).replace("{schema}", quote_identifier(schema)))


def _job_queries(tables: WorkerTables) -> tuple[sa.Select[Any], sa.Select[Any]]:
    view = tables.jobs
    from_view = sa.select(view).where(view.c.task_identifier == "send_email")
    jobs, tasks, queues = tables.private_jobs, tables.private_tasks, tables.private_job_queues
    joined = (
        sa.select(jobs.c.id, jobs.c.payload, jobs.c.is_available, tasks.c.identifier)
        .add_columns(queues.c.queue_name)
        .join_from(jobs, tasks, jobs.c.task_id == tasks.c.id)
        .join(queues, jobs.c.job_queue_id == queues.c.id)
        .where(tasks.c.identifier == "send_email")
    )
    return from_view, joined


def _check_job_rows(job_id: int, view_row: Any, joined_row: Any) -> None:
    assert view_row.id == job_id
    assert view_row.queue_name == "emails"
    assert view_row.priority == 3
    assert view_row.attempts == 0
    assert view_row.max_attempts == 25
    assert view_row.flags == {"urgent": True}
    assert isinstance(view_row.run_at, datetime)
    assert view_row.run_at.tzinfo is not None
    assert joined_row.id == job_id
    assert joined_row.payload == {"to": "a@example.com", "n": [1, 2]}
    assert joined_row.is_available is True
    assert joined_row.identifier == "send_email"
    assert joined_row.queue_name == "emails"


def test_typed_queries_sync_psycopg(migrated: tuple[str, str], sync_engine: sa.Engine) -> None:
    schema = migrated[1]
    tables = tables_for_schema(schema)
    known_since = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)

    with sync_engine.begin() as connection:
        job_id = connection.execute(
            _add_job_sql(schema), {"payload": '{"to": "a@example.com", "n": [1, 2]}'}
        ).scalar_one()
        from_view, joined = _job_queries(tables)
        _check_job_rows(
            job_id, connection.execute(from_view).one(), connection.execute(joined).one()
        )

        crontabs = tables.private_known_crontabs
        inserted = connection.execute(
            sa.insert(crontabs)
            .values(identifier="nightly", known_since=known_since)
            .returning(crontabs.c.known_since, crontabs.c.last_execution)
        ).one()
        assert inserted == (known_since, None)

        ledger = tables.migrations
        latest, breaking = connection.execute(
            sa.select(
                sa.func.max(ledger.c.id),
                sa.func.array_agg(ledger.c.id).filter(ledger.c.breaking),
            )
        ).one()
        assert latest == LATEST_MIGRATION
        assert set(breaking) == BREAKING_MIGRATION_IDS
        probe = connection.execute(sa.select(tables.pyworker_migrations.c.id)).scalars().all()
        assert probe == [_PROBE_STEP.id]


def test_typed_queries_async_asyncpg(migrated: tuple[str, str]) -> None:
    url, schema = migrated
    tables = tables_for_schema(schema)

    # Imported here: SQLAlchemy's asyncio extension needs greenlet, which the other tests
    # of this module do not.
    from sqlalchemy.ext.asyncio import create_async_engine

    async def scenario() -> None:
        engine = create_async_engine(_sqlalchemy_url(url, "asyncpg"))
        try:
            async with engine.begin() as connection:
                job_id = (
                    await connection.execute(
                        _add_job_sql(schema), {"payload": '{"to": "a@example.com", "n": [1, 2]}'}
                    )
                ).scalar_one()
                from_view, joined = _job_queries(tables)
                view_row = (await connection.execute(from_view)).one()
                joined_row = (await connection.execute(joined)).one()
                _check_job_rows(job_id, view_row, joined_row)
                count = await connection.scalar(
                    sa.select(sa.func.count()).select_from(tables.migrations)
                )
                assert count == LATEST_MIGRATION
        finally:
            await engine.dispose()

    # SQLAlchemy's asyncio extension runs on asyncio only.
    anyio.run(scenario, backend="asyncio")
