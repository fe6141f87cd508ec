"""``graphile-worker stats`` and ``graphile-worker queues``: how big the backlog is, and where.

Each snapshot is one statement (see :meth:`WorkerUtils.stats` and
:meth:`~WorkerUtils.queues`), so its counts are consistent with each other. ``stats --watch``
keeps one connection open and takes a snapshot every interval.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import anyio
import click

from ._common import (
    check_schema,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)
from ._output import age, counts_json, iso, seconds, table, with_utils

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..inspection import JobCounts, QueueInfo, QueueStats
    from ..utils import WorkerUtils

__all__ = ["queues_command", "stats_command"]

_COUNT_HEADER = ("TOTAL", "READY", "SCHEDULED", "LOCKED", "RETRYING", "FAILED", "OLDEST READY")

# Home the cursor and clear the screen: each snapshot replaces the last on a terminal.
_REDRAW = "\x1b[H\x1b[2J"


def _count_cells(counts: JobCounts) -> tuple[str, ...]:
    oldest = "-" if counts.oldest_ready_age is None else age(counts.oldest_ready_age)
    return (
        str(counts.total),
        str(counts.ready),
        str(counts.scheduled),
        str(counts.locked),
        str(counts.retrying),
        str(counts.failed),
        oldest,
    )


def _stats_json(stats: QueueStats) -> dict[str, object]:
    return {
        "as_of": iso(stats.as_of),
        "total": counts_json(stats.total),
        "by_task": {name: counts_json(stats.by_task[name]) for name in sorted(stats.by_task)},
        "by_queue": {name: counts_json(stats.by_queue[name]) for name in sorted(stats.by_queue)},
    }


def _section(title: str, by_name: Mapping[str, JobCounts]) -> list[str]:
    if not by_name:
        return []
    rows = [(name, *_count_cells(by_name[name])) for name in sorted(by_name)]
    return ["", *table((title, *_COUNT_HEADER), rows)]


def _stats_lines(stats: QueueStats) -> list[str]:
    total = stats.total
    oldest = "none" if total.oldest_ready_age is None else age(total.oldest_ready_age)
    headline = (
        f"Jobs as of {stats.as_of.isoformat(timespec='seconds')}: {total.total} "
        f"(ready {total.ready}, scheduled {total.scheduled}, locked {total.locked}, "
        f"failed {total.failed}; {total.retrying} retrying); oldest ready: {oldest}"
    )
    lines = [headline]
    lines += _section("TASK", stats.by_task)
    lines += _section("QUEUE", stats.by_queue)
    return lines


@click.command("stats", short_help="Job counts per task and per queue, and the oldest wait.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object per snapshot: {"as_of", "total", "by_task", "by_queue"}.',
)
@click.option(
    "--watch",
    type=click.FloatRange(min=0.5),
    metavar="SECONDS",
    help="Take a snapshot every SECONDS until Ctrl-C (redrawn in place on a terminal).",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --watch: stop after N snapshots.",
)
@connection_option
@schema_option
@driver_option
def stats_command(
    as_json: bool,
    watch: float | None,
    count: int | None,
    connection: str | None,
    schema: str,
    driver: str,
) -> None:
    """Count jobs by state, in total, per task and per named queue.

    OLDEST READY is how long the longest-waiting due job has waited: if it keeps growing,
    workers are not keeping up (or the queue holding it is stuck; see `queues`). Counts
    read every job row once, which takes a moment on very large tables.
    """
    configure_logging("warning")
    check_schema(schema)
    if count is not None and watch is None:
        raise click.UsageError("--count needs --watch")
    interval = watch
    redraw = interval is not None and not as_json and sys.stdout.isatty()

    def show(stats: QueueStats, first: bool) -> None:
        if as_json:
            click.echo(json.dumps(_stats_json(stats)))
            return
        if redraw:
            click.echo(_REDRAW, nl=False)
        elif not first:
            click.echo("")
        for line in _stats_lines(stats):
            click.echo(line)

    async def observe(utils: WorkerUtils) -> None:
        taken = 0
        while True:
            show(await utils.stats(), taken == 0)
            taken += 1
            if interval is None or (count is not None and taken >= count):
                return
            await anyio.sleep(interval)

    try:
        run_async(lambda: with_utils(connection, schema, driver, observe), connection=connection)
    except KeyboardInterrupt:
        # Ctrl-C is how --watch is meant to end: no traceback, a clean status.
        return


def _queue_json(queue: QueueInfo) -> dict[str, object]:
    return {
        "name": queue.name,
        "locked_by": queue.locked_by,
        "locked_at": iso(queue.locked_at),
        "lock_age_seconds": seconds(queue.lock_age),
        "jobs": counts_json(queue.jobs),
    }


@click.command("queues", short_help="Named queues: who holds each, and what is in it.")
@click.option("--json", "as_json", is_flag=True, help='One JSON object: {"as_of", "queues"}.')
@connection_option
@schema_option
@driver_option
def queues_command(as_json: bool, connection: str | None, schema: str, driver: str) -> None:
    """List every named queue with its lock holder, how long it has held it, and job counts.

    A named queue runs one job at a time. A queue locked for long, with ready jobs waiting,
    is stuck: check its holder with `workers`, then `sweep` or `force-unlock` a dead one.
    """
    configure_logging("warning")
    check_schema(schema)

    async def read(utils: WorkerUtils) -> list[QueueInfo]:
        return await utils.queues()

    queues = run_async(lambda: with_utils(connection, schema, driver, read), connection=connection)
    if as_json:
        as_of = iso(queues[0].as_of) if queues else None
        click.echo(json.dumps({"as_of": as_of, "queues": [_queue_json(q) for q in queues]}))
        return
    if not queues:
        click.echo("No named queues.")
        return
    header = ("QUEUE", "LOCKED BY", "LOCK AGE", *_COUNT_HEADER)
    rows = [
        (
            queue.name,
            queue.locked_by or "-",
            "-" if queue.lock_age is None else age(queue.lock_age),
            *_count_cells(queue.jobs),
        )
        for queue in queues
    ]
    for line in table(header, rows):
        click.echo(line)
