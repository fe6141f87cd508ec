"""``graphile-worker migrate``: install or upgrade the schema, then exit (Node's ``--schema-only``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..migrations import MigrationReport
from ._common import (
    check_schema,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)

if TYPE_CHECKING:
    from ..migrations import MigrationStatus

__all__ = ["migrate_command"]


async def _migrate(connection: str | None, schema: str, driver: str) -> MigrationReport:
    from ..drivers import create_driver
    from ..migrations import migrate

    # The migrator holds one connection at a time; a bigger pool would only cost connections.
    # Each statement runs once, so preparing gains nothing, and unprepared statements work
    # through PgBouncer in transaction mode too.
    async with create_driver(
        connection, driver=driver, min_size=1, max_size=1, prepared_statements=False
    ) as database:
        return await migrate(database, schema=schema)


async def _status(connection: str | None, schema: str, driver: str) -> MigrationStatus:
    from ..drivers import create_driver
    from ..migrations import migration_status

    async with create_driver(
        connection, driver=driver, min_size=1, max_size=1, prepared_statements=False
    ) as database:
        return await migration_status(database, schema=schema)


def describe(report: MigrationReport) -> str:
    """One line saying where the schema was, where it is now and what changed."""
    before = "none" if report.previous_version is None else str(report.previous_version)
    after = "none" if report.current_version is None else str(report.current_version)
    if report.applied:
        count = len(report.applied)
        what = f"applied {count} migration{'s' if count != 1 else ''}"
    elif report.extensions_applied:
        what = "applied graphile-worker for Python's own extension steps"
    else:
        what = "already up to date"
    return f"Schema {report.schema!r}: version {before} -> {after} ({what})"


@click.command("migrate", short_help="Install or upgrade the schema, then exit.")
@connection_option
@schema_option
@driver_option
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: exit 0 when the schema is up to date, 1 (saying how far behind "
    "it is) when it is not installed or needs migrating.",
)
def migrate_command(connection: str | None, schema: str, driver: str, check: bool) -> None:
    """Install or upgrade the database schema, then exit.

    The same as Node graphile-worker's `--schema-only`. Safe to run while workers are
    running and from several places at once: migrations take an advisory lock and run once.
    Prints the schema version before and after.

    With --check, only reads the schema's version (no lock, no DDL): a deploy script or a
    readiness probe can run it with the workers' own, unprivileged role.
    """
    configure_logging("warning")
    check_schema(schema)
    if check:
        status = run_async(lambda: _status(connection, schema, driver), connection=connection)
        if not status.up_to_date:
            raise click.ClickException(status.describe())
        click.echo(f"Schema {schema!r}: version {status.current_version} (up to date)")
        return
    report = run_async(lambda: _migrate(connection, schema, driver), connection=connection)
    click.echo(describe(report))
