"""``graphile-worker cron``: check a crontab before deploying it, and see what has run.

* ``cron check FILE`` parses the file as a worker would and prints each entry in canonical
  form with its options and next run times, or every problem with its line and column
  (exit status 1). It needs no database, so it fits a pre-commit hook or a CI step.
* ``cron list`` reads ``_private_known_crontabs``: every identifier any scheduler (Node's
  or ours) has registered, when it was first seen and the last minute it was scheduled for.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import CrontabError
from ._common import (
    check_schema,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)
from ._output import with_utils

if TYPE_CHECKING:
    from ..crontab import CronItem
    from ..inspection import KnownCrontab
    from ..utils import WorkerUtils

__all__ = ["DEFAULT_CRONTAB", "cron_group", "default_crontab", "describe_item", "format_minute"]

_logger = logging.getLogger("graphile_worker.cli")

DEFAULT_CRONTAB = "crontab"
"""Node's default ``crontabFile``: a file named ``crontab`` in the working directory."""


def default_crontab() -> Path | None:
    """``./crontab`` if it exists, as Node's CLI uses it; else ``None`` (no cron).

    Using the file is logged (info), so that a worker scheduling jobs nobody asked it to
    says why; its absence only at debug level, as most workers have no crontab.
    """
    path = Path(DEFAULT_CRONTAB)
    if path.is_file():
        _logger.info("Using the crontab file %s (pass --crontab to use another)", path.resolve())
        return path
    _logger.debug("No ./crontab file and no --crontab given; this worker schedules no cron jobs")
    return None


def format_minute(moment: datetime) -> str:
    """A UTC minute as ``2030-01-31 04:00``: what a person compares with a crontab line."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _parse_after(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time; use e.g. 2030-01-31T09:30:00Z", param_hint="--after"
        ) from None
    if moment.utcoffset() is None:
        raise click.BadParameter(
            f"{text!r} has no time zone; append Z for UTC", param_hint="--after"
        )
    return moment


def describe_item(item: CronItem, after: datetime, count: int) -> list[str]:
    """The lines ``cron check`` prints for one entry."""
    from ..crontab._fields import format_time_phrase

    where = f" (line {item.line})" if item.line is not None else ""
    details = [f"task {item.task_identifier}"]
    if item.backfill_period:
        details.append(f"backfill up to {format_time_phrase(item.backfill_period)}")
    if item.queue_name is not None:
        details.append(f"queue {item.queue_name}")
    if item.priority is not None:
        details.append(f"priority {item.priority}")
    if item.max_attempts is not None:
        details.append(f"max attempts {item.max_attempts}")
    if item.job_key is not None:
        mode = item.job_key_mode.value if item.job_key_mode is not None else "replace"
        details.append(f"job key {item.job_key!r} ({mode})")
    runs = item.next_runs(after, count)
    upcoming = ", ".join(format_minute(run) for run in runs) if runs else "never"
    return [
        f"{item.identifier}{where}",
        f"  {item.to_line()}",
        f"  {'; '.join(details)}",
        f"  next (UTC): {upcoming}",
    ]


@click.group("cron", short_help="Check a crontab file; list known cron entries.")
def cron_group() -> None:
    """Crontab tools: `check` a file before deploying it, `list` what has been scheduled."""


@cron_group.command("check", short_help="Parse a crontab; show each entry's next runs.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option(
    "--after",
    metavar="TIME",
    default=None,
    help="Show runs after this ISO 8601 time (with a zone, e.g. 2030-01-31T09:30:00Z) "
    "instead of after now.",
)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=1, max=100),
    default=5,
    show_default=True,
    help="Next runs to show per entry.",
)
def check_command(file: Path, after: str | None, count: int) -> None:
    """Parse FILE as a worker would and print every entry with its next runs (UTC).

    Exits with status 1 and one line per problem (line and column) when any line is
    invalid; nothing is scheduled from a crontab with a bad line, so fix them all.
    """
    from ..crontab import load_crontab

    start = _parse_after(after)
    try:
        items = load_crontab(file)
    except CrontabError as error:
        problems = error.errors
        raise click.ClickException(
            f"{file}: {len(problems)} problem{'s' if len(problems) != 1 else ''}\n{error}"
        ) from error
    if not items:
        click.echo(f"{file}: no entries (only comments or blank lines); nothing is scheduled")
        return
    click.echo(f"{file}: {len(items)} entr{'y' if len(items) == 1 else 'ies'}, all valid")
    for item in items:
        click.echo("")
        for line in describe_item(item, start, count):
            click.echo(line)


async def _known(connection: str | None, schema: str, driver: str) -> list[KnownCrontab]:
    async def read(utils: WorkerUtils) -> list[KnownCrontab]:
        return await utils.known_crontabs()

    return await with_utils(connection, schema, driver, read)


@cron_group.command("list", short_help="Known cron identifiers and their last runs.")
@connection_option
@schema_option
@driver_option
def list_command(connection: str | None, schema: str, driver: str) -> None:
    """List every cron identifier the database knows, with its last scheduled minute.

    Schedulers (Node's or ours) register each identifier the first time they run it; the
    last run is the minute of the latest job any of them scheduled for it, which is where
    a backfill would resume. Times are UTC.
    """
    configure_logging("warning")
    check_schema(schema)
    known = run_async(lambda: _known(connection, schema, driver), connection=connection)
    if not known:
        click.echo(f"No cron entries are known in schema {schema!r} yet.")
        return
    width = max(len("IDENTIFIER"), *(len(entry.identifier) for entry in known))
    click.echo(f"{'IDENTIFIER':<{width}}  {'LAST RUN':<16}  KNOWN SINCE")
    for entry in known:
        last = "never" if entry.last_execution is None else format_minute(entry.last_execution)
        since = entry.known_since.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{entry.identifier:<{width}}  {last:<16}  {since}")
