"""``graphile-worker grant ROLE``: let a role that does not own the schema run workers, or read."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..sql.grants import check_role_name
from ._common import (
    check_schema,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)

if TYPE_CHECKING:
    from ..sql.grants import GrantReport

__all__ = ["grant_command"]


async def _grant(
    connection: str | None,
    schema: str,
    driver: str,
    role: str,
    *,
    read_only: bool,
    dry_run: bool,
) -> GrantReport:
    from ..drivers import create_driver
    from ..utils import WorkerUtils

    # One connection, statements run once: as for migrate, nothing to gain from a pool or
    # from preparing, and unprepared statements work through PgBouncer too.
    async with create_driver(
        connection, driver=driver, min_size=1, max_size=1, prepared_statements=False
    ) as database:
        utils = WorkerUtils(database, schema=schema)
        return await utils.grant(role, read_only=read_only, dry_run=dry_run)


def _header(report: GrantReport) -> str:
    what = "read-only access" if report.read_only else "worker access"
    return f"-- graphile-worker grant: {what} for role {report.role!r} on schema {report.schema!r}"


@click.command("grant", short_help="Let a role that does not own the schema run workers.")
@click.argument("role")
@connection_option
@schema_option
@driver_option
@click.option(
    "--read-only",
    is_flag=True,
    help="Only what a dashboard or monitoring needs: read every table, add no jobs.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the SQL instead of running it; changes nothing.",
)
def grant_command(
    role: str, connection: str | None, schema: str, driver: str, read_only: bool, dry_run: bool
) -> None:
    """Grant ROLE what a worker needs in the schema, with row-level security policies.

    Node's migrations turn row-level security on for the job tables and add no policy, so
    a role that does not own them sees no job, however many grants it holds: a worker
    would run nothing. This grants the tables, sequences and functions a worker and
    WorkerUtils use, and adds one policy per table for ROLE alone. Node's workers and
    migrations, which run as the owner, are unaffected.

    Run it as the schema's owner (the role that migrated) or a superuser, after
    `graphile-worker migrate`; again after an upgrade that adds tables. Running it twice
    is harmless, and it never takes anything away. --dry-run prints the statements, for
    applying them through your own migrations.
    """
    configure_logging("warning")
    check_schema(schema)
    check_role_name(role)
    report = run_async(
        lambda: _grant(connection, schema, driver, role, read_only=read_only, dry_run=dry_run),
        connection=connection,
    )
    if dry_run:
        click.echo(_header(report))
        click.echo(report.sql, nl=False)
        return
    what = "read-only access" if read_only else "worker access"
    click.echo(
        f"Granted {what} on schema {schema!r} to role {role!r} "
        f"({len(report.statements)} statements)"
    )
