"""``graphile-worker grant ROLE``: grants a runtime or read-only role, prints with --dry-run.

And the other side of it: ``run`` as a role that was never granted stops in one line that
names the command to run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.migrations import migrate_sync
from graphile_worker.sql.grants import quote_role

from .conftest import UNREACHABLE_URL, CliCall, assert_one_line_error


@pytest.fixture
def make_role(database_url: str) -> Iterator[Callable[[str], str]]:
    """Creates login roles unique to this test; drops them, and what they hold, afterwards."""
    created: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(f"create role {quote_role(name)} login password 'pw'".encode())
        created.append(name)
        return name

    yield make
    with psycopg.connect(database_url, autocommit=True) as connection:
        for name in created:
            connection.execute(f"drop owned by {quote_role(name)}".encode())
            connection.execute(f"drop role {quote_role(name)}".encode())


def granted(url: str, role: str, schema: str = "graphile_worker") -> dict[str, Any]:
    """What ``role`` holds on ``schema``: its policies' commands and two telling privileges."""
    with psycopg.connect(url) as connection:
        policies = connection.execute(
            "select tablename::text, cmd from pg_policies where schemaname = %s "
            "and %s = any(roles) order by 1",
            (schema, role),
        ).fetchall()
        row = connection.execute(
            "select has_schema_privilege(%(r)s, %(s)s, 'USAGE'), "
            "has_table_privilege(%(r)s, format('%%I._private_jobs', %(s)s::text), 'DELETE')",
            {"r": role, "s": schema},
        ).fetchone()
    assert row is not None
    return {"policies": dict(policies), "usage": row[0], "delete_jobs": row[1]}


NOTHING: dict[str, Any] = {"policies": {}, "usage": False, "delete_jobs": False}


def test_help_names_the_options(cli: CliCall) -> None:
    output = cli("grant", "--help").stdout
    assert output.startswith("Usage: graphile-worker grant [OPTIONS] ROLE")
    for flag in ("--read-only", "--dry-run", "-s, --schema", "-c, --connection"):
        assert flag in output
    assert "  grant " in cli("--help").stdout


def test_grants_once_and_again_with_quotes_and_spaces_in_the_name(
    cli: CliCall, database_url: str, make_role: Callable[[str], str]
) -> None:
    role = make_role('app "worker" o\'neil;')
    first = cli("grant", role, "-c", database_url)
    assert first.stdout.strip() == (
        f"Granted worker access on schema 'graphile_worker' to role {role!r} (16 statements)"
    )
    assert granted(database_url, role) == {
        "policies": {
            "_private_job_queues": "ALL",
            "_private_jobs": "ALL",
            "_private_known_crontabs": "ALL",
            "_private_tasks": "ALL",
            "_pyworker_workers": "ALL",
        },
        "usage": True,
        "delete_jobs": True,
    }
    # Twice is fine: the policies exist, so only the (idempotent) grants run again.
    second = cli("grant", role, env={"DATABASE_URL": database_url})
    assert "(11 statements)" in second.stdout
    assert granted(database_url, role)["policies"]["_private_jobs"] == "ALL"


def test_read_only_grants_select_policies_and_no_writes(
    cli: CliCall, database_url: str, make_role: Callable[[str], str]
) -> None:
    role = make_role("dashboard")
    result = cli("grant", role, "--read-only", "-c", database_url)
    assert result.stdout.startswith("Granted read-only access on schema 'graphile_worker'")
    state = granted(database_url, role)
    assert set(state["policies"].values()) == {"SELECT"}
    assert state["usage"] and not state["delete_jobs"]


def test_dry_run_prints_the_sql_and_changes_nothing(
    cli: CliCall, database_url: str, make_role: Callable[[str], str]
) -> None:
    role = make_role("app")
    result = cli("grant", role, "--dry-run", "-c", database_url)
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"-- graphile-worker grant: worker access for role {role!r} on schema 'graphile_worker'"
    )
    assert lines[1] == f'grant usage on schema "graphile_worker" to "{role}";'
    assert sum(line.startswith("create policy") for line in lines) == 5
    assert all(line.endswith(";") for line in lines[1:])
    assert granted(database_url, role) == NOTHING

    # The printed script is what a migration tool would run: applying it grants the same.
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(result.stdout.encode())
    assert granted(database_url, role)["policies"]["_private_jobs"] == "ALL"


def test_a_custom_schema(cli: CliCall, database_url: str, make_role: Callable[[str], str]) -> None:
    schema = "Team-Jobs"
    with psycopg.connect(database_url, autocommit=True) as connection:
        migrate_sync(PsycopgSyncExecutor(connection), schema=schema)
    role = make_role("team")
    cli("grant", role, "--schema", schema, "-c", database_url)
    assert granted(database_url, role, schema)["usage"]
    assert len(granted(database_url, role, schema)["policies"]) == 5
    assert granted(database_url, role) == NOTHING


def test_errors_are_one_line(
    cli: CliCall, database_url: str, make_role: Callable[[str], str]
) -> None:
    missing = cli("grant", "nobody_at_all", "-c", database_url, expect=1)
    assert_one_line_error(missing, "role 'nobody_at_all' does not exist")
    # A name PostgreSQL would cut short is refused before connecting anywhere.
    too_long = cli("grant", "r" * 64, "-c", UNREACHABLE_URL, expect=1)
    assert_one_line_error(too_long, "longer than 63 bytes")
    role = make_role("app")
    not_installed = cli("grant", role, "-s", "nowhere", "-c", database_url, expect=1)
    assert_one_line_error(not_installed, "schema 'nowhere' holds no graphile-worker tables")


def test_run_as_an_ungranted_role_names_the_command_to_run(
    cli: CliCall, database_url: str, make_role: Callable[[str], str], tmp_path: Path
) -> None:
    tasks = tmp_path / f"grant_tasks_{uuid.uuid4().hex[:8]}.py"
    tasks.write_text(
        "from graphile_worker.task import task\n\n\n"
        "@task('noop')\nasync def noop(payload: object) -> None:\n    pass\n"
    )
    role = make_role("runner")
    parts = urlsplit(database_url)
    role_url = urlunsplit(parts._replace(netloc=f"{quote(role)}:pw@{parts.hostname}:{parts.port}"))
    refused = cli("run", "--once", "--tasks", str(tasks), "-c", role_url, expect=1)
    assert_one_line_error(
        refused,
        f"role {role!r} cannot run the jobs in schema 'graphile_worker'",
        "row-level security hides every row of _private_jobs",
        f"run: graphile-worker grant {role}",
    )

    cli("grant", role, "-c", database_url)
    cli("run", "--once", "--tasks", str(tasks), "-c", role_url)
