"""What the queue-operation commands (``jobs``, ``stats``, ``queues``, ``force-unlock``) share.

Parsing of durations and times, the one-shot connection, aligned tables, relative times and
the JSON shapes of jobs and counts. The shapes are documented in the README ("Operating the
queue"): keys are only ever added, never renamed, so scripts can rely on them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, TypeVar

import click

from .._humanize import age, relative

if TYPE_CHECKING:
    from ..inspection import JobCounts
    from ..spec import Job
    from ..utils import WorkerUtils

__all__ = [
    "BadInput",
    "age",
    "counts_json",
    "iso",
    "job_json",
    "job_state",
    "parse_duration",
    "parse_moment",
    "relative",
    "seconds",
    "table",
    "with_utils",
]

T = TypeVar("T")


class BadInput(click.ClickException):
    """A value on the command line that cannot be used: one ``Error:`` line and status 2.

    click's own usage errors repeat the usage text first; for a mistyped duration or state
    the one line naming the value and the accepted forms is all the operator needs.
    """

    exit_code = 2


_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(option: str, text: str) -> timedelta:
    """``30s``, ``5m``, ``2h``, ``1d``, ``1w`` or a sum such as ``1h30m``, as a timedelta."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact.replace(" ", ""):
        raise BadInput(
            f"{option} {text!r} is not a duration; write a number and a unit, such as "
            "30s, 5m, 2h, 1d or 1h30m"
        )
    return timedelta(seconds=sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts))


def parse_moment(option: str, text: str) -> datetime:
    """An ISO 8601 time; without an offset it is taken as UTC, which is what the database uses."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(
            f"{option} {text!r} is not an ISO 8601 time; write for example "
            "2026-01-31T09:30:00+00:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


async def with_utils(
    connection: str | None, schema: str, driver: str, use: Callable[[WorkerUtils], Awaitable[T]]
) -> T:
    """Run ``use`` over one connection without prepared statements (PgBouncer-safe)."""
    from ..drivers import create_driver
    from ..utils import WorkerUtils

    async with create_driver(
        connection, driver=driver, max_size=1, prepared_statements=False
    ) as database:
        return await use(WorkerUtils(database, schema=schema))


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def seconds(span: timedelta | None) -> float | None:
    return None if span is None else round(span.total_seconds(), 3)


def job_state(job: Job, now: datetime) -> str:
    """The job's :class:`~graphile_worker.JobState` value, judged by ``now``."""
    from ..inspection import JobState

    return JobState.of(job, now).value


def _payload_json(payload: object) -> object:
    from .._json import UndecodableJson

    if isinstance(payload, UndecodableJson):
        return {"undecodable": payload.reason}
    return payload


def job_json(job: Job, now: datetime) -> dict[str, object]:
    """The documented JSON shape of one job."""
    return {
        "id": job.id,
        "task_identifier": job.task_identifier,
        "queue_name": job.queue_name,
        "state": job_state(job, now),
        "payload": _payload_json(job.payload),
        "priority": job.priority,
        "run_at": iso(job.run_at),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
        "key": job.key,
        "flags": sorted(job.flags),
        "locked_at": iso(job.locked_at),
        "locked_by": job.locked_by,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "revision": job.revision,
    }


def counts_json(counts: JobCounts) -> dict[str, object]:
    """The documented JSON shape of a set of job counts."""
    return {
        "total": counts.total,
        "ready": counts.ready,
        "scheduled": counts.scheduled,
        "locked": counts.locked,
        "retrying": counts.retrying,
        "failed": counts.failed,
        "oldest_ready_at": iso(counts.oldest_ready_at),
        "oldest_ready_age_seconds": seconds(counts.oldest_ready_age),
    }


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, trailing blanks removed."""
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
