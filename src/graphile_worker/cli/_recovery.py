"""``graphile-worker workers`` and ``graphile-worker sweep``: the registry, seen and swept.

Both run a statement or two and exit, so they open one connection without prepared
statements (they work through PgBouncer in transaction mode too).
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeVar

import click

from ._common import (
    check_schema,
    configure_logging,
    connection_option,
    driver_option,
    run_async,
    schema_option,
)
from ._output import table, with_utils

if TYPE_CHECKING:
    from ..inspection import LockHolder
    from ..recovery import SweepReport, WorkerInfo
    from ..utils import WorkerUtils

__all__ = ["sweep_command", "workers_command"]

T = TypeVar("T")


def _age(now: datetime, then: datetime) -> str:
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _worker_json(info: WorkerInfo) -> dict[str, object]:
    return {
        "worker_id": info.worker_id,
        "hostname": info.hostname,
        "pid": info.pid,
        "library_version": info.library_version,
        "started_at": info.started_at.isoformat(),
        "last_heartbeat_at": info.last_heartbeat_at.isoformat(),
        "heartbeat_interval": info.heartbeat_interval,
        "stale_after": info.stale_after,
        "long_running_stale_after": info.long_running_stale_after,
        "recovery_delay": info.recovery_delay,
        "running_jobs": info.running_jobs,
        "locked_jobs": info.locked_jobs,
        "stale": info.stale,
    }


@click.command("workers", short_help="List the workers: registered ones and every lock holder.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (see README).")
@connection_option
@schema_option
@driver_option
def workers_command(as_json: bool, connection: str | None, schema: str, driver: str) -> None:
    """List the registered workers (host, pid, last heartbeat, what they lock), then any other
    worker id holding locks: Node workers, and ours run with --no-recovery.

    A STALE worker has been silent for longer than its stale-after; the next sweep (any
    running worker sweeps every heartbeat, or `graphile-worker sweep`) hands its jobs back.
    Jobs of unregistered holders wait for the four-hour lock expiry, or for
    `graphile-worker force-unlock` once you know the worker is dead.
    """
    configure_logging("warning")
    check_schema(schema)

    async def read(utils: WorkerUtils) -> tuple[list[WorkerInfo], list[LockHolder]]:
        return await utils.list_workers(), await utils.lock_holders()

    workers, holders = run_async(
        lambda: with_utils(connection, schema, driver, read), connection=connection
    )
    others = [holder for holder in holders if not holder.registered]
    if as_json:
        document = {
            "workers": [_worker_json(info) for info in workers],
            "unregistered_lock_holders": [_holder_json(holder) for holder in others],
        }
        click.echo(json.dumps(document, indent=2))
        return
    if workers:
        _table(
            ("WORKER", "HOST", "PID", "STARTED", "HEARTBEAT", "RUNNING", "LOCKED", "STATE"),
            [
                (
                    info.worker_id,
                    info.hostname,
                    str(info.pid),
                    _age(info.checked_at, info.started_at),
                    _age(info.checked_at, info.last_heartbeat_at),
                    str(info.running_jobs),
                    str(info.locked_jobs),
                    "STALE" if info.stale else "alive",
                )
                for info in workers
            ],
        )
    else:
        click.echo("No registered workers.")
    if others:
        now = datetime.now(timezone.utc)
        click.echo("")
        click.echo("Unregistered lock holders (Node workers, or ours with --no-recovery):")
        _table(
            ("WORKER", "LOCKED JOBS", "LOCKED QUEUES", "OLDEST LOCK"),
            [
                (
                    holder.worker_id,
                    str(holder.locked_jobs),
                    str(holder.locked_queues),
                    _age(now, holder.oldest_lock_at),
                )
                for holder in others
            ],
        )


def _holder_json(holder: LockHolder) -> dict[str, object]:
    return {
        "worker_id": holder.worker_id,
        "locked_jobs": holder.locked_jobs,
        "locked_queues": holder.locked_queues,
        "oldest_lock_at": holder.oldest_lock_at.isoformat(),
    }


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    for line in table(header, rows):
        click.echo(line)


def _describe(report: SweepReport) -> list[str]:
    if report.skipped:
        return ["Another sweep is running; nothing done."]
    if not report.workers:
        return ["No stale workers."]
    verb = "Would recover" if report.dry_run else "Recovered"
    lines = []
    for worker_id in report.workers:
        entries = report.jobs_of(worker_id)
        lines.append(f"{verb} worker {worker_id}: {len(entries)} job(s)")
        for entry in entries:
            job = entry.job
            if entry.action == "deferred":
                what = "left locked: long-running, not yet past long-running-stale-after"
            elif entry.action == "failed":
                what = "failed for good"
            else:
                what = "attempt spent" if entry.attempt_spent else "attempt refunded"
                if entry.run_at is not None:
                    what += f", runs again from {entry.run_at.isoformat()}"
            queue = f" [{job.queue_name}]" if job.queue_name else ""
            lines.append(f"  job {job.id} ({job.task_identifier}){queue}: {what}")
    if report.unlocked_queues:
        lines.append("Unlocked queues: " + ", ".join(report.unlocked_queues))
    return lines


@click.command("sweep", short_help="Recover the jobs of workers that stopped heartbeating.")
@click.option("--dry-run", is_flag=True, help="Change nothing; print what would be done.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (see README).")
@click.option(
    "--dead",
    "dead",
    multiple=True,
    metavar="WORKER_ID",
    help="A worker known to be dead: recovered now, whatever its heartbeat (repeatable).",
)
@click.option(
    "--dead-pid",
    "dead_pids",
    multiple=True,
    type=click.IntRange(min=1),
    metavar="PID",
    help="The process id of a worker on this machine known to be dead (how `run "
    "--processes` releases a crashed child's jobs at once; repeatable).",
)
@connection_option
@schema_option
@driver_option
def sweep_command(
    dry_run: bool,
    as_json: bool,
    dead: tuple[str, ...],
    dead_pids: tuple[int, ...],
    connection: str | None,
    schema: str,
    driver: str,
) -> None:
    """Hand back the jobs and queues of workers silent for longer than their stale-after.

    Running workers already sweep on every heartbeat; this is for when none runs, or to
    see (--dry-run) what the next sweep will do. A job its worker reported running keeps
    its attempt spent; others get it back. Jobs of unregistered workers (Node's) are never
    touched.
    """
    configure_logging("warning")
    check_schema(schema)

    async def clean(utils: WorkerUtils) -> SweepReport:
        named = set(dead)
        if dead_pids:
            here = socket.gethostname()
            named.update(
                info.worker_id
                for info in await utils.list_workers()
                if info.hostname == here and info.pid in dead_pids
            )
        return await utils.sweep(dry_run=dry_run, dead=named)

    report = run_async(lambda: with_utils(connection, schema, driver, clean), connection=connection)
    if as_json:
        click.echo(json.dumps(_report_json(report), indent=2))
        return
    for line in _describe(report):
        click.echo(line)


def _report_json(report: SweepReport) -> dict[str, object]:
    return {
        "dry_run": report.dry_run,
        "skipped": report.skipped,
        "workers": list(report.workers),
        "jobs": [
            {
                "id": entry.job.id,
                "task_identifier": entry.job.task_identifier,
                "queue_name": entry.job.queue_name,
                "worker_id": entry.job.worker_id,
                "action": entry.action,
                "attempt_spent": entry.attempt_spent,
                "run_at": None if entry.run_at is None else entry.run_at.isoformat(),
            }
            for entry in report.jobs
        ],
        "unlocked_queues": list(report.unlocked_queues),
        "forgotten_workers": list(report.forgotten_workers),
    }
