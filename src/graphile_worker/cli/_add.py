"""``graphile-worker add``: queue one job from the shell, printing its id."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime

import click

from .._validate import (
    check_job_key,
    check_max_attempts,
    check_mode_has_key,
    check_priority,
    check_queue_name,
    check_task_identifier,
)
from ..errors import InvalidJobSpecError
from ..spec import JSON, JobKeyMode, JobSpec
from ._common import (
    check_schema,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)

__all__ = ["add_command", "check_options", "parse_payload", "parse_run_at"]

# Python 3.10's fromisoformat does not know the "Z" suffix that most tools print.
_ZULU = re.compile(r"[zZ]$")


def parse_payload(text: str | None) -> JSON:
    """Decode the PAYLOAD argument; ``-`` reads it from stdin, none means ``{}`` (as Node)."""
    if text is None:
        return {}
    if text == "-":
        text = sys.stdin.read()
    try:
        payload: JSON = json.loads(text)
    except ValueError as error:
        raise InvalidJobSpecError(
            f"PAYLOAD is not valid JSON ({error}): {text!r:.60}; quote it for the shell, "
            """e.g. '{"to": "someone@example.com"}'"""
        ) from None
    return payload


def parse_run_at(text: str | None) -> datetime | None:
    """Parse ``--run-at``: ISO 8601 with an explicit UTC offset or ``Z``.

    A time without a zone is refused rather than guessed: the shell's zone, the server's
    zone and UTC are all plausible readings, and a wrong guess shifts the job by hours.
    """
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(_ZULU.sub("+00:00", text.strip()))
    except ValueError:
        raise InvalidJobSpecError(
            f"--run-at {text!r} is not an ISO 8601 date and time; use e.g. "
            "'2030-01-31T09:30:00Z' or '2030-01-31T09:30:00+02:00'"
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJobSpecError(
            f"--run-at {text!r} has no time zone; append 'Z' for UTC or an offset such as '+02:00'"
        )
    return value


def check_options(
    task: str,
    queue_name: str | None,
    priority: int | None,
    max_attempts: int | None,
    job_key: str | None,
    job_key_mode: str | None,
) -> None:
    """Check the options the way JobSpec would, but name them as they were typed.

    JobSpec speaks Python (``queue_name must not be empty``); here the same rule says
    ``--queue must not be empty``.
    """
    error = InvalidJobSpecError
    if not task:
        raise error("TASK must not be empty; give the task identifier, e.g. send_email")
    check_task_identifier(task, error=error)
    if queue_name is not None:
        check_queue_name(queue_name, name="--queue", error=error)
    if priority is not None:
        check_priority(priority, name="--priority", error=error)
    if max_attempts is not None:
        check_max_attempts(max_attempts, name="--max-attempts", error=error)
    if job_key is not None:
        check_job_key(job_key, name="--job-key", error=error)
    if job_key_mode is not None:
        check_mode_has_key(
            job_key_mode, job_key, mode_name="--job-key-mode", key_name="--job-key", error=error
        )


async def _add(
    connection: str | None, schema: str, driver: str, task: str, payload: JSON, spec: JobSpec
) -> int:
    from ..drivers import create_driver
    from ..utils import WorkerUtils

    # One statement: not prepared, so that it also works through PgBouncer (transaction mode).
    async with create_driver(
        connection, driver=driver, max_size=1, prepared_statements=False
    ) as database:
        job = await WorkerUtils(database, schema=schema).add_job(task, payload, spec=spec)
    return job.id


@click.command("add", short_help="Queue a job and print its id.")
@click.argument("task")
@click.argument("payload", required=False)
@click.option(
    "--queue",
    "queue_name",
    metavar="NAME",
    help="Named queue: its jobs run one at a time, in order.",
)
@click.option(
    "--run-at",
    metavar="ISO8601",
    help="Earliest time to run, with a zone: '2030-01-31T09:30:00Z' or '...+02:00'.",
)
@click.option("--priority", type=int, help="Lower numbers run first (default 0).")
@click.option(
    "--max-attempts", type=int, help="Attempts before the job fails for good (default 25)."
)
@click.option(
    "--job-key", metavar="KEY", help="Unique key: adding the same key again updates that job."
)
@click.option(
    "--job-key-mode",
    type=click.Choice([mode.value for mode in JobKeyMode]),
    help="What a repeated --job-key does (default replace).",
)
@click.option(
    "--flag",
    "flags",
    multiple=True,
    metavar="FLAG",
    help="A flag workers can refuse with forbidden flags (repeatable).",
)
@connection_option
@schema_option
@driver_option
def add_command(
    task: str,
    payload: str | None,
    queue_name: str | None,
    run_at: str | None,
    priority: int | None,
    max_attempts: int | None,
    job_key: str | None,
    job_key_mode: str | None,
    flags: tuple[str, ...],
    connection: str | None,
    schema: str,
    driver: str,
) -> None:
    """Queue a job for TASK with the JSON PAYLOAD ('{}' when omitted, '-' reads stdin).

    Prints the new job's id on stdout, so scripts can capture it:

    \b
        JOB_ID=$(graphile-worker add send_email '{"to": "a@example.com"}')
    """
    configure_logging("warning")
    check_schema(schema)
    check_options(task, queue_name, priority, max_attempts, job_key, job_key_mode)
    decoded = parse_payload(payload)
    spec = JobSpec(
        queue_name=queue_name,
        run_at=parse_run_at(run_at),
        priority=priority,
        max_attempts=max_attempts,
        job_key=job_key,
        job_key_mode=JobKeyMode(job_key_mode) if job_key_mode else None,
        flags=flags or None,
    )
    job_id = run_async(
        lambda: _add(connection, schema, driver, task, decoded, spec), connection=connection
    )
    click.echo(job_id)
