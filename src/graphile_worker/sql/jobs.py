"""SQL for adding and administering jobs, with the pure functions that bind and decode it.

Every statement calls one of the SQL functions Node graphile-worker installs (``add_job``,
``add_jobs``, ``remove_job``, ``complete_jobs``, ``permanently_fail_jobs``,
``reschedule_jobs``, ``force_unlock_workers``), so jobs added here behave exactly like jobs
added from Node or from plain SQL. Those functions return raw ``_private_jobs`` rows; the
statements below join the task identifier and queue name back on so that each row decodes
into a complete :class:`~graphile_worker.spec.Job`.

The operations (:func:`add_job`, :func:`add_jobs`, ...) are generators of
:class:`~graphile_worker.sql._statement.Statement`: they hold every decision and do no I/O,
so the async and the sync utilities (and the worker) drive the same code with
:func:`~graphile_worker.sql._statement.run_async` or
:func:`~graphile_worker.sql._statement.run_sync`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from .._payload import DEFAULT_MAX_ATTEMPTS, DEFAULT_SPEC, PreparedJob, payload_to_json
from .._validate import (
    check_aware_datetime,
    check_max_attempts,
    check_priority,
    check_smallint,
)
from ..errors import ConfigurationError, DatabaseError, InvalidJobSpecError
from ..spec import Job, JobKeyMode, JobSpec
from . import render
from ._job_reader import job_reader
from ._statement import Operation, Row, Statement

__all__ = [
    "ADD_JOB",
    "ADD_JOBS",
    "COMPLETE_JOBS",
    "FORCE_UNLOCK_WORKERS",
    "LOOKUP_NAMES",
    "PERMANENTLY_FAIL_JOBS",
    "REMOVE_JOB",
    "RESCHEDULE_JOBS",
    "JobBatch",
    "add_job",
    "add_jobs",
    "bind_add_job",
    "bind_add_jobs",
    "complete_jobs",
    "encode_batch",
    "force_unlock_workers",
    "job_ids",
    "order_like_specs",
    "permanently_fail_jobs",
    "remove_job",
    "reschedule_jobs",
    "resolve_names",
    "specs_to_json",
]

# The columns of ``_private_jobs``, in table order, read from a function result aliased ``job``.
_JOB_COLUMNS = """
  job.id, job.job_queue_id, job.task_id, job.payload, job.priority, job.run_at,
  job.attempts, job.max_attempts, job.last_error, job.created_at, job.updated_at, job.key,
  job.locked_at, job.locked_by, job.revision, job.flags, job.is_available"""

# Joined onto functions that only touch jobs whose task and queue existed before the
# statement began, so both lookups always see them.
_NAMES = """
join {schema}._private_tasks as task on task.id = job.task_id
left join {schema}._private_job_queues as queue on queue.id = job.job_queue_id"""

# A task or queue that add_job/add_jobs creates is invisible to the rest of the same
# statement (it started with an older snapshot), so the names are joined with a left join
# and fall back to the name we sent: a job can only point at a task or queue created by this
# very call if it is the one we asked for.
ADD_JOB = f"""
select {_JOB_COLUMNS},
  coalesce(task.identifier, CAST(:identifier AS text)) as task_identifier,
  case when job.job_queue_id is not null
    then coalesce(queue.queue_name, CAST(:queue_name AS text))
  end as queue_name
from {{schema}}.add_job(
  identifier => CAST(:identifier AS text),
  payload => CAST(CAST(:payload AS text) AS json),
  queue_name => CAST(:queue_name AS text),
  run_at => CAST(:run_at AS timestamptz),
  max_attempts => CAST(:max_attempts AS integer),
  job_key => CAST(:job_key AS text),
  priority => CAST(:priority AS integer),
  flags => CAST(:flags AS text[]),
  job_key_mode => CAST(:job_key_mode AS text)
) as job
left join {{schema}}._private_tasks as task on task.id = job.task_id
left join {{schema}}._private_job_queues as queue on queue.id = job.job_queue_id
"""

# One round trip for any number of jobs: the specs travel as one JSON array (text, so that
# every driver binds it the same way) and become a job_spec[] inside the server, as in Node.
# Names of tasks and queues created by this call come back NULL (see ADD_JOB);
# resolve_names() fills them in.
ADD_JOBS = f"""
select {_JOB_COLUMNS}, task.identifier as task_identifier, queue.queue_name
from {{schema}}.add_jobs(
  array(
    select json_populate_recordset(
      CAST(NULL AS {{schema}}.job_spec),
      CAST(CAST(:specs AS text) AS json)
    )
  ),
  CAST(:job_key_preserve_run_at AS boolean)
) as job
left join {{schema}}._private_tasks as task on task.id = job.task_id
left join {{schema}}._private_job_queues as queue on queue.id = job.job_queue_id
"""

# Only needed when one add_jobs call created several tasks or queues at once.
LOOKUP_NAMES = """
select 'task' as kind, task.id, task.identifier as name
from {schema}._private_tasks as task
where task.id = any(CAST(:task_ids AS integer[]))
union all
select 'queue' as kind, queue.id, queue.queue_name as name
from {schema}._private_job_queues as queue
where queue.id = any(CAST(:queue_ids AS integer[]))
"""

# remove_job returns a NULL row when no job has the key; the inner join drops it.
REMOVE_JOB = f"""
select {_JOB_COLUMNS}, task.identifier as task_identifier, queue.queue_name
from {{schema}}.remove_job(CAST(:job_key AS text)) as job
{_NAMES}
"""

COMPLETE_JOBS = f"""
select {_JOB_COLUMNS}, task.identifier as task_identifier, queue.queue_name
from {{schema}}.complete_jobs(CAST(:job_ids AS bigint[])) as job
{_NAMES}
order by job.id
"""

PERMANENTLY_FAIL_JOBS = f"""
select {_JOB_COLUMNS}, task.identifier as task_identifier, queue.queue_name
from {{schema}}.permanently_fail_jobs(
  CAST(:job_ids AS bigint[]),
  CAST(:error_message AS text)
) as job
{_NAMES}
order by job.id
"""

RESCHEDULE_JOBS = f"""
select {_JOB_COLUMNS}, task.identifier as task_identifier, queue.queue_name
from {{schema}}.reschedule_jobs(
  CAST(:job_ids AS bigint[]),
  run_at => CAST(:run_at AS timestamptz),
  priority => CAST(:priority AS integer),
  attempts => CAST(:attempts AS integer),
  max_attempts => CAST(:max_attempts AS integer)
) as job
{_NAMES}
order by job.id
"""

FORCE_UNLOCK_WORKERS = "select {schema}.force_unlock_workers(CAST(:worker_ids AS text[]))"


# --------------------------------------------------------------------------------- binding


def _mode_name(spec: JobSpec) -> str | None:
    return None if spec.job_key_mode is None else JobKeyMode(spec.job_key_mode).value


def bind_add_job(schema: str, job: PreparedJob) -> Statement:
    """The statement that adds one job through the ``add_job`` SQL function."""
    spec = job.spec
    return Statement(
        "fetchrow",
        render(ADD_JOB, schema),
        {
            "identifier": job.identifier,
            "payload": job.payload_json,
            "queue_name": spec.queue_name,
            "run_at": spec.run_at,
            "max_attempts": spec.max_attempts,
            "job_key": spec.job_key,
            "priority": spec.priority,
            "flags": None if spec.flags is None else sorted(spec.flags),
            # None lets the SQL function pick its default, 'replace', as Node does.
            "job_key_mode": _mode_name(spec),
        },
    )


def _spec_fields(spec: JobSpec, fields: dict[str, Any]) -> dict[str, Any]:
    if spec.queue_name is not None:
        fields["queue_name"] = spec.queue_name
    if spec.run_at is not None:
        fields["run_at"] = spec.run_at.isoformat()
    if spec.max_attempts is not None:
        fields["max_attempts"] = spec.max_attempts
    if spec.job_key is not None:
        fields["job_key"] = spec.job_key
    if spec.priority is not None:
        fields["priority"] = spec.priority
    if spec.flags is not None:
        fields["flags"] = sorted(spec.flags)
    return fields


def _spec_json(job: PreparedJob) -> str:
    fields = _spec_fields(job.spec, {"identifier": job.identifier})
    # The payload is already JSON text; splice it in rather than decode and re-encode it.
    rest = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return '{"payload":' + job.payload_json + "," + rest[1:]


def specs_to_json(jobs: Sequence[PreparedJob]) -> str:
    """The JSON array of ``job_spec`` records that ``json_populate_recordset`` reads."""
    return "[" + ",".join(_spec_json(job) for job in jobs) + "]"


@dataclasses.dataclass(frozen=True, slots=True)
class JobBatch:
    """A checked ``add_jobs`` batch: the JSON to send and what to pair returned rows with.

    Building one :class:`PreparedJob` per job (a frozen dataclass and a JSON text each)
    cost more than PostgreSQL spends inserting the job, so large batches are described
    column-wise and encoded with a single ``json.dumps`` (see :func:`encode_batch`).
    """

    identifiers: Sequence[str]
    specs: Sequence[JobSpec]
    specs_json: str

    @classmethod
    def of(cls, jobs: Sequence[PreparedJob]) -> JobBatch:
        """The batch for jobs prepared one by one."""
        return cls(
            [job.identifier for job in jobs], [job.spec for job in jobs], specs_to_json(jobs)
        )

    def payloads(self) -> list[object]:
        """The payloads as the database will give them back (decoded from what is sent)."""
        return [record["payload"] for record in json.loads(self.specs_json)]


def encode_batch(
    identifiers: Sequence[str], payloads: Sequence[object], specs: Sequence[JobSpec | None]
) -> JobBatch:
    """Encode checked identifiers, raw payloads and specs as one :class:`JobBatch`.

    The whole array goes through :func:`~graphile_worker._payload.payload_to_json` at once, so
    a payload is encoded exactly as it would be alone; ``None`` becomes ``{}`` as there.

    Raises:
        InvalidJobSpecError: some payload cannot be encoded (which one is not said; the
            caller prepares the jobs one by one to find out).
    """
    records = [
        {"identifier": identifier, "payload": {} if payload is None else payload}
        if spec is None
        else _spec_fields(
            spec, {"identifier": identifier, "payload": {} if payload is None else payload}
        )
        for identifier, payload, spec in zip(identifiers, payloads, specs, strict=True)
    ]
    return JobBatch(
        identifiers,
        [DEFAULT_SPEC if spec is None else spec for spec in specs],
        payload_to_json(records),
    )


def _check_batch(batch: JobBatch, job_key_preserve_run_at: bool) -> None:
    """Refuse a batch that ``add_jobs`` cannot honour, before it reaches the server.

    ``add_jobs`` applies one job-key behaviour to the whole batch (Node: "must NOT set
    jobKeyMode for addJobs"), so a spec asking for another one would be silently ignored;
    and two specs with one job key make PostgreSQL's ``ON CONFLICT`` fail.
    """
    batch_mode = JobKeyMode.PRESERVE_RUN_AT if job_key_preserve_run_at else JobKeyMode.REPLACE
    seen_keys: set[str] = set()
    for position, spec in enumerate(batch.specs):
        if spec is DEFAULT_SPEC:
            continue
        mode = spec.job_key_mode
        if mode is not None and JobKeyMode(mode) is not batch_mode:
            raise InvalidJobSpecError(
                f"job {position} ({batch.identifiers[position]!r}) has job_key_mode="
                f"{JobKeyMode(mode).value!r} but add_jobs applies {batch_mode.value!r} to the "
                "whole batch (job_key_preserve_run_at="
                f"{job_key_preserve_run_at}); use add_job for unsafe_dedupe, or pass "
                "job_key_preserve_run_at to choose the batch's mode"
            )
        key = spec.job_key
        if key is not None:
            if key in seen_keys:
                raise InvalidJobSpecError(
                    f"job_key {key!r} appears more than once in one add_jobs batch; "
                    "PostgreSQL cannot update one job twice in a statement"
                )
            seen_keys.add(key)


def bind_add_jobs(
    schema: str, jobs: Sequence[PreparedJob] | JobBatch, job_key_preserve_run_at: bool
) -> Statement:
    """The statement that adds a batch of jobs in one round trip (``add_jobs``)."""
    batch = jobs if isinstance(jobs, JobBatch) else JobBatch.of(jobs)
    _check_batch(batch, job_key_preserve_run_at)
    return Statement(
        "fetch",
        render(ADD_JOBS, schema),
        {"specs": batch.specs_json, "job_key_preserve_run_at": job_key_preserve_run_at},
    )


def job_ids(ids: Iterable[int]) -> list[int]:
    """Check a list of job ids (bigint) before it is sent."""
    if isinstance(ids, (str, bytes)):
        raise ConfigurationError(f"job ids must be a list of int, not {ids!r}")
    checked = list(ids)
    for job_id in checked:
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise ConfigurationError(
                f"job ids must be int, not {type(job_id).__name__} ({job_id!r})"
            )
    return checked


def _worker_ids(ids: Iterable[str]) -> list[str]:
    if isinstance(ids, str):
        raise ConfigurationError(f"worker ids must be a list of str, not the str {ids!r}")
    checked = list(ids)
    for worker_id in checked:
        if not isinstance(worker_id, str):
            raise ConfigurationError(
                f"worker ids must be str, not {type(worker_id).__name__} ({worker_id!r})"
            )
    return checked


# ------------------------------------------------------------------------------ operations


def _jobs(rows: list[Row]) -> list[Job]:
    return [Job.from_row(row) for row in rows]


def add_job(schema: str, job: PreparedJob) -> Operation[Job]:
    """Add one job; returns it as stored (for ``unsafe_dedupe``, possibly the existing one)."""
    row = yield bind_add_job(schema, job)
    if row is None or row["id"] is None:
        # add_job always returns the inserted, updated or existing job; nothing back means
        # the schema's add_job is not the one we know.
        raise DatabaseError(f"{schema}.add_job returned no job for {job.identifier!r}")
    return Job.from_row(row)


def add_jobs(
    schema: str, jobs: Sequence[PreparedJob] | JobBatch, job_key_preserve_run_at: bool = False
) -> Operation[list[Job]]:
    """Add many jobs in one statement; returns them in the order they were given.

    A second, small statement is needed only when the batch creates more than one new
    task identifier (or queue name) at once: see :func:`resolve_names`.
    """
    batch = jobs if isinstance(jobs, JobBatch) else JobBatch.of(jobs)
    if not batch.identifiers:
        return []
    rows = [dict(row) for row in (yield bind_add_jobs(schema, batch, job_key_preserve_run_at))]
    missing_tasks, missing_queues = resolve_names(batch, rows)
    if missing_tasks or missing_queues:
        found = yield Statement(
            "fetch",
            render(LOOKUP_NAMES, schema),
            {"task_ids": sorted(missing_tasks), "queue_ids": sorted(missing_queues)},
        )
        names = {(row["kind"], row["id"]): row["name"] for row in found}
        for row in rows:
            if row["task_identifier"] is None:
                row["task_identifier"] = names.get(("task", row["task_id"]))
            if row["queue_name"] is None and row["job_queue_id"] is not None:
                row["queue_name"] = names.get(("queue", row["job_queue_id"]))
    return _order_rows(batch.identifiers, batch.specs, batch.payloads(), _decode_jobs(rows))


def _decode_jobs(rows: list[dict[str, Any]]) -> list[Job]:
    # Every row of one result has the same columns, so one positional reader (see
    # job_reader) decodes them all; it builds the same Job as Job.from_row, faster.
    try:
        read = _reader_for(tuple(rows[0]))
    except ValueError:
        return [Job.from_row(row) for row in rows]
    return [read(list(row.values())) for row in rows]


@functools.lru_cache(maxsize=8)
def _reader_for(columns: tuple[str, ...]) -> Callable[[Sequence[Any]], Job]:
    return job_reader(columns)


def resolve_names(
    jobs: Sequence[PreparedJob] | JobBatch, rows: list[dict[str, Any]]
) -> tuple[set[int], set[int]]:
    """Fill in task and queue names ``add_jobs`` rows could not see; return ids still unknown.

    Tasks and queues created by the statement are invisible to its own joins, but the new
    names are known: the batch's names that no returned row showed as existing. When
    exactly one task (or queue) is both new and unnamed, it must be that one name; with
    several, positions cannot be trusted (PostgreSQL may return the jobs in any order), so
    the caller looks the ids up.
    """
    batch = jobs if isinstance(jobs, JobBatch) else JobBatch.of(jobs)
    new_identifiers = set(batch.identifiers) - {
        row["task_identifier"] for row in rows if row["task_identifier"] is not None
    }
    unnamed_tasks = {row["task_id"] for row in rows if row["task_identifier"] is None}
    new_queues = {spec.queue_name for spec in batch.specs if spec.queue_name is not None} - {
        row["queue_name"] for row in rows if row["queue_name"] is not None
    }
    unnamed_queues = {
        row["job_queue_id"]
        for row in rows
        if row["queue_name"] is None and row["job_queue_id"] is not None
    }
    if len(unnamed_tasks) == 1 and len(new_identifiers) == 1:
        identifier = next(iter(new_identifiers))
        for row in rows:
            if row["task_identifier"] is None:
                row["task_identifier"] = identifier
        unnamed_tasks = set()
    if len(unnamed_queues) == 1 and len(new_queues) == 1:
        queue_name = next(iter(new_queues))
        for row in rows:
            if row["queue_name"] is None and row["job_queue_id"] is not None:
                row["queue_name"] = queue_name
        unnamed_queues = set()
    return unnamed_tasks, unnamed_queues


def _signature(
    identifier: str,
    queue_name: str | None,
    priority: int,
    max_attempts: int,
    flags: frozenset[str],
    payload: object,
) -> tuple[object, ...]:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return (identifier, queue_name, priority, max_attempts, flags, canonical)


def _spec_signature(identifier: str, spec: JobSpec, payload: object) -> tuple[object, ...]:
    return _signature(
        identifier,
        spec.queue_name,
        0 if spec.priority is None else spec.priority,
        DEFAULT_MAX_ATTEMPTS if spec.max_attempts is None else spec.max_attempts,
        frozenset(spec.flags or ()),
        payload,
    )


def _row_signature(row: Job) -> tuple[object, ...]:
    return _signature(
        row.task_identifier, row.queue_name, row.priority, row.max_attempts, row.flags, row.payload
    )


def _matches(identifier: str, spec: JobSpec, payload: object, row: Job) -> bool:
    if spec is DEFAULT_SPEC:
        # The common case, without the spec lookups.
        return (
            row.task_identifier == identifier
            and row.key is None
            and row.queue_name is None
            and row.priority == 0
            and row.max_attempts == DEFAULT_MAX_ATTEMPTS
            and not row.flags
            and row.payload == payload
        )
    return (
        row.task_identifier == identifier
        and row.key == spec.job_key
        and row.queue_name == spec.queue_name
        and row.priority == (0 if spec.priority is None else spec.priority)
        and row.max_attempts
        == (DEFAULT_MAX_ATTEMPTS if spec.max_attempts is None else spec.max_attempts)
        and row.flags == frozenset(spec.flags or ())
        and (spec.run_at is None or spec.job_key is not None or row.run_at == spec.run_at)
        and row.payload == payload
    )


def order_like_specs(jobs: Sequence[PreparedJob], rows: list[Job]) -> list[Job]:
    """Return ``rows`` in the order of the ``jobs`` that produced them.

    ``add_jobs`` inserts through a join whose output order is the planner's choice (hash
    joins often reverse it), so Node's habit of pairing results with specs by position
    mislabels jobs. We check the positions first (cheap, and usually right), and otherwise
    pair each spec with the job carrying its job key, or else its task, queue, priority,
    attempts, flags and payload. Jobs that match no spec (an array payload merged into an
    existing job, say) keep their relative order at the end.
    """
    return _order_rows(
        [job.identifier for job in jobs],
        [job.spec for job in jobs],
        [json.loads(job.payload_json) for job in jobs],
        rows,
    )


def _order_rows(
    identifiers: Sequence[str],
    specs: Sequence[JobSpec],
    payloads: Sequence[object],
    rows: list[Job],
) -> list[Job]:
    """:func:`order_like_specs` over a batch given column-wise (decoded payloads)."""
    if len(rows) == len(identifiers) and all(map(_matches, identifiers, specs, payloads, rows)):
        return rows
    by_key = {row.key: row for row in rows if row.key is not None}
    by_signature: dict[tuple[object, ...], list[Job]] = {}
    for row in rows:
        if row.key is None:
            by_signature.setdefault(_row_signature(row), []).append(row)
    ordered: list[Job] = []
    for identifier, spec, payload in zip(identifiers, specs, payloads, strict=True):
        if spec.job_key is not None:
            match = by_key.pop(spec.job_key, None)
        else:
            candidates = by_signature.get(_spec_signature(identifier, spec, payload))
            match = candidates.pop(0) if candidates else None
        if match is not None:
            ordered.append(match)
    chosen = {id(row) for row in ordered}
    ordered.extend(row for row in rows if id(row) not in chosen)
    return ordered


def remove_job(schema: str, job_key: str) -> Operation[Job | None]:
    """Remove the job with ``job_key``; ``None`` if there is none.

    A job that is running right now cannot be deleted: it loses its key and will not be
    retried, and the returned job shows that (``key`` is ``None``).
    """
    if not isinstance(job_key, str) or not job_key:
        raise ConfigurationError(f"job_key must be a non-empty str, not {job_key!r}")
    row = yield Statement("fetchrow", render(REMOVE_JOB, schema), {"job_key": job_key})
    return None if row is None else Job.from_row(row)


def complete_jobs(schema: str, ids: Iterable[int]) -> Operation[list[Job]]:
    """Delete the given jobs as if they had succeeded, unless they are locked."""
    statement = Statement("fetch", render(COMPLETE_JOBS, schema), {"job_ids": job_ids(ids)})
    return _jobs((yield statement))


def permanently_fail_jobs(
    schema: str, ids: Iterable[int], reason: str | None = None
) -> Operation[list[Job]]:
    """Use up the attempts of the given unlocked jobs, recording ``reason`` as last error."""
    if reason is not None and not isinstance(reason, str):
        raise ConfigurationError(f"reason must be a str, not {type(reason).__name__}")
    statement = Statement(
        "fetch",
        render(PERMANENTLY_FAIL_JOBS, schema),
        # Node sends an empty reason as NULL, so the function records its default message.
        {"job_ids": job_ids(ids), "error_message": reason or None},
    )
    return _jobs((yield statement))


def reschedule_jobs(
    schema: str,
    ids: Iterable[int],
    *,
    run_at: datetime | None = None,
    priority: int | None = None,
    attempts: int | None = None,
    max_attempts: int | None = None,
) -> Operation[list[Job]]:
    """Change when and how the given unlocked jobs run; ``None`` leaves a field as it is."""
    if run_at is not None:
        check_aware_datetime("run_at", run_at, error=InvalidJobSpecError)
    if priority is not None:
        check_priority(priority, error=InvalidJobSpecError)
    if max_attempts is not None:
        check_max_attempts(max_attempts, error=InvalidJobSpecError)
    if attempts is not None:
        check_smallint("attempts", attempts, low=0, error=InvalidJobSpecError)
    statement = Statement(
        "fetch",
        render(RESCHEDULE_JOBS, schema),
        {
            "job_ids": job_ids(ids),
            "run_at": run_at,
            "priority": priority,
            "attempts": attempts,
            "max_attempts": max_attempts,
        },
    )
    return _jobs((yield statement))


def force_unlock_workers(schema: str, worker_ids: Iterable[str]) -> Operation[None]:
    """Release every job and queue locked by the given (dead) workers."""
    statement = Statement(
        "execute", render(FORCE_UNLOCK_WORKERS, schema), {"worker_ids": _worker_ids(worker_ids)}
    )
    yield statement
