"""``graphile-worker jobs ...`` and ``force-unlock``: find, read and act on individual jobs.

Reads go through :meth:`WorkerUtils.list_jobs` and :meth:`~WorkerUtils.get_job`; changes
through Node's SQL functions (``complete_jobs``, ``permanently_fail_jobs``,
``reschedule_jobs``, ``remove_job``, ``force_unlock_workers``). Those functions leave alone
any job a worker has locked in the last four hours, so every changing command reports the
ids it did not touch and why, rather than pretending it did.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from ._common import (
    CliGroup,
    check_schema,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)
from ._output import (
    BadInput,
    age,
    iso,
    job_json,
    job_state,
    parse_duration,
    parse_moment,
    relative,
    table,
    with_utils,
)

if TYPE_CHECKING:
    from ..inspection import JobPage, LockHolder
    from ..spec import Job
    from ..utils import WorkerUtils

__all__ = ["force_unlock_command", "jobs_group"]

_ERROR_WIDTH = 60


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _short_error(text: str | None) -> str:
    if not text:
        return "-"
    first = text.strip().splitlines()[0] if text.strip() else "-"
    return first if len(first) <= _ERROR_WIDTH else first[: _ERROR_WIDTH - 3] + "..."


def _states(given: Sequence[str]) -> list[str]:
    from ..inspection import JobState

    allowed = [member.value for member in JobState]
    for name in given:
        if name.lower() not in allowed:
            raise BadInput(f"unknown job state {name!r}; choose from {', '.join(allowed)}")
    return [name.lower() for name in given]


def _job_ids(given: Iterable[int]) -> list[int]:
    """The ids in the order given, each once."""
    return list(dict.fromkeys(given))


@dataclass(frozen=True)
class _Selection:
    """Which jobs a changing command acts on: ids given, or the jobs a filter matches."""

    ids: tuple[int, ...]
    states: tuple[str, ...]
    task: str | None
    queue: str | None
    flags: tuple[str, ...]
    older_than: str | None
    newer_than: str | None
    yes: bool

    @property
    def filtered(self) -> bool:
        given = (self.task, self.queue, self.older_than, self.newer_than)
        return bool(self.states or self.flags) or any(value is not None for value in given)


def _selection_options(function: Callable[..., None]) -> Callable[..., None]:
    """ID... or the filters of `jobs list`, and --yes: what the changing commands select by."""
    options = [
        click.argument("job_ids", metavar="[ID]...", nargs=-1, type=click.IntRange(min=1)),
        click.option(
            "--state",
            "states",
            multiple=True,
            metavar="STATE",
            help="Instead of IDs: every job in this state (repeatable), as `jobs list`.",
        ),
        click.option("--task", metavar="TASK", help="Instead of IDs: jobs of this task."),
        click.option("--queue", metavar="QUEUE", help="Instead of IDs: jobs in this queue."),
        click.option(
            "--flag", "flags", multiple=True, metavar="FLAG", help="Instead of IDs: with this flag."
        ),
        click.option("--older-than", metavar="DURATION", help="Instead of IDs: created before."),
        click.option("--newer-than", metavar="DURATION", help="Instead of IDs: created within."),
        click.option(
            "--yes", is_flag=True, help="Do not ask before changing the jobs a filter selects."
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _selection(
    job_ids: tuple[int, ...],
    states: tuple[str, ...],
    task: str | None,
    queue: str | None,
    flags: tuple[str, ...],
    older_than: str | None,
    newer_than: str | None,
    yes: bool,
) -> _Selection:
    selection = _Selection(job_ids, states, task, queue, flags, older_than, newer_than, yes)
    if job_ids and selection.filtered:
        raise BadInput("give job IDs or filters (--state, --task, ...), not both")
    if not job_ids and not selection.filtered:
        raise BadInput("give the job IDs to change, or filters such as --state failed")
    return selection


def _interactive() -> bool:
    """Whether a person can answer a question (stdin and stdout are terminals)."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _resolve(
    selection: _Selection, verb: str, connection: str | None, schema: str, driver: str
) -> list[int]:
    """The ids to change: as given, or every job the filter matches, confirmed first."""
    if not selection.filtered:
        return _job_ids(selection.ids)
    states = _states(selection.states) if selection.states else None
    older = parse_duration("--older-than", selection.older_than) if selection.older_than else None
    newer = parse_duration("--newer-than", selection.newer_than) if selection.newer_than else None
    if not selection.yes and not _interactive():
        raise BadInput(
            f"{verb} every job a filter selects needs --yes when no one can be asked (stdin "
            "or stdout is not a terminal)"
        )

    async def matching(utils: WorkerUtils) -> list[int]:
        return await utils.job_ids(
            state=states,
            task=selection.task,
            queue=selection.queue,
            flags=selection.flags or None,
            older_than=older,
            newer_than=newer,
        )

    ids = run_async(lambda: with_utils(connection, schema, driver, matching), connection=connection)
    if ids and not selection.yes:
        click.confirm(f"{verb} {len(ids)} job(s)?", abort=True, err=True)
    return ids


@click.group("jobs", cls=CliGroup, short_help="List, inspect, retry, cancel and remove jobs.")
def jobs_group() -> None:
    """Find jobs and act on them.

    Commands that change jobs never touch a job a worker holds (locked in the last four
    hours, as Node's SQL functions decide): they print the ids they skipped and why.
    """


@jobs_group.command("list", short_help="One page of jobs, newest first.")
@click.option(
    "--state",
    "states",
    multiple=True,
    metavar="STATE",
    help="ready, scheduled, locked, retrying or failed (repeatable: any of them matches).",
)
@click.option("--task", metavar="TASK", help="Only jobs of this task identifier.")
@click.option("--queue", metavar="QUEUE", help="Only jobs in this named queue.")
@click.option(
    "--flag", "flags", multiple=True, metavar="FLAG", help="Only jobs with this flag (repeatable)."
)
@click.option("--key", metavar="KEY", help="Only the job with this job key.")
@click.option(
    "--older-than", metavar="DURATION", help="Only jobs created longer ago than this (5m, 2h)."
)
@click.option("--newer-than", metavar="DURATION", help="Only jobs created within this (30s, 1d).")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="Jobs per page.",
)
@click.option(
    "--after",
    type=click.IntRange(min=1),
    metavar="ID",
    help="Continue below this job id (the previous page's 'more: --after N').",
)
@click.option("--json", "as_json", is_flag=True, help='One JSON object: {"jobs", "next_after"}.')
@connection_option
@schema_option
@driver_option
def list_command(
    states: tuple[str, ...],
    task: str | None,
    queue: str | None,
    flags: tuple[str, ...],
    key: str | None,
    older_than: str | None,
    newer_than: str | None,
    limit: int,
    after: int | None,
    as_json: bool,
    connection: str | None,
    schema: str,
    driver: str,
) -> None:
    """List jobs, newest (highest id) first, one page at a time; filters combine with "and".

    RUN AT is relative to this machine's clock. A retrying job is also ready or scheduled,
    and is shown as such.
    """
    configure_logging("warning")
    check_schema(schema)
    chosen_states = _states(states) if states else None
    older = parse_duration("--older-than", older_than) if older_than is not None else None
    newer = parse_duration("--newer-than", newer_than) if newer_than is not None else None

    async def read(utils: WorkerUtils) -> JobPage:
        return await utils.list_jobs(
            state=chosen_states,
            task=task,
            queue=queue,
            flags=flags or None,
            key=key,
            older_than=older,
            newer_than=newer,
            limit=limit,
            after=after,
        )

    page = run_async(lambda: with_utils(connection, schema, driver, read), connection=connection)
    now = _now()
    if as_json:
        document = {
            "jobs": [job_json(job, now) for job in page.jobs],
            "next_after": page.next_after,
        }
        click.echo(json.dumps(document))
        return
    if not page.jobs:
        click.echo("No jobs match.")
        return
    header = ("ID", "TASK", "QUEUE", "STATE", "ATTEMPTS", "RUN AT", "LAST ERROR")
    rows = [
        (
            str(job.id),
            job.task_identifier,
            job.queue_name or "-",
            job_state(job, now),
            f"{job.attempts}/{job.max_attempts}",
            relative(job.run_at, now),
            _short_error(job.last_error),
        )
        for job in page.jobs
    ]
    for line in table(header, rows):
        click.echo(line)
    if page.next_after is not None:
        click.echo(f"more: --after {page.next_after}")


def _show_lines(job: Job, now: datetime) -> list[str]:
    from .._json import UndecodableJson

    facts = [
        ("task", job.task_identifier),
        ("queue", job.queue_name or "-"),
        ("state", job_state(job, now)),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("priority", str(job.priority)),
        ("key", job.key or "-"),
        ("flags", ", ".join(sorted(job.flags)) or "-"),
        ("locked by", job.locked_by or "-"),
        ("revision", str(job.revision)),
    ]
    lines = [f"Job {job.id}"]
    lines += [f"  {name + ':':<12}{value}" for name, value in facts]
    lines.append("Timeline")
    for name, moment in (
        ("created_at", job.created_at),
        ("updated_at", job.updated_at),
        ("run_at", job.run_at),
        ("locked_at", job.locked_at),
    ):
        when = "-" if moment is None else f"{moment.isoformat()} ({relative(moment, now)})"
        lines.append(f"  {name + ':':<12}{when}")
    lines.append("Payload")
    if isinstance(job.payload, UndecodableJson):
        payload = f"(undecodable: {job.payload.reason})"
    else:
        payload = json.dumps(job.payload, indent=2, sort_keys=True, ensure_ascii=False)
    lines += ["  " + line for line in payload.splitlines()]
    lines.append("Last error")
    lines += ["  " + line for line in (job.last_error or "-").splitlines()]
    return lines


@jobs_group.command("show", short_help="Every field of one job.")
@click.argument("job_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help='One JSON object: {"job"}.')
@connection_option
@schema_option
@driver_option
def show_command(
    job_id: int, as_json: bool, connection: str | None, schema: str, driver: str
) -> None:
    """Show one job: payload (pretty JSON), the whole last error, attempts and timeline.

    A job that completed successfully is deleted, so it is no longer found.
    """
    configure_logging("warning")
    check_schema(schema)

    async def read(utils: WorkerUtils) -> Job | None:
        return await utils.get_job(job_id)

    job = run_async(lambda: with_utils(connection, schema, driver, read), connection=connection)
    if job is None:
        raise click.ClickException(
            f"no job {job_id} in schema {schema!r}; it may have completed (completed jobs "
            "are deleted) or been removed"
        )
    now = _now()
    if as_json:
        click.echo(json.dumps({"job": job_json(job, now)}))
        return
    for line in _show_lines(job, now):
        click.echo(line)


@dataclass(frozen=True)
class _Outcome:
    """What a changing command did: the jobs it changed and the ids it left alone, with why."""

    action: str
    jobs: list[Job]
    skipped: list[tuple[int, str, str | None]]


async def _skipped(
    utils: WorkerUtils, requested: list[int], touched: Iterable[Job]
) -> list[tuple[int, str, str | None]]:
    """``(id, reason, locked_by)`` for each requested id the SQL function left alone."""
    done = {job.id for job in touched}
    result: list[tuple[int, str, str | None]] = []
    for job_id in requested:
        if job_id in done:
            continue
        job = await utils.get_job(job_id)
        if job is None:
            result.append((job_id, "not_found", None))
        else:
            result.append((job_id, "locked", job.locked_by))
    return result


def _print_outcome(outcome: _Outcome, verb: str, as_json: bool) -> None:
    now = _now()
    if as_json:
        document = {
            "action": outcome.action,
            "touched": [job.id for job in outcome.jobs],
            "skipped": [
                {"id": job_id, "reason": reason, "locked_by": locked_by}
                for job_id, reason, locked_by in outcome.skipped
            ],
            "jobs": [job_json(job, now) for job in outcome.jobs],
        }
        click.echo(json.dumps(document))
        return
    ids = ", ".join(str(job.id) for job in outcome.jobs)
    click.echo(f"{verb} {len(outcome.jobs)} job(s)" + (f": {ids}" if ids else "."))
    for job_id, reason, locked_by in outcome.skipped:
        if reason == "not_found":
            click.echo(f"Skipped job {job_id}: not found (completed or removed).")
        else:
            click.echo(
                f"Skipped job {job_id}: locked by {locked_by or 'a worker'}; jobs a worker "
                "holds are never changed (wait for it, or force-unlock a dead worker)."
            )


def _run_change(
    connection: str | None,
    schema: str,
    driver: str,
    action: str,
    requested: list[int],
    change: Callable[[WorkerUtils], Awaitable[list[Job]]],
) -> _Outcome:
    async def act(utils: WorkerUtils) -> _Outcome:
        jobs = await change(utils)
        return _Outcome(action, jobs, await _skipped(utils, requested, jobs))

    return run_async(lambda: with_utils(connection, schema, driver, act), connection=connection)


_json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object: {"action", "touched", "skipped", "jobs"}.',
)


@jobs_group.command("retry", short_help="Run jobs again now, with their attempts reset.")
@_selection_options
@click.option("--failed", is_flag=True, help="Instead of IDs: the failed jobs (--state failed).")
@_json_option
@connection_option
@schema_option
@driver_option
def retry_command(
    failed: bool, as_json: bool, connection: str | None, schema: str, driver: str, **selected: Any
) -> None:
    """Make jobs due now with attempts reset to 0, failed ones included: the IDs given, or
    every job the filters select (`jobs retry --failed --task send_email`).

    Their max attempts, priority, payload and last error stay as they are.
    """
    configure_logging("warning")
    check_schema(schema)
    if failed:
        selected["states"] = (*selected["states"], "failed")
    requested = _resolve(_selection(**selected), "Retry", connection, schema, driver)
    run_at = _now()

    async def change(utils: WorkerUtils) -> list[Job]:
        return await utils.reschedule_jobs(requested, run_at=run_at, attempts=0)

    outcome = _run_change(connection, schema, driver, "retry", requested, change)
    _print_outcome(outcome, "Retrying", as_json)


@jobs_group.command("cancel", short_help="Fail jobs for good: no worker runs them again.")
@_selection_options
@click.option(
    "--reason", metavar="TEXT", help="Recorded as the last error (default: Node's message)."
)
@_json_option
@connection_option
@schema_option
@driver_option
def cancel_command(
    reason: str | None,
    as_json: bool,
    connection: str | None,
    schema: str,
    driver: str,
    **selected: Any,
) -> None:
    """Permanently fail jobs (attempts = max attempts): the IDs given, or every job the
    filters select. They stay in the table, as failed.

    `jobs retry` brings one back; `cleanup DELETE_PERMAFAILED_JOBS` deletes them.
    """
    configure_logging("warning")
    check_schema(schema)
    requested = _resolve(_selection(**selected), "Cancel", connection, schema, driver)

    async def change(utils: WorkerUtils) -> list[Job]:
        return await utils.permanently_fail_jobs(requested, reason=reason)

    outcome = _run_change(connection, schema, driver, "cancel", requested, change)
    _print_outcome(outcome, "Cancelled", as_json)


@jobs_group.command("complete", short_help="Mark jobs done (deleted) without running them.")
@_selection_options
@_json_option
@connection_option
@schema_option
@driver_option
def complete_command(
    as_json: bool, connection: str | None, schema: str, driver: str, **selected: Any
) -> None:
    """Delete jobs as if they had succeeded: the IDs given, or every job the filters select."""
    configure_logging("warning")
    check_schema(schema)
    requested = _resolve(_selection(**selected), "Complete", connection, schema, driver)

    async def change(utils: WorkerUtils) -> list[Job]:
        return await utils.complete_jobs(requested)

    outcome = _run_change(connection, schema, driver, "complete", requested, change)
    _print_outcome(outcome, "Completed", as_json)


@jobs_group.command("reschedule", short_help="Change when jobs run, their priority or budget.")
@_selection_options
@click.option("--run-at", metavar="ISO", help="Run at this ISO 8601 time (UTC without offset).")
@click.option("--in", "run_in", metavar="DURATION", help="Run this long from now (5m, 2h, 1d).")
@click.option("--priority", type=int, help="New priority (lower runs first).")
@click.option("--max-attempts", type=click.IntRange(min=1), help="New attempt budget.")
@_json_option
@connection_option
@schema_option
@driver_option
def reschedule_command(
    run_at: str | None,
    run_in: str | None,
    priority: int | None,
    max_attempts: int | None,
    as_json: bool,
    connection: str | None,
    schema: str,
    driver: str,
    **selected: Any,
) -> None:
    """Change the run time, priority or max attempts of jobs (the IDs given, or every job
    the filters select); what is not given stays."""
    configure_logging("warning")
    check_schema(schema)
    if run_at is not None and run_in is not None:
        raise BadInput("give --run-at or --in, not both")
    if run_at is None and run_in is None and priority is None and max_attempts is None:
        raise BadInput("nothing to change: give --run-at, --in, --priority or --max-attempts")
    moment: datetime | None = None
    if run_at is not None:
        moment = parse_moment("--run-at", run_at)
    elif run_in is not None:
        moment = _now() + parse_duration("--in", run_in)
    requested = _resolve(_selection(**selected), "Reschedule", connection, schema, driver)

    async def change(utils: WorkerUtils) -> list[Job]:
        return await utils.reschedule_jobs(
            requested, run_at=moment, priority=priority, max_attempts=max_attempts
        )

    outcome = _run_change(connection, schema, driver, "reschedule", requested, change)
    _print_outcome(outcome, "Rescheduled", as_json)


@jobs_group.command("remove", short_help="Delete the job with a job key.")
@click.option("--key", required=True, metavar="KEY", help="The job key.")
@click.option("--json", "as_json", is_flag=True, help='One JSON object: {"removed", "job"}.')
@connection_option
@schema_option
@driver_option
def remove_command(
    key: str, as_json: bool, connection: str | None, schema: str, driver: str
) -> None:
    """Delete the job with this key; a job running now cannot be deleted.

    A running job instead loses its key and will not be retried when this attempt ends
    (Node's remove_job). No job with the key is an error (exit status 1).
    """
    configure_logging("warning")
    check_schema(schema)

    async def change(utils: WorkerUtils) -> Job | None:
        return await utils.remove_job(key)

    job = run_async(lambda: with_utils(connection, schema, driver, change), connection=connection)
    if job is None:
        raise click.ClickException(f"no job with key {key!r} in schema {schema!r}")
    removed = job.locked_at is None
    if as_json:
        click.echo(json.dumps({"removed": removed, "job": job_json(job, _now())}))
        return
    if removed:
        click.echo(f"Removed job {job.id} ({job.task_identifier}).")
    else:
        click.echo(
            f"Job {job.id} ({job.task_identifier}) is running (locked by {job.locked_by}): "
            "not deleted; it lost its key and will not be retried."
        )


def _holders_text(holder: LockHolder) -> str:
    return f"{holder.locked_jobs} job(s) and {holder.locked_queues} queue(s)"


@click.command("force-unlock", short_help="Release the jobs and queues of dead workers.")
@click.argument("worker_ids", metavar="WORKER_ID...", nargs=-1, required=True)
@click.option(
    "--force",
    is_flag=True,
    help="Unlock even a worker whose heartbeat is fresh (its jobs may then run twice).",
)
@click.option(
    "--json", "as_json", is_flag=True, help='One JSON object: {"workers": [...]} (see README).'
)
@connection_option
@schema_option
@driver_option
def force_unlock_command(
    worker_ids: tuple[str, ...],
    force: bool,
    as_json: bool,
    connection: str | None,
    schema: str,
    driver: str,
) -> None:
    """Unlock every job and named queue held by these workers, which must be dead.

    Their jobs become available again at once (attempts are not refunded). A registered
    worker with a fresh heartbeat is refused unless --force: if it is in fact running, its
    jobs would run twice. `graphile-worker sweep` is the safer tool for our own workers.
    """
    configure_logging("warning")
    check_schema(schema)
    chosen = list(dict.fromkeys(worker_ids))

    async def unlock(utils: WorkerUtils) -> dict[str, LockHolder]:
        held = {holder.worker_id: holder for holder in await utils.lock_holders()}
        alive = [name for name in chosen if name in held and held[name].alive]
        if alive and not force:
            raise click.ClickException(
                f"worker {alive[0]!r} has a fresh heartbeat; unlocking a live worker lets its "
                "jobs run twice: stop it first, or pass --force"
            )
        await utils.force_unlock_workers(chosen)
        return held

    held = run_async(lambda: with_utils(connection, schema, driver, unlock), connection=connection)
    if as_json:
        workers = [
            {
                "worker_id": name,
                "released_jobs": held[name].locked_jobs if name in held else 0,
                "released_queues": held[name].locked_queues if name in held else 0,
                "oldest_lock_at": iso(held[name].oldest_lock_at) if name in held else None,
            }
            for name in chosen
        ]
        click.echo(json.dumps({"workers": workers}))
        return
    now = _now()
    for name in chosen:
        holder = held.get(name)
        if holder is None:
            click.echo(f"Worker {name}: held nothing.")
        else:
            since = age(now - holder.oldest_lock_at)
            click.echo(f"Worker {name}: released {_holders_text(holder)} (held up to {since}).")
