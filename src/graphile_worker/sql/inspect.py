"""SQL for reading the queue without changing it: jobs, pages of jobs, counts, queues, locks.

Each state of :class:`~graphile_worker.inspection.JobState` is one SQL condition, written
here once and used by both the filters and the counts. ``ready`` and ``scheduled`` test
``is_available = true`` in the words of the partial indexes Node creates on it
(``jobs_main_index``, migration 11), so the planner can use them; ``locked`` and
``failed`` have no index in Node's schema, and adding one would slow every job's claim and
completion, the queue's hot path, to speed up an operator's query.

Pages are cut by job id (keyset pagination): ``id < :after`` walks the primary key
backwards from where the last page ended, so a deep page costs what the first one does.
The operations are generators of statements, driven by ``run_async`` or ``run_sync``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from .._validate import check_aware_datetime, check_flags, check_job_key, check_queue_name
from .._validate import check_task_identifier as _check_task
from ..errors import ConfigurationError
from ..inspection import (
    JobActivity,
    JobCounts,
    JobPage,
    JobState,
    LockHolder,
    QueueInfo,
    QueueStats,
)
from ..spec import Job
from . import quote_identifier, render
from ._job_reader import job_reader
from ._statement import Operation, Row, Statement
from .recovery import WORKER_REGISTRY_TABLE

__all__ = [
    "MAX_PAGE_SIZE",
    "STATE_CONDITIONS",
    "ListFilter",
    "counts_from_row",
    "get_job",
    "job_activity",
    "job_ids",
    "list_filter",
    "list_jobs",
    "lock_holders",
    "merge_counts",
    "parse_states",
    "payload_text",
    "queues",
    "render_ids",
    "render_list",
    "stats",
]

MAX_PAGE_SIZE = 10_000
"""The largest ``limit`` accepted: a bigger page is a bulk export, better done in SQL."""

STATE_CONDITIONS: dict[JobState, str] = {
    JobState.READY: "(job.is_available = true and job.run_at <= now())",
    JobState.SCHEDULED: "(job.is_available = true and job.run_at > now())",
    JobState.LOCKED: "(job.locked_at is not null)",
    # is_available already means "not locked and attempts < max_attempts".
    JobState.RETRYING: (
        "(job.is_available = true and job.attempts > 0 and job.last_error is not null)"
    ),
    # A locked job on its last attempt has attempts = max_attempts already (the claim
    # counts the attempt), but it is running, not failed; Node's DELETE_PERMAFAILED_JOBS
    # leaves it alone for the same reason. Unlocked, is_available is false exactly when
    # attempts >= max_attempts (its definition, Node migration 11). Said this way the
    # planner estimates the share of failed jobs from is_available's statistics; it has none
    # for one column compared with another and assumes a third of the table, so a search
    # for all failed jobs walked the primary key through most of a million rows instead of
    # reading the table once.
    JobState.FAILED: "(job.is_available = false and job.locked_at is null)",
}
"""The condition, on a ``_private_jobs`` row aliased ``job``, for each state."""

_JOB_FIELDS = tuple(field.name for field in dataclasses.fields(Job))
_READ_JOB = job_reader(_JOB_FIELDS)

_SELECT_JOBS = """
select job.id, job.job_queue_id, job.task_id, job.payload, job.priority, job.run_at,
  job.attempts, job.max_attempts, job.last_error, job.created_at, job.updated_at, job.key,
  job.locked_at, job.locked_by, job.revision, job.flags, job.is_available,
  task.identifier as task_identifier, queue.queue_name
from {schema}._private_jobs as job
join {schema}._private_tasks as task on task.id = job.task_id
left join {schema}._private_job_queues as queue on queue.id = job.job_queue_id
"""

GET_JOB = _SELECT_JOBS + "where job.id = CAST(:id AS bigint)\n"

# Ids alone, without the names joined in or the payloads decoded: what a bulk change needs.
_SELECT_IDS = "select job.id from {schema}._private_jobs as job\n"

# Conditions list_jobs may add, by filter name; only these fixed texts ever reach the SQL.
# Task and queue names become ids first (one index lookup each), so the jobs themselves are
# filtered on their own columns.
_FILTERS = {
    "task": (
        "job.task_id = (select task_by_name.id from {schema}._private_tasks as task_by_name"
        " where task_by_name.identifier = CAST(:task AS text))"
    ),
    "queue": (
        "job.job_queue_id = (select queue_by_name.id"
        " from {schema}._private_job_queues as queue_by_name"
        " where queue_by_name.queue_name = CAST(:queue AS text))"
    ),
    "flags": "job.flags ?& CAST(:flags AS text[])",
    "key": "job.key = CAST(:key AS text)",
    "older_than_at": "job.created_at < CAST(:older_than_at AS timestamptz)",
    "older_than_age": (
        "job.created_at < now() - CAST(:older_than_age AS double precision) * interval '1 second'"
    ),
    "newer_than_at": "job.created_at > CAST(:newer_than_at AS timestamptz)",
    "newer_than_age": (
        "job.created_at > now() - CAST(:newer_than_age AS double precision) * interval '1 second'"
    ),
    "after": "job.id < CAST(:after AS bigint)",
}

# The counts of one group of jobs; every caller groups by something and names it.
_COUNTS = f"""
  count(*) filter (where {STATE_CONDITIONS[JobState.READY]}) as ready,
  count(*) filter (where {STATE_CONDITIONS[JobState.SCHEDULED]}) as scheduled,
  count(*) filter (where {STATE_CONDITIONS[JobState.LOCKED]}) as locked,
  count(*) filter (where {STATE_CONDITIONS[JobState.RETRYING]}) as retrying,
  count(*) filter (where {STATE_CONDITIONS[JobState.FAILED]}) as failed,
  min(job.run_at) filter (where {STATE_CONDITIONS[JobState.READY]}) as oldest_ready_at"""

# One pass over the jobs, grouped by (task, queue): few groups, so the names are joined
# onto the groups, not onto a million rows, and Python folds them per task and per queue.
STATS = f"""
with grouped as (
  select job.task_id, job.job_queue_id,{_COUNTS}
  from {{schema}}._private_jobs as job
  group by job.task_id, job.job_queue_id
)
select task.identifier as task_identifier, queue.queue_name, grouped.ready,
  grouped.scheduled, grouped.locked, grouped.retrying, grouped.failed,
  grouped.oldest_ready_at, now() as as_of
from grouped
join {{schema}}._private_tasks as task on task.id = grouped.task_id
left join {{schema}}._private_job_queues as queue on queue.id = grouped.job_queue_id
"""

# Queues with no jobs left still show when a worker holds them (the lock outlives the job
# that took it until the worker releases it) or until GC_JOB_QUEUES collects them.
QUEUES = f"""
with grouped as (
  select job.job_queue_id,{_COUNTS}
  from {{schema}}._private_jobs as job
  where job.job_queue_id is not null
  group by job.job_queue_id
)
select queue.queue_name, queue.locked_by, queue.locked_at,
  coalesce(grouped.ready, 0) as ready, coalesce(grouped.scheduled, 0) as scheduled,
  coalesce(grouped.locked, 0) as locked, coalesce(grouped.retrying, 0) as retrying,
  coalesce(grouped.failed, 0) as failed, grouped.oldest_ready_at, now() as as_of
from {{schema}}._private_job_queues as queue
left join grouped on grouped.job_queue_id = queue.id
order by queue.queue_name
"""

_HOLDERS = """
with held as (
  select job.locked_by as worker_id, count(*) as locked_jobs, 0 as locked_queues,
    min(job.locked_at) as oldest_lock_at
  from {schema}._private_jobs as job
  where job.locked_by is not null
  group by job.locked_by
  union all
  select queue.locked_by, 0, count(*), min(queue.locked_at)
  from {schema}._private_job_queues as queue
  where queue.locked_by is not null
  group by queue.locked_by
), holders as (
  select held.worker_id, CAST(sum(held.locked_jobs) AS bigint) as locked_jobs,
    CAST(sum(held.locked_queues) AS bigint) as locked_queues,
    min(held.oldest_lock_at) as oldest_lock_at
  from held
  group by held.worker_id
)
"""

LOCK_HOLDERS_WITH_REGISTRY = f"""{_HOLDERS}
select holders.worker_id, holders.locked_jobs, holders.locked_queues, holders.oldest_lock_at,
  workers.worker_id is not null as registered,
  workers.last_heartbeat_at >= now() - workers.stale_after as alive
from holders
left join {{schema}}.{WORKER_REGISTRY_TABLE} as workers
  on workers.worker_id = holders.worker_id
order by holders.worker_id
"""

# A schema migrated by Node (or by an older version of ours) has no registry: every holder
# is then unregistered.
LOCK_HOLDERS_WITHOUT_REGISTRY = f"""{_HOLDERS}
select holders.worker_id, holders.locked_jobs, holders.locked_queues, holders.oldest_lock_at,
  false as registered, CAST(NULL AS boolean) as alive
from holders
order by holders.worker_id
"""

# The cast to regclass fails (undefined table) when the schema holds no jobs table, as every
# other read does; an existing table always has its statistics row.
JOB_ACTIVITY = """
select now() as as_of, stats.n_tup_ins as added, stats.n_tup_del as removed
from pg_stat_user_tables as stats
where stats.relid = CAST(CAST(:jobs_table AS text) AS regclass)
"""

# The payload as the database holds it, for a row whose JSON the driver could not decode.
PAYLOAD_TEXT = """
select CAST(job.payload AS text)
from {schema}._private_jobs as job
where job.id = CAST(:id AS bigint)
"""

_HAS_REGISTRY = "select to_regclass(CAST(:name AS text)) is not null"


@dataclasses.dataclass(frozen=True, slots=True)
class ListFilter:
    """A checked ``list_jobs`` call: which conditions apply, their parameters, the limit."""

    conditions: tuple[str, ...]
    params: dict[str, Any]
    limit: int


def parse_states(state: JobState | str | Iterable[JobState | str]) -> frozenset[JobState]:
    """The states ``state`` names: one state, or several (a job in any of them matches).

    Raises:
        ConfigurationError: a name is not a state, or no state is given.
    """
    given: Iterable[object] = [state] if isinstance(state, str) else state
    values = {member.value: member for member in JobState}
    states = set()
    for name in given:
        member = name if isinstance(name, JobState) else values.get(name)  # type: ignore[call-overload]
        if member is None:
            allowed = ", ".join(repr(value) for value in values)
            raise ConfigurationError(f"unknown job state {name!r}; choose from {allowed}")
        states.add(member)
    if not states:
        raise ConfigurationError("state must name at least one job state, or be None for all")
    return frozenset(states)


def _check_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise ConfigurationError(f"limit must be an int, not {type(limit).__name__} ({limit!r})")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ConfigurationError(
            f"limit must be between 1 and {MAX_PAGE_SIZE}, not {limit!r}; page through "
            "more jobs with after="
        )
    return limit


def _check_job_id(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a job id (int), not {value!r}")
    return value


def _time_bound(name: str, value: object) -> tuple[str, object]:
    """``(filter, parameter)`` for ``older_than``/``newer_than``: a moment or an age."""
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ConfigurationError(
                f"{name} must not be a negative timedelta ({value!r}); a timedelta is an age, "
                "counted back from the database's now()"
            )
        return f"{name}_age", value.total_seconds()
    if isinstance(value, datetime):
        return f"{name}_at", check_aware_datetime(name, value, error=ConfigurationError)
    raise ConfigurationError(
        f"{name} must be a timezone-aware datetime or a timedelta (an age), not "
        f"{type(value).__name__} ({value!r})"
    )


def list_filter(
    *,
    state: JobState | str | Iterable[JobState | str] | None = None,
    task: str | None = None,
    queue: str | None = None,
    flags: Collection[str] | None = None,
    key: str | None = None,
    older_than: datetime | timedelta | None = None,
    newer_than: datetime | timedelta | None = None,
    limit: int = 100,
    after: int | None = None,
) -> ListFilter:
    """Check ``list_jobs`` arguments and turn them into conditions and parameters.

    Raises:
        ConfigurationError: an argument has the wrong type or an impossible value.
    """
    error = ConfigurationError
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if state is not None:
        states = parse_states(state)
        # Listed in the enum's order, so one set of states always renders the same text.
        chosen = [STATE_CONDITIONS[member] for member in JobState if member in states]
        conditions.append(chosen[0] if len(chosen) == 1 else "(" + " or ".join(chosen) + ")")
    checked: dict[str, object] = {}
    if task is not None:
        checked["task"] = _check_task(task, error=error)
    if queue is not None:
        checked["queue"] = check_queue_name(queue, name="queue", error=error)
    if flags is not None:
        if isinstance(flags, str):
            raise error(f"flags must be a collection of flag names, not the string {flags!r}")
        checked["flags"] = sorted(check_flags(flags, error=error))
    if key is not None:
        checked["key"] = check_job_key(key, name="key", error=error)
    if older_than is not None:
        name, value = _time_bound("older_than", older_than)
        checked[name] = value
    if newer_than is not None:
        name, value = _time_bound("newer_than", newer_than)
        checked[name] = value
    if after is not None:
        checked["after"] = _check_job_id("after", after)
    for name, value in checked.items():
        conditions.append(_FILTERS[name])
        params[name] = value
    limit = _check_limit(limit)
    # One row more than the page shows whether another page follows.
    params["limit"] = limit + 1
    return ListFilter(tuple(conditions), params, limit)


def render_list(schema: str, conditions: Sequence[str]) -> str:
    """The ``list_jobs`` statement for these conditions, newest job first."""
    where = ("where " + "\n  and ".join(conditions) + "\n") if conditions else ""
    return render(_SELECT_JOBS + where + "order by job.id desc\nlimit :limit\n", schema)


def render_ids(schema: str, conditions: Sequence[str]) -> str:
    """The statement of one page of :func:`job_ids`: ids only, newest first."""
    where = ("where " + "\n  and ".join(conditions) + "\n") if conditions else ""
    return render(_SELECT_IDS + where + "order by job.id desc\nlimit :limit\n", schema)


def _job(row: Row) -> Job:
    return _READ_JOB([row[name] for name in _JOB_FIELDS])


def get_job(schema: str, job_id: int) -> Operation[Job | None]:
    """The job with ``job_id``, payload included, or ``None`` if there is none."""
    checked = _check_job_id("id", job_id)
    row = yield Statement("fetchrow", render(GET_JOB, schema), {"id": checked})
    return None if row is None else _job(row)


def list_jobs(schema: str, checked: ListFilter) -> Operation[JobPage]:
    """One page of jobs matching ``checked``, highest id first."""
    rows: list[Row] = yield Statement(
        "fetch", render_list(schema, checked.conditions), checked.params
    )
    jobs = tuple(_job(row) for row in rows[: checked.limit])
    next_after = jobs[-1].id if len(rows) > checked.limit else None
    return JobPage(jobs=jobs, next_after=next_after)


def job_ids(schema: str, checked: ListFilter, *, page_size: int) -> Operation[list[int]]:
    """The id of every job matching ``checked``, newest first, ``page_size`` ids a statement.

    ``checked``'s own limit is ignored, and it must not hold ``after``: the pages are cut
    here. Pages keep the memory a bulk change over a million jobs needs small, and most
    filters match fewer jobs than a page, so one statement (one read of the table at worst)
    answers them.
    """
    if "after" in checked.params:
        raise ConfigurationError("job_ids() pages by itself; build its filter without after")
    ids: list[int] = []
    conditions = list(checked.conditions)
    params = {**checked.params, "limit": page_size + 1}
    while True:
        rows: list[Row] = yield Statement("fetch", render_ids(schema, conditions), params)
        ids.extend(row["id"] for row in rows[:page_size])
        if len(rows) <= page_size:
            return ids
        if "after" not in params:
            conditions.append(_FILTERS["after"])
        params["after"] = ids[-1]


def counts_from_row(row: Row, as_of: datetime) -> JobCounts:
    """The counts in a row of :data:`STATS` or :data:`QUEUES`."""
    oldest: datetime | None = row["oldest_ready_at"]
    return JobCounts(
        ready=row["ready"],
        scheduled=row["scheduled"],
        locked=row["locked"],
        retrying=row["retrying"],
        failed=row["failed"],
        oldest_ready_at=oldest,
        oldest_ready_age=None if oldest is None else max(as_of - oldest, timedelta(0)),
    )


def merge_counts(first: JobCounts, second: JobCounts, as_of: datetime) -> JobCounts:
    """The counts of two disjoint groups of jobs together."""
    candidates = [at for at in (first.oldest_ready_at, second.oldest_ready_at) if at is not None]
    oldest = min(candidates) if candidates else None
    return JobCounts(
        ready=first.ready + second.ready,
        scheduled=first.scheduled + second.scheduled,
        locked=first.locked + second.locked,
        retrying=first.retrying + second.retrying,
        failed=first.failed + second.failed,
        oldest_ready_at=oldest,
        oldest_ready_age=None if oldest is None else max(as_of - oldest, timedelta(0)),
    )


def stats(schema: str) -> Operation[QueueStats]:
    """Counts of every job by state, in total, per task and per named queue."""
    rows: list[Row] = yield Statement("fetch", render(STATS, schema))
    # An empty table gives no group, so no now() either: ask for it alone.
    as_of: datetime = rows[0]["as_of"] if rows else (yield Statement("fetchval", "select now()"))
    total = JobCounts()
    by_task: dict[str, JobCounts] = {}
    by_queue: dict[str, JobCounts] = {}
    for row in rows:
        counts = counts_from_row(row, as_of)
        total = merge_counts(total, counts, as_of)
        task = row["task_identifier"]
        by_task[task] = merge_counts(by_task[task], counts, as_of) if task in by_task else counts
        queue = row["queue_name"]
        if queue is not None:
            previous = by_queue.get(queue)
            by_queue[queue] = counts if previous is None else merge_counts(previous, counts, as_of)
    return QueueStats(
        as_of=as_of,
        total=total,
        by_task=MappingProxyType(dict(sorted(by_task.items()))),
        by_queue=MappingProxyType(dict(sorted(by_queue.items()))),
    )


def queues(schema: str) -> Operation[list[QueueInfo]]:
    """Every named queue, by name, with its lock and its jobs' counts."""
    rows: list[Row] = yield Statement("fetch", render(QUEUES, schema))
    infos = []
    for row in rows:
        as_of: datetime = row["as_of"]
        locked_at: datetime | None = row["locked_at"]
        infos.append(
            QueueInfo(
                name=row["queue_name"],
                locked_by=row["locked_by"],
                locked_at=locked_at,
                lock_age=None if locked_at is None else max(as_of - locked_at, timedelta(0)),
                jobs=counts_from_row(row, as_of),
                as_of=as_of,
            )
        )
    return infos


def lock_holders(schema: str) -> Operation[list[LockHolder]]:
    """Every worker id holding a job or queue lock, marked with what the registry knows."""
    registry = f"{quote_identifier(schema)}.{WORKER_REGISTRY_TABLE}"
    has_registry = yield Statement("fetchval", _HAS_REGISTRY, {"name": registry})
    sql = LOCK_HOLDERS_WITH_REGISTRY if has_registry else LOCK_HOLDERS_WITHOUT_REGISTRY
    rows: list[Row] = yield Statement("fetch", render(sql, schema))
    return [
        LockHolder(
            worker_id=row["worker_id"],
            locked_jobs=row["locked_jobs"],
            locked_queues=row["locked_queues"],
            oldest_lock_at=row["oldest_lock_at"],
            registered=row["registered"],
            alive=row["alive"] if row["registered"] else None,
        )
        for row in rows
    ]


def job_activity(schema: str) -> Operation[JobActivity]:
    """The jobs table's cumulative insert and delete counters, with the database's time."""
    jobs_table = f"{quote_identifier(schema)}._private_jobs"
    row = yield Statement("fetchrow", JOB_ACTIVITY, {"jobs_table": jobs_table})
    if row is None:  # pragma: no cover - every user table has a statistics row
        as_of = yield Statement("fetchval", "select now()")
        return JobActivity(as_of=as_of, added=0, removed=0)
    return JobActivity(as_of=row["as_of"], added=int(row["added"]), removed=int(row["removed"]))


def payload_text(schema: str, job_id: int) -> Operation[str | None]:
    """The payload of job ``job_id`` as text, undecoded, or ``None`` if there is no such job.

    What the admin shows for a payload that reads as an
    :class:`~graphile_worker.UndecodableJson`: the text itself, which no decoder touched.
    """
    checked = _check_job_id("id", job_id)
    text: str | None = yield Statement("fetchval", render(PAYLOAD_TEXT, schema), {"id": checked})
    return text
