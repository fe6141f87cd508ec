"""The tables both sides' test tasks write to, and readers for them.

They live in the ``public`` schema of each test database, apart from graphile-worker's own
schema, so that they survive whatever a test does to that schema:

* ``interop_results``: one row per attempt a task made (``outcome`` ``ran``, ``failed`` or
  ``started``), with the job exactly as the running side saw it (``job``, JSON);
* ``interop_release``: the test inserts a job id here to let a ``hold`` task finish
  (``outcome`` ``succeed`` or ``fail``);
* ``interop_fleet``: one row per mixed-fleet job, with the database clock at its start and
  end, to prove that each job ran once and serial queues never overlapped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg.rows import dict_row

__all__ = [
    "CREATE_TABLES",
    "Seen",
    "create_tables",
    "eventually",
    "jobs",
    "queues",
    "quoted",
    "release",
    "results",
    "wait_for",
]

CREATE_TABLES = """
create table if not exists public.interop_results (
  id bigserial primary key,
  side text not null,
  outcome text not null,
  job_id bigint not null,
  task_identifier text not null,
  queue_name text,
  locked_by text,
  job jsonb not null,
  recorded_at timestamptz not null default clock_timestamp()
);
create table if not exists public.interop_release (
  job_id bigint primary key,
  outcome text not null default 'succeed' check (outcome in ('succeed', 'fail'))
);
create table if not exists public.interop_fleet (
  n int not null,
  job_id bigint not null,
  side text not null,
  queue_name text,
  started_at timestamptz not null,
  finished_at timestamptz not null
);
"""


def create_tables(connection: psycopg.Connection[Any]) -> None:
    """Create the interop tables (idempotent)."""
    connection.execute(CREATE_TABLES.encode())


def _parse_time(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    assert isinstance(value, str), value
    # Node's JSON dates end in "Z"; Python 3.10's fromisoformat wants an offset.
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Seen:
    """One attempt of one job, as the side that ran it saw the job."""

    side: str
    outcome: str
    job_id: int
    task_identifier: str
    queue_name: str | None
    locked_by: str | None
    job: dict[str, Any]

    @property
    def payload(self) -> Any:
        return self.job.get("payload")

    @property
    def key(self) -> str | None:
        key: str | None = self.job.get("key")
        return key

    @property
    def priority(self) -> int:
        return int(self.job["priority"])

    @property
    def attempts(self) -> int:
        return int(self.job["attempts"])

    @property
    def max_attempts(self) -> int:
        return int(self.job["max_attempts"])

    @property
    def last_error(self) -> str | None:
        error: str | None = self.job.get("last_error")
        return error

    @property
    def flags(self) -> dict[str, bool] | None:
        flags: dict[str, bool] | None = self.job.get("flags")
        return flags

    @property
    def run_at(self) -> datetime:
        parsed = _parse_time(self.job["run_at"])
        assert parsed is not None
        return parsed


def results(
    connection: psycopg.Connection[Any], *, outcome: str | None = None, side: str | None = None
) -> list[Seen]:
    """Every recorded attempt, oldest first, optionally of one outcome or side."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            "select side, outcome, job_id, task_identifier, queue_name, locked_by, job "
            "from public.interop_results "
            "where (%(outcome)s::text is null or outcome = %(outcome)s) "
            "and (%(side)s::text is null or side = %(side)s) "
            "order by id",
            {"outcome": outcome, "side": side},
        )
        return [Seen(**row) for row in cursor.fetchall()]


def quoted(schema: str) -> str:
    """``schema`` as a quoted SQL identifier."""
    return '"' + schema.replace('"', '""') + '"'


def jobs(connection: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    """Every job row in ``schema`` with its task identifier and queue name, by id.

    Read straight from the private tables, so the check trusts neither side's code.
    """
    name = quoted(schema)
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            f"select job.*, task.identifier as task_identifier, queue.queue_name, "
            f"queue.locked_by as queue_locked_by "
            f"from {name}._private_jobs as job "
            f"join {name}._private_tasks as task on task.id = job.task_id "
            f"left join {name}._private_job_queues as queue on queue.id = job.job_queue_id "
            f"order by job.id"
        )
        return cursor.fetchall()


def queues(connection: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    """Every named queue in ``schema`` with its lock, by name."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            f"select queue_name, locked_at, locked_by from {quoted(schema)}._private_job_queues "
            "order by queue_name"
        )
        return cursor.fetchall()


def release(connection: psycopg.Connection[Any], job_id: int, *, fail: bool = False) -> None:
    """Let the ``hold`` task running ``job_id`` finish (successfully unless ``fail``)."""
    connection.execute(
        "insert into public.interop_release (job_id, outcome) values (%s, %s)",
        (job_id, "fail" if fail else "succeed"),
    )


T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], *, timeout: float = 30.0, what: str = "the condition"
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    For sync tests waiting on a Node subprocess; async tests use ``anyio.fail_after``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


async def eventually(
    condition: Callable[[], T], *, within: float = 30.0, what: str = "the condition"
) -> T:
    """Async twin of :func:`wait_for`: poll without blocking the event loop between tries."""
    try:
        with anyio.fail_after(within):
            while True:
                value = condition()
                if value:
                    return value
                await anyio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {within}s waiting for {what}") from None
