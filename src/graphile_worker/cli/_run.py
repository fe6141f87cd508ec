"""``graphile-worker run``: run a worker until it is stopped, or until the queue is empty."""

from __future__ import annotations

import click

from ._common import (
    check_schema,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)
from ._tasks import load_registry, tasks_option

__all__ = ["run_command"]


@click.command("run", short_help="Run jobs until stopped, or until none are left (--once).")
@connection_option
@schema_option
@tasks_option
@click.option(
    "--once",
    is_flag=True,
    help="Run until there are no runnable jobs left, then exit.",
)
@click.option(
    "-j",
    "--jobs",
    "--concurrency",
    "concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of jobs to run concurrently.",
)
@click.option(
    "-m",
    "--max-pool-size",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Maximum size of the PostgreSQL connection pool.",
)
@click.option(
    "--poll-interval",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    metavar="MS",
    help="Milliseconds between polls for jobs, a fallback for LISTEN/NOTIFY "
    "(as in Node, milliseconds).",
)
@click.option(
    "--no-prepared-statements",
    is_flag=True,
    help="Disable prepared statements, e.g. behind PgBouncer in transaction mode.",
)
@driver_option
@click.option(
    "--runtime",
    type=click.Choice(("asyncio", "trio")),
    default="asyncio",
    show_default=True,
    help="Async runtime to run on; trio uses the threaded psycopg driver.",
)
def run_command(
    connection: str | None,
    schema: str,
    task_targets: tuple[str, ...],
    once: bool,
    concurrency: int,
    max_pool_size: int,
    poll_interval: int,
    no_prepared_statements: bool,
    driver: str,
    runtime: str,
) -> None:
    """Run jobs until stopped (SIGINT/SIGTERM), or with --once until none are runnable.

    Installs or upgrades the schema first. Tasks come from --tasks: each names a module
    (myapp.tasks, importable from the current directory), module:attribute or a .py file.
    Every task function (@task) and handler class (with an IDENTIFIER and run()) defined or
    imported there is used, or what the module's `tasks` attribute (or the named attribute)
    holds. Without --tasks, tasks.py or the tasks/ package in the current directory is
    used, as Node uses ./tasks. Jobs for other task names are left for other workers.

    On SIGINT or SIGTERM the worker stops taking jobs and lets running ones finish within a
    grace period; a second signal exits at once.
    """
    configure_logging("info")
    check_schema(schema)
    registry = load_registry(task_targets)
    from ..worker import Worker, WorkerOptions

    options = WorkerOptions(
        tasks=registry,
        database_url=connection,
        driver=driver,
        schema=schema,
        concurrency=concurrency,
        max_pool_size=max_pool_size,
        poll_interval=poll_interval / 1000,
        prepared_statements=not no_prepared_statements,
    )
    worker = Worker(options)
    if once:
        summary = run_async(worker.run_once, connection=connection, backend=runtime)
        click.echo(
            f"Ran {summary.total} job(s): {summary.completed} completed, {summary.failed} "
            f"failed ({summary.permanently_failed} permanently), {summary.interrupted} "
            "interrupted"
        )
    else:
        run_async(worker.run, connection=connection, backend=runtime)
