"""``graphile-worker cleanup``: Node's three housekeeping tasks over ``WorkerUtils.cleanup``."""

from __future__ import annotations

import click

from ..spec import CleanupTask
from ._common import (
    check_schema,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)
from ._tasks import load_registry

__all__ = ["cleanup_command"]

_WHAT = {
    CleanupTask.DELETE_PERMAFAILED_JOBS: ("permanently failed job", "permanently failed jobs"),
    CleanupTask.GC_TASK_IDENTIFIERS: ("unused task identifier", "unused task identifiers"),
    CleanupTask.GC_JOB_QUEUES: ("unused job queue", "unused job queues"),
}


def _task_names(arguments: tuple[str, ...]) -> list[str] | None:
    """Node's CLI takes a comma-separated list; accept that, separate words, and any case."""
    names = [part.strip().upper() for argument in arguments for part in argument.split(",")]
    names = [name for name in names if name]
    return names or None


async def _cleanup(
    connection: str | None,
    schema: str,
    driver: str,
    tasks: list[str] | None,
    keep: list[str] | None,
) -> dict[CleanupTask, int]:
    from ..drivers import create_driver
    from ..utils import WorkerUtils

    # A few statements, each run once: not prepared, so that they also work through
    # PgBouncer in transaction mode.
    async with create_driver(
        connection, driver=driver, max_size=1, prepared_statements=False
    ) as database:
        utils = WorkerUtils(database, schema=schema)
        return await utils.cleanup(tasks=tasks, task_identifiers_to_keep=keep)


@click.command("cleanup", short_help="Delete unused task names and queues, or failed jobs.")
@click.argument("cleanup_tasks", nargs=-1, metavar="[TASK]...")
@click.option(
    "--keep",
    multiple=True,
    metavar="IDENTIFIER",
    help="A task identifier GC_TASK_IDENTIFIERS must keep even without jobs (repeatable).",
)
@click.option(
    "--tasks",
    "task_targets",
    multiple=True,
    metavar="MODULE_OR_FILE",
    help="Also keep the identifiers of the tasks defined there (as Node keeps those of "
    "its task directory); repeatable.",
)
@connection_option
@schema_option
@driver_option
def cleanup_command(
    cleanup_tasks: tuple[str, ...],
    keep: tuple[str, ...],
    task_targets: tuple[str, ...],
    connection: str | None,
    schema: str,
    driver: str,
) -> None:
    """Run housekeeping TASKs, then exit; Node's names, comma- or space-separated.

    \b
    GC_TASK_IDENTIFIERS      forget task identifiers no job refers to (--keep, --tasks
                             name ones to keep)
    GC_JOB_QUEUES            forget named queues no job refers to
    DELETE_PERMAFAILED_JOBS  delete jobs that used all their attempts

    Without TASKs it runs GC_JOB_QUEUES, plus GC_TASK_IDENTIFIERS when --keep or --tasks is
    given (WorkerUtils.cleanup's defaults). Prints how many rows each task deleted.
    """
    configure_logging("warning")
    check_schema(schema)
    names = _task_names(cleanup_tasks)
    keep_list: list[str] | None = list(keep) if keep else None
    if task_targets:
        registry = load_registry(task_targets)
        keep_list = sorted({*(keep_list or ()), *registry.identifiers})
    deleted = run_async(
        lambda: _cleanup(connection, schema, driver, names, keep_list), connection=connection
    )
    for task, count in deleted.items():
        singular, plural = _WHAT[task]
        click.echo(f"{task.value}: deleted {count} {singular if count == 1 else plural}")
