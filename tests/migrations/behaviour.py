"""Run the same SQL on two databases and reduce what happened to comparable values.

A *case* is a list of SQL statements (``{schema}`` stands for the quoted schema name). Each
statement runs in its own transaction on an autocommit connection. For every statement we
record the rows it returned (or its row count, or the SQLSTATE of its error) and the
``jobs:insert`` notifications it caused; after the last one, the contents of the jobs,
tasks and queues tables. Two databases behave alike when these records are equal.

Records are made comparable across databases by :class:`Normaliser`: job ids become labels
in order of first appearance (identity values are an implementation detail), task and queue
ids become their names, timestamps become offsets from the case's start compared within
:data:`TIME_TOLERANCE`, and the random ``r`` of Node's notification payloads is dropped.
JSON comes back as text, so even formatting differences show.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader

from graphile_worker.sql import render

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = [
    "TIME_TOLERANCE",
    "Case",
    "Instant",
    "literal",
    "prepare_connection",
    "run_case",
    "spec",
    "sql_call",
]

TIME_TOLERANCE = 2.0
"""Seconds two timestamps may differ by and still count as the same instant."""


@dataclass(frozen=True, slots=True)
class Case:
    """A named list of statements to run on both databases."""

    id: str
    steps: tuple[str, ...]


class Instant:
    """A timestamp as seconds after the case started; equal within :data:`TIME_TOLERANCE`."""

    __slots__ = ("offset",)

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instant):
            return NotImplemented
        return abs(self.offset - other.offset) <= TIME_TOLERANCE

    __hash__ = None  # type: ignore[assignment]  # equality is approximate, so not hashable

    def __repr__(self) -> str:
        return f"start{self.offset:+.0f}s"


# ---------------------------------------------------------------------------------------
# Writing cases


def literal(value: Any) -> str:
    """``value`` as a SQL literal: None, bool, int, str and lists of str."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list):
        if not value:
            return "array[]::text[]"
        return "array[" + ", ".join(literal(item) for item in value) + "]"
    raise TypeError(f"no SQL literal for {value!r}")


def sql_call(function: str, *positional: Any, **named: Any) -> str:
    """``select * from {schema}.function(...)`` with named arguments in ``=>`` notation."""
    arguments = [literal(value) for value in positional]
    arguments += [f"{name} => {literal(value)}" for name, value in named.items()]
    return f"select * from {{schema}}.{function}({', '.join(arguments)})"


def spec(
    identifier: str | None,
    payload: str | None = None,
    queue_name: str | None = None,
    run_at: str | None = None,
    max_attempts: int | None = None,
    job_key: str | None = None,
    priority: int | None = None,
    flags: list[str] | None = None,
) -> str:
    """A ``job_spec`` row literal for ``add_jobs``."""
    fields = [
        f"{literal(identifier)}::text",
        f"{literal(payload)}::json",
        f"{literal(queue_name)}::text",
        f"{literal(run_at)}::timestamptz",
        f"{literal(max_attempts)}::int",
        f"{literal(job_key)}::text",
        f"{literal(priority)}::int",
        f"{literal(flags)}::text[]",
    ]
    return f"row({', '.join(fields)})::{{schema}}.job_spec"


# ---------------------------------------------------------------------------------------
# Running cases


def prepare_connection(connection: Connection[Any]) -> None:
    """Return json/jsonb as text and listen for ``jobs:insert``."""
    for type_name in ("json", "jsonb"):
        connection.adapters.register_loader(type_name, TextLoader)
    connection.execute('listen "jobs:insert"')


_RESET = (
    "truncate {schema}._private_jobs, {schema}._private_tasks, {schema}._private_job_queues"
    " restart identity"
)


@dataclass
class Normaliser:
    """Per-database translation of ids, names and times into comparable values."""

    start: datetime
    job_labels: dict[int, str] = field(default_factory=dict)
    tasks: dict[int, str] = field(default_factory=dict)
    queues: dict[int, str] = field(default_factory=dict)

    def refresh(self, connection: Connection[Any], schema: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(render("select id, identifier from {schema}._private_tasks", schema))
            self.tasks.update((row[0], row[1]) for row in cursor.fetchall())
            cursor.execute(
                render("select id, queue_name from {schema}._private_job_queues", schema)
            )
            self.queues.update((row[0], row[1]) for row in cursor.fetchall())

    def rows(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Normalise a result set, ordered by content so row order does not matter."""
        readable = [self._names(row) for row in rows]
        readable.sort(key=_content_key)
        for row in readable:
            job_id = row.get("id")
            if isinstance(job_id, int) and job_id not in self.job_labels:
                self.job_labels[job_id] = f"job{len(self.job_labels) + 1}"
        return [self._values(row) for row in readable]

    def _names(self, row: dict[str, Any]) -> dict[str, Any]:
        named = dict(row)
        if "task_id" in named:
            named["task_id"] = self.tasks.get(named["task_id"], named["task_id"])
        if "job_queue_id" in named:
            named["job_queue_id"] = self.queues.get(named["job_queue_id"], named["job_queue_id"])
        return named

    def _values(self, row: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, value in row.items():
            if name == "id" and isinstance(value, int):
                result[name] = self.job_labels[value]
            elif isinstance(value, datetime):
                result[name] = Instant((value - self.start).total_seconds())
            else:
                result[name] = value
        return result


def _content_key(row: dict[str, Any]) -> tuple[str, int]:
    """Sort key from everything but ids and times (which differ between databases)."""
    stable = {
        name: value
        for name, value in row.items()
        if name != "id" and not isinstance(value, datetime)
    }
    job_id = row.get("id")
    return (repr(sorted(stable.items())), job_id if isinstance(job_id, int) else 0)


def _notifications(connection: Connection[Any]) -> list[Any]:
    """Drain ``jobs:insert`` notifications; Node's payload carries a random ``r``: drop it."""
    received: list[Any] = []
    for notification in connection.notifies(timeout=0):
        try:
            payload = json.loads(notification.payload)
        except ValueError:
            received.append(notification.payload)
            continue
        if isinstance(payload, dict) and isinstance(payload.get("r"), float):
            payload["r"] = "<random>"
        received.append(payload)
    return received


_FINAL_STATE = {
    "jobs": "select * from {schema}._private_jobs",
    "jobs_view": "select * from {schema}.jobs",
    "tasks": "select identifier from {schema}._private_tasks order by identifier",
    "queues": (
        "select queue_name, locked_at, locked_by, is_available"
        " from {schema}._private_job_queues order by queue_name"
    ),
}


def run_case(connection: Connection[Any], schema: str, case: Case) -> dict[str, Any]:
    """Run ``case`` on a clean slate in ``schema`` and return the normalised record."""
    connection.execute(render(_RESET, schema).encode())
    _notifications(connection)
    start = connection.execute("select clock_timestamp()").fetchone()
    assert start is not None
    normaliser = Normaliser(start=start[0])
    steps: list[dict[str, Any]] = []
    for statement in case.steps:
        outcome: dict[str, Any] = {"sql": statement}
        try:
            with connection.cursor(row_factory=dict_row) as cursor:
                cursor.execute(render(statement, schema).encode())
                rows = cursor.fetchall() if cursor.description is not None else None
                rowcount = cursor.rowcount
        except psycopg.Error as error:
            outcome["error"] = error.sqlstate
        else:
            normaliser.refresh(connection, schema)
            if rows is None:
                outcome["rowcount"] = rowcount
            else:
                outcome["rows"] = normaliser.rows(rows)
        outcome["notifications"] = _notifications(connection)
        steps.append(outcome)
    normaliser.refresh(connection, schema)
    final: dict[str, Any] = {}
    with connection.cursor(row_factory=dict_row) as cursor:
        for name, query in _FINAL_STATE.items():
            cursor.execute(render(query, schema).encode())
            final[name] = normaliser.rows(cursor.fetchall())
    return {"steps": steps, "final": final}
