"""A role that does not own the schema: refused with the fix before grants, working after.

Row-level security is on for Node's job tables, so a role other than the owner sees no row
until a policy names it. Every test creates its own login role (with a name that needs
quoting where it matters) and connects as it through a URL, as a deployed worker would; the
fixture's superuser connection only sets up and reads back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

from graphile_worker import (
    ConfigurationError,
    GrantReport,
    InsufficientPrivilegeError,
    QueryError,
    SyncWorkerUtils,
    WorkerUtils,
)
from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.migrations import migrate_sync
from graphile_worker.sql._statement import run_sync
from graphile_worker.sql.grants import (
    TABLES,
    check_role_name,
    check_worker_access,
    grant_statements,
    policy_name,
    quote_role,
)
from graphile_worker.task import task
from graphile_worker.worker import Worker, WorkerContext
from graphile_worker.worker._cron_clock import ManualCronClock
from tests.interop.conftest import interop_node  # noqa: F401 - the Node test's fixture
from tests.worker.conftest import eventually, job_rows, options

PASSWORD = "s3cret pass"
ROW_SECURED = [table.name for table in TABLES if table.row_security]


@dataclass(frozen=True)
class Role:
    name: str
    url: str


def url_as(url: str, role: str) -> str:
    """``url`` logging in as ``role`` (percent-encoded, so any name works)."""
    parts = urlsplit(url)
    netloc = f"{quote(role, safe='')}:{quote(PASSWORD, safe='')}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def make_role(database_url: str) -> Iterator[Callable[..., Role]]:
    """Creates login roles unique to this test; drops them, and what they hold, afterwards."""
    created: list[str] = []

    def make(prefix: str = "gw_worker") -> Role:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(
                f"create role {quote_role(name)} login password '{PASSWORD}'".encode()
            )
        created.append(name)
        return Role(name, url_as(database_url, name))

    yield make
    with psycopg.connect(database_url, autocommit=True) as connection:
        for name in created:
            # Revokes the grants and drops the policies naming the role in this database.
            connection.execute(f"drop owned by {quote_role(name)}".encode())
            connection.execute(f"drop role {quote_role(name)}".encode())


def acl_and_policies(connection: psycopg.Connection[Any], schema: str = "graphile_worker") -> Any:
    """Everything a grant changes: the ACLs in the schema and its policies."""
    return connection.execute(
        """
        select 'rel', c.relname::text, c.relacl::text from pg_class c
        join pg_namespace n on n.oid = c.relnamespace where n.nspname = %(s)s
        union all
        select 'fn', p.proname::text, p.proacl::text from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace where n.nspname = %(s)s
        union all
        select 'schema', n.nspname::text, n.nspacl::text from pg_namespace n where n.nspname = %(s)s
        union all
        select 'policy', pol.tablename || '/' || pol.policyname, pol.cmd || ' ' || pol.roles::text
        from pg_policies pol where pol.schemaname = %(s)s
        order by 1, 2
        """,
        {"s": schema},
    ).fetchall()


def policies_for(connection: psycopg.Connection[Any], role: str) -> dict[str, str]:
    """Table -> command of each policy naming ``role`` in the default schema."""
    rows = connection.execute(
        "select tablename::text, cmd from pg_policies "
        "where schemaname = 'graphile_worker' and %s = any(roles)",
        (role,),
    ).fetchall()
    return dict(rows)


# --------------------------------------------------------------------------- the SQL alone


def test_statements_quote_the_role_and_the_schema() -> None:
    role = 'o\'dd "role"; drop table x; --'
    statements = grant_statements('My "Jobs"', role)
    grantee = '"o\'dd ""role""; drop table x; --"'
    assert statements[0] == f'grant usage on schema "My ""Jobs""" to {grantee};'
    assert all(statement.endswith(f"to {grantee};") for statement in statements[:-5])
    assert (
        f'create policy "graphile_worker_o\'dd ""role""; drop table x; --" on '
        f'"My ""Jobs"""._private_jobs as permissive for all to {grantee} using (true) '
        "with check (true);"
    ) in statements


def test_policy_names_fit_postgresql_and_stay_distinct() -> None:
    first, second = "r" * 60 + "ab", "r" * 60 + "cd"
    assert policy_name("app") == "graphile_worker_app"
    assert len(policy_name(first).encode()) <= 63
    assert policy_name(first) != policy_name(second)
    # Cut on a character boundary: 38 bytes of room would end inside the 19th "é".
    assert policy_name("a" + "é" * 31).startswith("graphile_worker_a" + "é" * 18 + "_")
    assert len(policy_name("a" + "é" * 31).encode()) <= 63


@pytest.mark.parametrize("role", ["", "a" * 64, "a\x00b", "\udc80"])
def test_role_names_postgresql_would_change_are_refused(role: str) -> None:
    with pytest.raises(ConfigurationError, match="role name"):
        check_role_name(role)


def test_read_only_grants_select_and_select_policies_only() -> None:
    statements = grant_statements("graphile_worker", "dashboard", read_only=True)
    text = "\n".join(statements)
    for word in ("insert", "update", "delete", "execute", "sequences", "for all"):
        assert word not in text
    assert sum(statement.startswith("create policy") for statement in statements) == len(
        ROW_SECURED
    )
    assert all("for select to" in statement for statement in statements if "policy" in statement)


def test_policies_already_in_place_are_kept_or_widened_never_narrowed() -> None:
    full = grant_statements("s", "app", policies={"_private_jobs": "*", "_private_tasks": "r"})
    assert not any("_private_jobs as" in statement for statement in full)
    assert 'drop policy "graphile_worker_app" on "s"._private_tasks;' in full
    read_only = grant_statements(
        "s", "app", read_only=True, policies=dict.fromkeys(ROW_SECURED, "*")
    )
    assert not any("polic" in statement for statement in read_only)


# ---------------------------------------------------------------------- worker start-up


@task("record")
async def record(payload: Any) -> None:
    """Never reached: the workers given it are refused before they claim anything."""


@pytest.mark.anyio
async def test_without_grants_the_worker_refuses_to_start_and_says_why(
    driver_name: str, database_url: str, make_role: Callable[..., Role]
) -> None:
    role = make_role()
    with psycopg.connect(database_url, autocommit=True) as connection:
        job = SyncWorkerUtils(connection).add_job("record", {"n": 1})
        with pytest.raises(InsufficientPrivilegeError) as refused:
            await Worker(
                options(driver_name, [record], database_url=role.url, migrate=True)
            ).run_once()
        assert refused.value.role == role.name
        assert refused.value.schema == "graphile_worker"
        message = str(refused.value)
        assert f"role {role.name!r} cannot run the jobs in schema 'graphile_worker'" in message
        assert "row-level security hides every row of _private_jobs" in message
        assert "no USAGE on the schema" in message
        assert message.endswith(
            f"run: graphile-worker grant {role.name} (with --dry-run it prints the SQL instead)"
        )

        # What users reported: every grant, no policy. Only row-level security is left.
        connection.execute(
            f"grant usage on schema graphile_worker to {role.name};"
            f"grant all on all tables in schema graphile_worker to {role.name};"
            f"grant all on all sequences in schema graphile_worker to {role.name};".encode()
        )
        with pytest.raises(InsufficientPrivilegeError) as refused:
            await Worker(options(driver_name, [record], database_url=role.url)).run_once()
        assert len(refused.value.problems) == 1
        assert refused.value.problems[0].startswith(
            "row-level security hides every row of _private_jobs, _private_job_queues, "
            "_private_tasks, _pyworker_workers from it"
        )
        assert [row["id"] for row in job_rows(connection)] == [job.id]
        assert job_rows(connection)[0]["attempts"] == 0


@pytest.mark.anyio
async def test_after_grant_the_role_adds_and_runs_jobs_with_cron_and_recovery(
    driver_name: str, database_url: str, make_role: Callable[..., Role]
) -> None:
    role = make_role('gw "odd" worker;')  # quotes, spaces and a semicolon, in the URL too
    async with await WorkerUtils.connect(database_url, driver=driver_name) as owner:
        report = await owner.grant(role.name)
    assert isinstance(report, GrantReport) and report.applied
    assert sum(statement.startswith("create policy") for statement in report.statements) == 5

    ran: list[Any] = []

    @task("record")
    async def recording(payload: dict[str, Any], ctx: WorkerContext) -> None:
        ran.append(payload["n"])
        if payload.get("follow_up"):
            await ctx.add_job("record", {"n": payload["n"] + 1})
        if payload.get("registry"):
            ran.append([info.worker_id for info in await ctx.utils.list_workers()])

    async with await WorkerUtils.connect(role.url, driver=driver_name) as utils:
        first = await utils.add_job("record", {"n": 1, "follow_up": True})
        assert [job.id for job in (await utils.list_jobs()).jobs] == [first.id]

        # migrate=True, the default: an up-to-date schema needs no DDL, so no CREATE right.
        worker = Worker(
            options(
                driver_name,
                [recording],
                database_url=role.url,
                migrate=True,
                crontab="* * * * * record ?id=every_minute {n: 100}",
                cron_clock=ManualCronClock(datetime(2030, 1, 1, 10, 0, tzinfo=timezone.utc)),
            )
        )
        with psycopg.connect(database_url, autocommit=True) as connection:
            async with worker:
                await utils.add_job("record", {"n": 0, "registry": True})
                # The cron job is due at 10:00 in 2030 (the test's clock): added, not run.
                await eventually(
                    lambda: (
                        {0, 1, 2} <= set(filter(_is_int, ran)) and len(job_rows(connection)) == 1
                    ),
                    within=10,
                )
                assert [info.worker_id for info in await utils.list_workers()] == [worker.worker_id]
            [cron_job] = job_rows(connection)
            known = connection.execute(
                "select identifier from graphile_worker._private_known_crontabs"
            ).fetchall()
        assert [worker.worker_id] in ran  # the registry, read from inside a job
        assert sorted(filter(_is_int, ran)) == [0, 1, 2]
        assert cron_job["payload"]["n"] == 100
        assert known == [("every_minute",)]
        assert (await utils.stats()).total.scheduled == 1


def _is_int(value: object) -> bool:
    return isinstance(value, int)


@pytest.mark.anyio
async def test_a_read_only_role_reads_but_adds_nothing_and_runs_no_worker(
    driver_name: str, database_url: str, make_role: Callable[..., Role]
) -> None:
    role = make_role("gw_dashboard")
    with psycopg.connect(database_url, autocommit=True) as connection:
        owner = SyncWorkerUtils(connection)
        owner.grant(role.name, read_only=True)
        job = owner.add_job("record", {"n": 1}, spec=None)
        assert policies_for(connection, role.name) == dict.fromkeys(ROW_SECURED, "SELECT")

    async with await WorkerUtils.connect(role.url, driver=driver_name) as utils:
        assert [listed.id for listed in (await utils.list_jobs()).jobs] == [job.id]
        assert (await utils.stats()).total.ready == 1
        assert await utils.list_workers() == []
        with pytest.raises(QueryError, match="permission denied for table") as denied:
            await utils.add_job("record", {"n": 2})
        assert denied.value.sqlstate == "42501"

    with pytest.raises(InsufficientPrivilegeError) as refused:
        await Worker(options(driver_name, [record], database_url=role.url)).run_once()
    problems = refused.value.problems
    assert "no policy lets it INSERT, UPDATE, DELETE rows of _private_jobs" in problems
    assert "no INSERT, UPDATE, DELETE on _private_jobs" in problems
    assert "no EXECUTE on functions" not in str(refused.value)  # PUBLIC keeps EXECUTE


def test_the_check_accepts_bypassrls_and_names_a_missing_execute(
    sync_connection: psycopg.Connection[Any], make_role: Callable[..., Role]
) -> None:
    def problems(url: str) -> tuple[str, ...]:
        with psycopg.connect(url, autocommit=True) as connection:
            check = check_worker_access("graphile_worker", cron=True, recovery=True)
            try:
                run_sync(check, PsycopgSyncExecutor(connection))
            except InsufficientPrivilegeError as error:
                return error.problems
        return ()

    bypassing = make_role("gw_bypass")
    sync_connection.execute(
        f"alter role {bypassing.name} bypassrls;"
        f"grant usage on schema graphile_worker to {bypassing.name};"
        f"grant all on all tables in schema graphile_worker to {bypassing.name};"
        f"grant all on all sequences in schema graphile_worker to {bypassing.name};".encode()
    )
    assert problems(bypassing.url) == ()

    granted = make_role()
    SyncWorkerUtils(sync_connection).grant(granted.name)
    assert problems(granted.url) == ()
    sync_connection.execute(
        f"revoke execute on function graphile_worker.add_jobs from public, {granted.name}".encode()
    )
    assert problems(granted.url) == ("no EXECUTE on functions add_jobs",)


# ---------------------------------------------------------------- idempotence, dry run


def test_granting_twice_changes_nothing_the_second_time(
    sync_connection: psycopg.Connection[Any], make_role: Callable[..., Role]
) -> None:
    role = make_role()
    utils = SyncWorkerUtils(sync_connection)
    first = utils.grant(role.name)
    after_first = acl_and_policies(sync_connection)
    second = utils.grant(role.name)
    assert acl_and_policies(sync_connection) == after_first
    assert sum("create policy" in statement for statement in first.statements) == 5
    assert not any("policy" in statement for statement in second.statements)
    assert policies_for(sync_connection, role.name) == dict.fromkeys(ROW_SECURED, "ALL")

    # Read-only afterwards takes nothing away; the reverse order widens the policies.
    utils.grant(role.name, read_only=True)
    assert acl_and_policies(sync_connection) == after_first
    reader = make_role("gw_reader")
    utils.grant(reader.name, read_only=True)
    widened = utils.grant(reader.name)
    assert sum(statement.startswith("drop policy") for statement in widened.statements) == 5
    assert policies_for(sync_connection, reader.name) == dict.fromkeys(ROW_SECURED, "ALL")


def test_a_dry_run_changes_nothing(
    sync_connection: psycopg.Connection[Any], make_role: Callable[..., Role]
) -> None:
    role = make_role()
    before = acl_and_policies(sync_connection)
    report = SyncWorkerUtils(sync_connection).grant(role.name, dry_run=True)
    assert not report.applied
    assert report.sql.startswith(f'grant usage on schema "graphile_worker" to "{role.name}";\n')
    assert report.statements == tuple(grant_statements("graphile_worker", role.name))
    assert acl_and_policies(sync_connection) == before


def test_grant_refuses_a_missing_role_or_schema_and_a_connection_that_is_not_the_owner(
    database_url: str, sync_connection: psycopg.Connection[Any], make_role: Callable[..., Role]
) -> None:
    utils = SyncWorkerUtils(sync_connection)
    with pytest.raises(ConfigurationError, match=r"role 'nobody_here' does not exist"):
        utils.grant("nobody_here")
    role = make_role()
    with pytest.raises(ConfigurationError, match="'graphile-worker migrate'"):
        SyncWorkerUtils(sync_connection, schema="not_installed").grant(role.name)

    before = acl_and_policies(sync_connection)
    with psycopg.connect(role.url, autocommit=True) as connection:
        as_role = SyncWorkerUtils(connection)
        with pytest.raises(InsufficientPrivilegeError, match="connect as the owner") as refused:
            as_role.grant(role.name)
        assert refused.value.role == role.name
        # A dry run is allowed: it prints what the owner has to run.
        assert as_role.grant(role.name, dry_run=True).statements
    assert acl_and_policies(sync_connection) == before


def test_a_custom_schema_is_granted_and_checked_on_its_own(
    sync_connection: psycopg.Connection[Any], make_role: Callable[..., Role]
) -> None:
    schema = "Team Jobs"
    migrate_sync(PsycopgSyncExecutor(sync_connection), schema=schema)
    role = make_role()
    SyncWorkerUtils(sync_connection, schema=schema).grant(role.name)
    policies = sync_connection.execute(
        "select count(*) from pg_policies where schemaname = %s and %s = any(roles)",
        (schema, role.name),
    ).fetchone()
    assert policies == (5,)
    assert policies_for(sync_connection, role.name) == {}  # the default schema is untouched


# --------------------------------------------------------------------------------- Node


@pytest.mark.node
@pytest.mark.usefixtures("interop_node")
def test_node_migrates_nothing_and_runs_jobs_after_grants_even_as_the_role(
    database_url: str, make_role: Callable[..., Role]
) -> None:
    from tests.interop.node import run_node_once
    from tests.interop.tables import create_tables, results
    from tests.migrations.catalog import catalog_snapshot, diff_catalogs

    role = make_role()
    with psycopg.connect(database_url, autocommit=True) as connection:
        create_tables(connection)
        connection.execute(
            f"grant insert on public.interop_results to {role.name};"
            f"grant usage on all sequences in schema public to {role.name};".encode()
        )
        utils = SyncWorkerUtils(connection)
        utils.grant(role.name)
        ledger = connection.execute("select * from graphile_worker.migrations").fetchall()
        catalog = catalog_snapshot(connection, "graphile_worker")
        by_owner = utils.add_job("record", {"by": "owner"})

        output = run_node_once(database_url, "graphile_worker")
        assert output.messages("warning", "error") == []
        assert connection.execute("select * from graphile_worker.migrations").fetchall() == ledger
        assert diff_catalogs(catalog, catalog_snapshot(connection, "graphile_worker")) == []

        by_role = utils.add_job("record", {"by": "role"})
        output = run_node_once(role.url, "graphile_worker")
        assert output.messages("warning", "error") == []
        ran = {row.job_id for row in results(connection, outcome="ran", side="node")}
        assert ran == {by_owner.id, by_role.id}
        assert job_rows(connection) == []
