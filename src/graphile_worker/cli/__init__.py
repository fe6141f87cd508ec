"""The ``graphile-worker`` command line: ``run``, ``migrate``, ``add``, ``cleanup``, ``cron``,
``demo``, and for operations ``jobs``, ``stats``, ``queues``, ``workers``, ``sweep``,
``force-unlock`` and ``admin`` (the web app).

``main`` is the click group behind the console script (and ``python -m graphile_worker.cli``).
Each command lives in its own ``_``-prefixed module and imports the heavy parts of the
library (drivers, the worker, task modules) only when it runs, so ``--help`` stays fast.
Flags follow Node graphile-worker's CLI where the two overlap, so a Node user can read them.
"""

from __future__ import annotations

import click

from ._add import add_command
from ._admin import admin_command
from ._alembic import alembic_group
from ._cleanup import cleanup_command
from ._common import LOG_LEVELS, CliGroup
from ._cron import cron_group
from ._demo import demo_command
from ._grant import grant_command
from ._jobs import force_unlock_command, jobs_group
from ._logs import LOG_FORMATS
from ._migrate import migrate_command
from ._recovery import sweep_command, workers_command
from ._run import run_command
from ._stats import queues_command, stats_command

__all__ = ["main"]


@click.group(
    "graphile-worker",
    cls=CliGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    envvar="GRAPHILE_WORKER_LOG_LEVEL",
    show_envvar=True,
    help="Log records shown on stderr [default: info for run, error for demo, warning for "
    "the others].",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS, case_sensitive=False),
    default="text",
    envvar="GRAPHILE_WORKER_LOG_FORMAT",
    show_envvar=True,
    show_default=True,
    help="json: one JSON object per record, with the job's fields (job_id, task_identifier, "
    "queue_name, attempt, worker_id, duration_ms) on records about a job.",
)
@click.version_option(package_name="graphile-worker", prog_name="graphile-worker")
def main(log_level: str | None, log_format: str) -> None:
    """A PostgreSQL job queue, compatible with Node graphile-worker.

    Start with `graphile-worker demo`, which needs nothing but this package.
    """


main.add_command(run_command)
main.add_command(migrate_command)
main.add_command(grant_command)
main.add_command(add_command)
main.add_command(cleanup_command)
main.add_command(cron_group)
main.add_command(demo_command)
main.add_command(workers_command)
main.add_command(sweep_command)
main.add_command(jobs_group)
main.add_command(stats_command)
main.add_command(queues_command)
main.add_command(force_unlock_command)
main.add_command(admin_command)
main.add_command(alembic_group)
