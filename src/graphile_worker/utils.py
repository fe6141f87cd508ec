"""Add and administer jobs from application code: :class:`WorkerUtils` and :class:`SyncWorkerUtils`.

The two classes are thin twins over :class:`_UtilsBase`, which checks arguments and builds
each call as an :data:`~graphile_worker.sql._statement.Operation` (from
:mod:`graphile_worker.sql.jobs` and :mod:`graphile_worker.sql.maintenance`). A twin's method
only hands that operation to :func:`~graphile_worker.sql._statement.run_async` or
:func:`~graphile_worker.sql._statement.run_sync`, so the async and sync APIs cannot drift.

Either twin runs over something the caller already has, in the caller's transaction:
an async driver or executor, a SQLAlchemy ``AsyncConnection``/``AsyncSession`` (async);
a sync psycopg connection, a SQLAlchemy ``Connection``/``Session`` or any
:class:`~graphile_worker.drivers.SyncExecutor` (sync). ``utils.using(session)`` switches an
existing utils object to a caller's connection or session, keeping its schema.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias, Union, cast, overload

from ._job_defaults import TaskReference, class_job_spec, merge_specs, task_target
from ._payload import JOB_DECORATORS, PreparedJob, identifier_of, prepare_job
from ._validate import check_task_identifier
from .drivers.base import AsyncExecutor, DatabaseDriver, SyncExecutor
from .errors import ConfigurationError, InvalidJobSpecError
from .inspection import (
    JobActivity,
    JobPage,
    JobState,
    KnownCrontab,
    LockHolder,
    QueueInfo,
    QueueStats,
)
from .migrations import MigrationReport, migrate, migrate_sync
from .recovery import SweepReport, WorkerInfo, list_workers, list_workers_sync, sweep, sweep_sync
from .spec import CleanupTask, Job, JobSpec, TypedPayload
from .sql import DEFAULT_SCHEMA, maintenance, quote_identifier
from .sql import cron as cron_sql
from .sql import grants as grants_sql
from .sql import inspect as inspect_sql
from .sql import jobs as jobs_sql
from .sql._statement import Operation, run_async, run_sync
from .sql.grants import GrantReport

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime, timedelta
    from types import TracebackType

    import psycopg
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
    from sqlalchemy.orm import Session
    from typing_extensions import Self

__all__ = ["JobInput", "SyncWorkerUtils", "WorkerUtils"]

JobInput: TypeAlias = Union[
    TypedPayload,
    "tuple[TypedPayload, JobSpec | None]",
    "tuple[str | TaskReference, object]",
    "tuple[str | TaskReference, object, JobSpec | None]",
]
"""One entry of ``add_jobs``: a typed payload, ``(typed_payload, spec)``,
``(identifier, payload)`` or ``(identifier, payload, spec)``, where a task function or
``Task`` may stand for the identifier (bringing its defaults)."""

SyncBind: TypeAlias = Union["Session", "Connection", "psycopg.Connection[Any]"]
"""A caller's sync connection or session that ``using`` accepts."""
AsyncBind: TypeAlias = Union["AsyncSession", "AsyncConnection"]
"""A caller's async connection or session that ``using`` accepts."""


def _worker_ids(ids: Iterable[str]) -> frozenset[str]:
    if isinstance(ids, str):
        raise ConfigurationError(f"dead must be a list of worker ids, not the string {ids!r}")
    checked = frozenset(ids)
    for worker_id in checked:
        if not isinstance(worker_id, str) or not worker_id:
            raise ConfigurationError(f"worker ids must be non-empty strings, not {worker_id!r}")
    return checked


class _NoPayload:
    """Marks ``add_job(typed_payload)`` calls, where no second argument was given."""

    def __repr__(self) -> str:
        return "<no payload>"


_NO_PAYLOAD: Any = _NoPayload()


_PLAIN_PAYLOADS: frozenset[type] = frozenset({dict, list, str, int, float, bool, type(None)})
"""Payload types that cannot declare a ``JOB_SPEC``: no need to look."""


def _with_class_spec(payload: object, spec: JobSpec | None) -> JobSpec | None:
    """``spec`` over the ``JOB_SPEC`` defaults of the payload's class, when it has them."""
    cls = type(payload)
    if cls in _PLAIN_PAYLOADS:
        return spec
    defaults = class_job_spec(cls)
    return spec if defaults is None else merge_specs(defaults, spec)


def _lone_entry(entries: object) -> bool:
    """``(identifier, payload)`` or ``(task, payload)`` where a list of them was meant."""
    if not isinstance(entries, tuple) or not entries:
        return False
    first = entries[0]
    return isinstance(first, str) or task_target(first) is not None


def _prepare(
    target: object, payload: object, spec: JobSpec | None, *, in_batch: bool = False
) -> PreparedJob:
    """Resolve the ``add_job`` call shapes to one checked job, with any defaults applied.

    Defaults come, weakest first, from the payload class's ``JOB_SPEC``, then the task's
    own (when the task is named by its function or ``Task``), then ``spec``.
    """
    if isinstance(target, str):
        payload = None if payload is _NO_PAYLOAD else payload
        return prepare_job(target, payload, _with_class_spec(payload, spec))
    through = task_target(target)
    if through is not None:
        payload = None if payload is _NO_PAYLOAD else payload
        spec = through.defaults.apply(payload, spec, in_batch=in_batch)
        return prepare_job(through.identifier, payload, _with_class_spec(payload, spec))
    if isinstance(target, type) and isinstance(getattr(target, "IDENTIFIER", None), str):
        raise InvalidJobSpecError(
            f"add_job() got the class {target.__qualname__} itself; pass an instance: "
            f"add_job({target.__qualname__}(...))"
        )
    identifier = identifier_of(target)
    if identifier is None:
        raise InvalidJobSpecError(
            f"add_job() got a {type(target).__qualname__} without a task identifier; pass "
            "add_job('task_name', payload), add_job(task_function, payload), or give the "
            "payload class an IDENTIFIER class attribute"
        )
    if payload is not _NO_PAYLOAD:
        raise TypeError(
            f"add_job() got a typed payload ({type(target).__qualname__}) and a second "
            "positional argument; the typed payload is the whole payload, so pass the spec "
            "by keyword: add_job(payload, spec=JobSpec(...)); to name the task yourself, "
            "add_job('task_name', payload, spec=...)"
        )
    return prepare_job(identifier, target, _with_class_spec(target, spec))


def _prepare_entry(entry: object) -> PreparedJob:
    """One ``add_jobs`` entry; the batch's job-key mode is not the tasks' to choose."""
    if identifier_of(entry) is not None:
        return _prepare(entry, _NO_PAYLOAD, None)
    if isinstance(entry, tuple):
        if len(entry) == 3 and (isinstance(entry[0], str) or task_target(entry[0]) is not None):
            return _prepare(*entry, in_batch=True)
        if len(entry) == 2:
            first, second = entry
            if isinstance(first, str) or task_target(first) is not None:
                return _prepare(first, second, None, in_batch=True)
            return _prepare(first, _NO_PAYLOAD, second)
    raise InvalidJobSpecError(
        f"cannot add {entry!r:.80}: use a typed payload, (typed_payload, spec), "
        "(identifier or task, payload) or (identifier or task, payload, spec)"
    )


def _prepare_many(entries: Iterable[JobInput]) -> list[PreparedJob]:
    if isinstance(entries, (str, bytes)) or _lone_entry(entries) or _is_typed(entries):
        # A lone (identifier, payload) tuple is an easy slip for [(identifier, payload)].
        raise InvalidJobSpecError(f"add_jobs() takes a list of jobs, not {entries!r:.80}")
    prepared = []
    for position, entry in enumerate(entries):
        try:
            prepared.append(_prepare_entry(entry))
        except InvalidJobSpecError as error:  # noqa: PERF203 - only on the way out
            raise InvalidJobSpecError(f"add_jobs() job {position}: {error}") from error
    return prepared


class _Unusual(Exception):
    """An entry the fast path of :func:`_prepare_batch` leaves to :func:`_prepare_many`."""


def _prepare_batch(entries: Iterable[JobInput]) -> jobs_sql.JobBatch:
    """Check and encode a whole ``add_jobs`` batch: :func:`_prepare_many`, only faster.

    The common entries (``(identifier, payload)``, ``(identifier, payload, spec)``, typed
    payloads with or without a spec) are sorted into columns, each distinct identifier is
    checked once, and the payloads are encoded together. Anything else, and any batch
    that fails, goes through :func:`_prepare_many` from the start, so errors (and which
    job they name first) are exactly those of preparing job by job.
    """
    if JOB_DECORATORS:  # each payload must pass through them on its own
        return jobs_sql.JobBatch.of(_prepare_many(entries))
    if type(entries) is not list:
        if isinstance(entries, (str, bytes)) or _lone_entry(entries) or _is_typed(entries):
            return jobs_sql.JobBatch.of(_prepare_many(entries))
        entries = list(entries)
    identifiers: list[str] = []
    payloads: list[object] = []
    specs: list[JobSpec | None] = []
    checked: set[str] = set()
    typed: dict[type, str] = {}
    try:
        for entry in entries:
            spec: object = None
            if type(entry) is tuple:
                if len(entry) == 2:
                    identifier, payload = entry
                    if not isinstance(identifier, str):
                        payload, spec = identifier, payload  # (typed_payload, spec)
                        identifier = typed.get(type(payload)) or _typed_identifier(payload, typed)
                elif len(entry) == 3 and isinstance(entry[0], str):
                    identifier, payload, spec = entry
                else:
                    raise _Unusual
                assert isinstance(identifier, str)
                if type(payload) not in _PLAIN_PAYLOADS and class_job_spec(type(payload)):
                    raise _Unusual  # defaults to merge: the slow path knows how
                if identifier not in checked:
                    check_task_identifier(identifier, error=InvalidJobSpecError)
                    checked.add(identifier)
            elif isinstance(entry, str):
                raise _Unusual
            else:
                payload = entry
                identifier = typed.get(type(entry)) or _typed_identifier(entry, typed)
            if spec is not None and not isinstance(spec, JobSpec):
                raise _Unusual
            identifiers.append(identifier)
            payloads.append(payload)
            specs.append(spec)
        return jobs_sql.encode_batch(identifiers, payloads, specs)
    except (_Unusual, InvalidJobSpecError):
        return jobs_sql.JobBatch.of(_prepare_many(entries))


def _typed_identifier(payload: object, known: dict[type, str]) -> str:
    identifier = identifier_of(payload)
    if identifier is None or class_job_spec(type(payload)) is not None:
        # Not typed, or with defaults to merge: the slow path knows how.
        raise _Unusual
    known[type(payload)] = identifier
    return identifier


def _is_typed(value: object) -> bool:
    return getattr(type(value), "IDENTIFIER", None) is not None


def _is_async_executor(value: object) -> bool:
    return isinstance(value, AsyncExecutor) and inspect.iscoroutinefunction(value.fetch)


def _loaded_class(module: str, name: str) -> type | None:
    # Checking sys.modules avoids importing SQLAlchemy (slow) or its asyncio extension
    # (needs greenlet) just to learn that an object is not one of theirs.
    loaded = sys.modules.get(module)
    found = getattr(loaded, name, None) if loaded is not None else None
    return found if isinstance(found, type) else None


def _is_instance(value: object, module: str, name: str) -> bool:
    cls = _loaded_class(module, name)
    return cls is not None and isinstance(value, cls)


def _sync_executor(bind: object) -> tuple[SyncExecutor, Callable[[], bool]] | None:
    """Adapt ``bind``; the callable says whether it is inside a transaction it must not end."""
    if _is_instance(bind, "psycopg", "Connection"):
        from .drivers._psycopg_common import PsycopgSyncExecutor

        connection = cast("psycopg.Connection[Any]", bind)
        return PsycopgSyncExecutor(connection), lambda: not connection.autocommit
    if _is_instance(bind, "sqlalchemy.orm", "Session") or _is_instance(
        bind, "sqlalchemy.engine", "Connection"
    ):
        from .drivers.sqlalchemy import SQLAlchemySyncExecutor

        return SQLAlchemySyncExecutor(bind), lambda: True  # type: ignore[arg-type]
    if isinstance(bind, SyncExecutor) and not _is_async_executor(bind):
        # Like migrate_sync, assume a bare executor is an autocommit connection.
        return bind, lambda: False
    return None


def _async_executor(bind: object) -> tuple[AsyncExecutor, bool] | None:
    """Adapt ``bind``; the flag says whether it is inside a transaction it must not end."""
    if isinstance(bind, DatabaseDriver):
        return bind, False
    if _is_instance(bind, "sqlalchemy.ext.asyncio", "AsyncSession") or _is_instance(
        bind, "sqlalchemy.ext.asyncio", "AsyncConnection"
    ):
        from .drivers.sqlalchemy import SQLAlchemyAsyncExecutor

        return SQLAlchemyAsyncExecutor(bind), True  # type: ignore[arg-type]
    if _is_async_executor(bind):
        return bind, True  # type: ignore[return-value]
    return None


def _unsupported(bind: object, family: str) -> ConfigurationError:
    return ConfigurationError(
        f"cannot run graphile-worker utilities over a {type(bind).__module__}."
        f"{type(bind).__qualname__}; {family}"
    )


_SYNC_HINT = (
    "SyncWorkerUtils takes a sync psycopg connection, a SQLAlchemy Connection or Session, "
    "or a SyncExecutor"
)
_ASYNC_HINT = (
    "WorkerUtils takes a DatabaseDriver (see WorkerUtils.connect), an AsyncExecutor, or a "
    "SQLAlchemy AsyncConnection or AsyncSession"
)


def _utils_over(bind: object, schema: str) -> SyncWorkerUtils | WorkerUtils:
    """The utils family that fits ``bind`` (see :meth:`_UtilsBase.using`)."""
    if _async_executor(bind) is not None:
        return WorkerUtils(bind, schema=schema)  # type: ignore[arg-type]
    if _sync_executor(bind) is not None:
        return SyncWorkerUtils(bind, schema=schema)  # type: ignore[arg-type]
    raise _unsupported(bind, f"{_SYNC_HINT}; {_ASYNC_HINT}")


class _UtilsBase:
    """Everything both twins share: the schema, argument checks and the operations."""

    __slots__ = ("_schema",)

    def __init__(self, schema: str) -> None:
        quote_identifier(schema)
        self._schema = schema

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding graphile-worker's tables (default ``graphile_worker``)."""
        return self._schema

    @overload
    def using(self, bind: SyncBind) -> SyncWorkerUtils: ...

    @overload
    def using(self, bind: AsyncBind) -> WorkerUtils: ...

    def using(self, bind: SyncBind | AsyncBind) -> SyncWorkerUtils | WorkerUtils:
        """Utilities of the right family over a caller's connection or session, same schema.

        Everything they do joins the caller's current transaction and is never committed
        here: roll back and the jobs are gone, commit and workers see them. No other
        connection is opened. Sync psycopg connections and SQLAlchemy ``Connection`` /
        ``Session`` give a :class:`SyncWorkerUtils`; SQLAlchemy ``AsyncConnection`` /
        ``AsyncSession`` give a :class:`WorkerUtils`.
        """
        return _utils_over(bind, self._schema)

    # Each method below only decides: it checks arguments and returns the operation.

    def _add_job(self, target: object, payload: object, spec: JobSpec | None) -> Operation[Job]:
        return jobs_sql.add_job(self._schema, _prepare(target, payload, spec))

    def _add_jobs(
        self, entries: Iterable[JobInput], job_key_preserve_run_at: bool
    ) -> Operation[list[Job]]:
        return jobs_sql.add_jobs(self._schema, _prepare_batch(entries), job_key_preserve_run_at)

    def _remove_job(self, job_key: str) -> Operation[Job | None]:
        return jobs_sql.remove_job(self._schema, job_key)

    def _complete_jobs(self, ids: Iterable[int]) -> Operation[list[Job]]:
        return jobs_sql.complete_jobs(self._schema, jobs_sql.job_ids(ids))

    def _permanently_fail_jobs(
        self, ids: Iterable[int], reason: str | None
    ) -> Operation[list[Job]]:
        return jobs_sql.permanently_fail_jobs(self._schema, jobs_sql.job_ids(ids), reason)

    def _reschedule_jobs(
        self,
        ids: Iterable[int],
        run_at: datetime | None,
        priority: int | None,
        attempts: int | None,
        max_attempts: int | None,
    ) -> Operation[list[Job]]:
        return jobs_sql.reschedule_jobs(
            self._schema,
            jobs_sql.job_ids(ids),
            run_at=run_at,
            priority=priority,
            attempts=attempts,
            max_attempts=max_attempts,
        )

    def _force_unlock_workers(self, worker_ids: Iterable[str]) -> Operation[None]:
        return jobs_sql.force_unlock_workers(self._schema, worker_ids)

    def _cleanup(
        self,
        tasks: Iterable[CleanupTask | str] | None,
        task_identifiers_to_keep: Iterable[str] | None,
    ) -> Operation[dict[CleanupTask, int]]:
        return maintenance.cleanup(self._schema, tasks, task_identifiers_to_keep)

    def _list_jobs(
        self,
        state: JobState | str | Iterable[JobState | str] | None,
        task: str | None,
        queue: str | None,
        flags: Collection[str] | None,
        key: str | None,
        older_than: datetime | timedelta | None,
        newer_than: datetime | timedelta | None,
        limit: int,
        after: int | None,
    ) -> Operation[JobPage]:
        checked = inspect_sql.list_filter(
            state=state,
            task=task,
            queue=queue,
            flags=flags,
            key=key,
            older_than=older_than,
            newer_than=newer_than,
            limit=limit,
            after=after,
        )
        return inspect_sql.list_jobs(self._schema, checked)

    def _job_ids(
        self,
        state: JobState | str | Iterable[JobState | str] | None,
        task: str | None,
        queue: str | None,
        flags: Collection[str] | None,
        key: str | None,
        older_than: datetime | timedelta | None,
        newer_than: datetime | timedelta | None,
    ) -> Operation[list[int]]:
        # Checked here, before the generator runs, so a bad filter fails before any page.
        checked = inspect_sql.list_filter(
            state=state,
            task=task,
            queue=queue,
            flags=flags,
            key=key,
            older_than=older_than,
            newer_than=newer_than,
        )
        return inspect_sql.job_ids(self._schema, checked, page_size=_ID_PAGE)

    def _grant(self, role: str, read_only: bool, dry_run: bool) -> Operation[GrantReport]:
        return grants_sql.grant(self._schema, role, read_only=read_only, dry_run=dry_run)


_ID_PAGE = 100_000
"""Ids read per statement by ``job_ids``: few enough to keep memory small, and more than
most filters match, so those are answered by one statement."""


class WorkerUtils(_UtilsBase):
    """Add and administer jobs from async code (asyncio or trio, depending on the driver).

    Build one with :meth:`connect` (it then owns its driver: close it with :meth:`aclose`
    or ``async with``), over a driver you already have (``WorkerUtils(driver)``) or an
    application's SQLAlchemy ``Engine``/``AsyncEngine`` (never disposed here), or over
    a SQLAlchemy ``AsyncConnection``/``AsyncSession`` to work inside its transaction.
    """

    __slots__ = ("_executor", "_in_transaction", "_owned_driver")

    def __init__(
        self,
        executor: DatabaseDriver | AsyncExecutor | AsyncBind | Engine | AsyncEngine,
        *,
        schema: str = DEFAULT_SCHEMA,
    ) -> None:
        super().__init__(schema)
        if _is_instance(executor, "sqlalchemy.engine", "Engine") or _is_instance(
            executor, "sqlalchemy.ext.asyncio", "AsyncEngine"
        ):  # an application's engine: borrow a pooled connection per call
            from .drivers.sqlalchemy_engine import SQLAlchemyEngineDriver

            executor = SQLAlchemyEngineDriver(cast("Engine | AsyncEngine", executor))
        adapted = _async_executor(executor)
        if adapted is None:
            raise _unsupported(executor, _ASYNC_HINT)
        self._executor, self._in_transaction = adapted
        self._owned_driver: DatabaseDriver | None = None

    @classmethod
    async def connect(
        cls,
        url: str | None = None,
        *,
        driver: str = "auto",
        schema: str = DEFAULT_SCHEMA,
    ) -> WorkerUtils:
        """Open a driver for ``url`` (``DATABASE_URL`` when ``None``) that the utils own."""
        quote_identifier(schema)
        from .drivers import create_driver

        opened: DatabaseDriver = await create_driver(url, driver=driver)
        utils = cls(opened, schema=schema)
        utils._owned_driver = opened
        return utils

    async def aclose(self) -> None:
        """Close the driver :meth:`connect` opened; a borrowed executor is left alone."""
        owned, self._owned_driver = self._owned_driver, None
        if owned is not None:
            await owned.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @overload
    async def add_job(self, payload: TypedPayload, /, *, spec: JobSpec | None = None) -> Job: ...

    @overload
    async def add_job(
        self,
        identifier: str | TaskReference,
        payload: object = None,
        /,
        *,
        spec: JobSpec | None = None,
    ) -> Job: ...

    async def add_job(
        self,
        target: TypedPayload | str | TaskReference,
        payload: object = _NO_PAYLOAD,
        /,
        *,
        spec: JobSpec | None = None,
    ) -> Job:
        """Queue one job and return it as stored.

        ``add_job(SendEmail(to=...))`` takes the task identifier from the payload's class
        (see :class:`~graphile_worker.spec.TypedPayload`); ``add_job("send_email", {...})``
        names it, for any task (the payload may then be any JSON-encodable value, a typed
        payload included). ``spec=`` sets the queue, time, priority, job key and so on.

        Raises:
            InvalidJobSpecError: the payload or spec cannot be queued (nothing was sent).
        """
        return await run_async(self._add_job(target, payload, spec), self._executor)

    async def add_jobs(
        self, jobs: Iterable[JobInput], *, job_key_preserve_run_at: bool = False
    ) -> list[Job]:
        """Queue many jobs in one statement; returns them in the order given.

        The whole batch shares one job-key behaviour: replace, or with
        ``job_key_preserve_run_at=True`` keep a waiting job's ``run_at``. ``unsafe_dedupe``
        needs :meth:`add_job`.
        """
        return await run_async(self._add_jobs(jobs, job_key_preserve_run_at), self._executor)

    async def remove_job(self, job_key: str) -> Job | None:
        """Delete the job with ``job_key``; a running one instead loses its key and retries."""
        return await run_async(self._remove_job(job_key), self._executor)

    async def complete_jobs(self, ids: Iterable[int]) -> list[Job]:
        """Mark unlocked jobs as done (deleting them); returns the jobs that were."""
        return await run_async(self._complete_jobs(ids), self._executor)

    async def permanently_fail_jobs(
        self, ids: Iterable[int], reason: str | None = None
    ) -> list[Job]:
        """Fail unlocked jobs for good (attempts = max_attempts); returns the jobs changed."""
        return await run_async(self._permanently_fail_jobs(ids, reason), self._executor)

    async def reschedule_jobs(
        self,
        ids: Iterable[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> list[Job]:
        """Change unlocked jobs' timing and retry budget; ``None`` leaves a field alone."""
        operation = self._reschedule_jobs(ids, run_at, priority, attempts, max_attempts)
        return await run_async(operation, self._executor)

    async def force_unlock_workers(self, worker_ids: Iterable[str]) -> None:
        """Release jobs and queues held by workers that are known to be dead."""
        await run_async(self._force_unlock_workers(worker_ids), self._executor)

    async def list_workers(self) -> list[WorkerInfo]:
        """The workers in the registry, oldest first; see :mod:`graphile_worker.recovery`.

        Raises:
            MigrationError: the schema has no worker registry (migrate with this version).
        """
        return await list_workers(self._executor, schema=self._schema)

    async def sweep(self, *, dry_run: bool = False, dead: Iterable[str] = ()) -> SweepReport:
        """Recover the jobs of workers that stopped heartbeating, as running workers do.

        Args:
            dry_run: Change nothing; the report says what would be done.
            dead: Ids of workers known to be dead, recovered whatever their heartbeat.

        Raises:
            MigrationError: the schema has no worker registry (migrate with this version).
        """
        return await sweep(
            self._executor,
            schema=self._schema,
            dry_run=dry_run,
            dead=_worker_ids(dead),
            in_transaction=self._in_transaction,
        )

    async def cleanup(
        self,
        *,
        tasks: Iterable[CleanupTask | str] | None = None,
        task_identifiers_to_keep: Iterable[str] | None = None,
    ) -> dict[CleanupTask, int]:
        """Delete unused task identifiers and queues, or permanently failed jobs.

        Without ``tasks`` this runs ``GC_JOB_QUEUES``, plus ``GC_TASK_IDENTIFIERS`` when
        ``task_identifiers_to_keep`` is given (Node's defaults). Returns the number of rows
        each task deleted.
        """
        operation = self._cleanup(tasks, task_identifiers_to_keep)
        return await run_async(operation, self._executor)

    async def get_job(self, id: int) -> Job | None:
        """The job with this id, payload included, or ``None`` once it is done or deleted.

        A row whose payload the driver cannot decode comes back with an
        :class:`~graphile_worker.UndecodableJson` payload rather than failing the call.
        """
        return await run_async(inspect_sql.get_job(self._schema, id), self._executor)

    async def list_jobs(
        self,
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
    ) -> JobPage:
        """One page of jobs, newest (highest id) first; filters combine with "and".

        Args:
            state: A :class:`~graphile_worker.JobState` (or its value), or several: a job
                in any of them matches. ``RETRYING`` jobs are also ``READY`` or
                ``SCHEDULED``.
            task: Only jobs for this task identifier.
            queue: Only jobs in this named queue.
            flags: Only jobs carrying every one of these flags.
            key: Only the job with this job key.
            older_than: Only jobs created before this moment, or more than this long ago
                (a timedelta, counted back from the database's ``now()``).
            newer_than: Only jobs created after this moment, or less than this long ago.
            limit: Jobs per page, 1 to 10,000.
            after: The previous page's ``next_after``: continue below that job id.

        Raises:
            ConfigurationError: an argument is invalid (nothing was sent).
        """
        operation = self._list_jobs(
            state, task, queue, flags, key, older_than, newer_than, limit, after
        )
        return await run_async(operation, self._executor)

    async def job_ids(
        self,
        *,
        state: JobState | str | Iterable[JobState | str] | None = None,
        task: str | None = None,
        queue: str | None = None,
        flags: Collection[str] | None = None,
        key: str | None = None,
        older_than: datetime | timedelta | None = None,
        newer_than: datetime | timedelta | None = None,
    ) -> list[int]:
        """The id of every job the filters of :meth:`list_jobs` select, newest first.

        What a bulk change acts on (``jobs retry --state failed``, the admin's bulk
        actions): pass the ids to :meth:`reschedule_jobs`, :meth:`permanently_fail_jobs` or
        :meth:`complete_jobs`, which skip jobs a worker holds. Read page by page, so a
        job added meanwhile may be missed, and none is listed twice.

        Raises:
            ConfigurationError: a filter is invalid (nothing was sent).
        """
        operation = self._job_ids(state, task, queue, flags, key, older_than, newer_than)
        return await run_async(operation, self._executor)

    async def known_crontabs(self) -> list[KnownCrontab]:
        """Every cron identifier a scheduler has registered, by identifier, with its last run."""
        return await run_async(cron_sql.known_crontabs(self._schema), self._executor)

    async def stats(self) -> QueueStats:
        """Job counts by state, in total, per task and per named queue, in one pass.

        The pass reads every job row once (no index covers all the states), so it costs
        a little more than ``select count(*)`` on the jobs table: about 200 ms for a
        million jobs on a small server with default settings.
        """
        return await run_async(inspect_sql.stats(self._schema), self._executor)

    async def job_activity(self) -> JobActivity:
        """PostgreSQL's running totals of jobs added and removed, read without counting jobs.

        Take two readings and subtract them for the jobs added and finished in between (the
        admin's throughput chart does); see :class:`~graphile_worker.inspection.JobActivity`.
        """
        return await run_async(inspect_sql.job_activity(self._schema), self._executor)

    async def queues(self) -> list[QueueInfo]:
        """Every named queue, by name: who holds its lock, since when, and its job counts."""
        return await run_async(inspect_sql.queues(self._schema), self._executor)

    async def lock_holders(self) -> list[LockHolder]:
        """Every worker id holding job or queue locks, and whether the registry knows it alive.

        Holders that are registered but not alive are what :meth:`sweep` recovers;
        unregistered ones (Node workers) keep their locks until Node's four-hour expiry.
        """
        return await run_async(inspect_sql.lock_holders(self._schema), self._executor)

    async def migrate(self) -> MigrationReport:
        """Install or upgrade the schema (see :func:`graphile_worker.migrate`)."""
        return await migrate(
            self._executor, schema=self._schema, in_transaction=self._in_transaction
        )

    async def grant(
        self, role: str, *, read_only: bool = False, dry_run: bool = False
    ) -> GrantReport:
        """Let ``role``, which does not own the schema, run workers and add jobs.

        Grants what a worker and these utilities use, and creates the row-level security
        policies without which such a role sees no job at all (Node's migrations enable
        row-level security and create no policy). With ``read_only``, only what a dashboard
        or monitoring needs: reading, no adding. Run it as the schema's owner; repeating it
        is harmless, and it should be repeated after a migration adds tables. See
        :mod:`graphile_worker.sql.grants` for the exact model.

        Args:
            dry_run: Return the SQL without running it (an unprivileged role may ask too).

        Raises:
            ConfigurationError: the role does not exist, or the schema is not installed.
            InsufficientPrivilegeError: the connected role does not own the schema.
        """
        operation = self._grant(role, read_only, dry_run)
        return await run_async(operation, self._executor)


class SyncWorkerUtils(_UtilsBase):
    """The blocking twin of :class:`WorkerUtils`, for sync code (scripts, WSGI apps, Alembic).

    Build it over a sync psycopg connection, a SQLAlchemy ``Connection`` or ``Session``
    (work then joins that transaction), or with :meth:`connect` to own an autocommit
    psycopg connection (close it with :meth:`close` or ``with``).
    """

    __slots__ = ("_executor", "_in_transaction", "_owned_connection")

    def __init__(
        self,
        executor: SyncExecutor | SyncBind,
        *,
        schema: str = DEFAULT_SCHEMA,
    ) -> None:
        super().__init__(schema)
        adapted = _sync_executor(executor)
        if adapted is None:
            raise _unsupported(executor, _SYNC_HINT)
        self._executor, self._in_transaction = adapted
        self._owned_connection: psycopg.Connection[Any] | None = None

    @classmethod
    def connect(cls, url: str | None = None, *, schema: str = DEFAULT_SCHEMA) -> SyncWorkerUtils:
        """Open an autocommit psycopg connection to ``url`` (``DATABASE_URL`` when ``None``)."""
        quote_identifier(schema)
        try:
            import psycopg
        except ImportError as error:
            from .errors import DriverUnavailableError

            raise DriverUnavailableError(
                "SyncWorkerUtils.connect needs psycopg; install graphile-worker[psycopg]"
            ) from error
        from .drivers._errors import map_exceptions
        from .drivers._psycopg_common import PSYCOPG_ERRORS
        from .drivers._url import resolve_url

        resolved = resolve_url(url)
        with map_exceptions(PSYCOPG_ERRORS):
            connection = psycopg.connect(resolved, autocommit=True)
        utils = cls(connection, schema=schema)
        utils._owned_connection = connection
        return utils

    def close(self) -> None:
        """Close the connection :meth:`connect` opened; a borrowed one is left alone."""
        owned, self._owned_connection = self._owned_connection, None
        if owned is not None:
            owned.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @overload
    def add_job(self, payload: TypedPayload, /, *, spec: JobSpec | None = None) -> Job: ...

    @overload
    def add_job(
        self,
        identifier: str | TaskReference,
        payload: object = None,
        /,
        *,
        spec: JobSpec | None = None,
    ) -> Job: ...

    def add_job(
        self,
        target: TypedPayload | str | TaskReference,
        payload: object = _NO_PAYLOAD,
        /,
        *,
        spec: JobSpec | None = None,
    ) -> Job:
        """Queue one job and return it as stored; see :meth:`WorkerUtils.add_job`."""
        return run_sync(self._add_job(target, payload, spec), self._executor)

    def add_jobs(
        self, jobs: Iterable[JobInput], *, job_key_preserve_run_at: bool = False
    ) -> list[Job]:
        """Queue many jobs in one statement; see :meth:`WorkerUtils.add_jobs`."""
        return run_sync(self._add_jobs(jobs, job_key_preserve_run_at), self._executor)

    def remove_job(self, job_key: str) -> Job | None:
        """Delete the job with ``job_key``; see :meth:`WorkerUtils.remove_job`."""
        return run_sync(self._remove_job(job_key), self._executor)

    def complete_jobs(self, ids: Iterable[int]) -> list[Job]:
        """Mark unlocked jobs as done (deleting them); returns the jobs that were."""
        return run_sync(self._complete_jobs(ids), self._executor)

    def permanently_fail_jobs(self, ids: Iterable[int], reason: str | None = None) -> list[Job]:
        """Fail unlocked jobs for good; see :meth:`WorkerUtils.permanently_fail_jobs`."""
        return run_sync(self._permanently_fail_jobs(ids, reason), self._executor)

    def reschedule_jobs(
        self,
        ids: Iterable[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> list[Job]:
        """Change unlocked jobs' timing and retry budget; ``None`` leaves a field alone."""
        operation = self._reschedule_jobs(ids, run_at, priority, attempts, max_attempts)
        return run_sync(operation, self._executor)

    def force_unlock_workers(self, worker_ids: Iterable[str]) -> None:
        """Release jobs and queues held by workers that are known to be dead."""
        run_sync(self._force_unlock_workers(worker_ids), self._executor)

    def list_workers(self) -> list[WorkerInfo]:
        """The workers in the registry, oldest first (see :meth:`WorkerUtils.list_workers`)."""
        return list_workers_sync(self._executor, schema=self._schema)

    def sweep(self, *, dry_run: bool = False, dead: Iterable[str] = ()) -> SweepReport:
        """Recover the jobs of dead workers (see :meth:`WorkerUtils.sweep`)."""
        return sweep_sync(
            self._executor,
            schema=self._schema,
            dry_run=dry_run,
            dead=_worker_ids(dead),
            in_transaction=self._in_transaction(),
        )

    def cleanup(
        self,
        *,
        tasks: Iterable[CleanupTask | str] | None = None,
        task_identifiers_to_keep: Iterable[str] | None = None,
    ) -> dict[CleanupTask, int]:
        """Delete unused task identifiers and queues, or permanently failed jobs."""
        return run_sync(self._cleanup(tasks, task_identifiers_to_keep), self._executor)

    def get_job(self, id: int) -> Job | None:
        """The job with this id, or ``None``; see :meth:`WorkerUtils.get_job`."""
        return run_sync(inspect_sql.get_job(self._schema, id), self._executor)

    def list_jobs(
        self,
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
    ) -> JobPage:
        """One page of jobs, newest first; see :meth:`WorkerUtils.list_jobs`."""
        operation = self._list_jobs(
            state, task, queue, flags, key, older_than, newer_than, limit, after
        )
        return run_sync(operation, self._executor)

    def job_ids(
        self,
        *,
        state: JobState | str | Iterable[JobState | str] | None = None,
        task: str | None = None,
        queue: str | None = None,
        flags: Collection[str] | None = None,
        key: str | None = None,
        older_than: datetime | timedelta | None = None,
        newer_than: datetime | timedelta | None = None,
    ) -> list[int]:
        """See :meth:`WorkerUtils.job_ids`."""
        operation = self._job_ids(state, task, queue, flags, key, older_than, newer_than)
        return run_sync(operation, self._executor)

    def known_crontabs(self) -> list[KnownCrontab]:
        """See :meth:`WorkerUtils.known_crontabs`."""
        return run_sync(cron_sql.known_crontabs(self._schema), self._executor)

    def stats(self) -> QueueStats:
        """Job counts by state, per task and per queue; see :meth:`WorkerUtils.stats`."""
        return run_sync(inspect_sql.stats(self._schema), self._executor)

    def job_activity(self) -> JobActivity:
        """Cumulative jobs added and removed; see :meth:`WorkerUtils.job_activity`."""
        return run_sync(inspect_sql.job_activity(self._schema), self._executor)

    def queues(self) -> list[QueueInfo]:
        """Every named queue with its lock and job counts; see :meth:`WorkerUtils.queues`."""
        return run_sync(inspect_sql.queues(self._schema), self._executor)

    def lock_holders(self) -> list[LockHolder]:
        """Every worker id holding locks; see :meth:`WorkerUtils.lock_holders`."""
        return run_sync(inspect_sql.lock_holders(self._schema), self._executor)

    def migrate(self) -> MigrationReport:
        """Install or upgrade the schema (see :func:`graphile_worker.migrate_sync`)."""
        return migrate_sync(
            self._executor, schema=self._schema, in_transaction=self._in_transaction()
        )

    def grant(self, role: str, *, read_only: bool = False, dry_run: bool = False) -> GrantReport:
        """Let ``role`` run workers (or only read); see :meth:`WorkerUtils.grant`."""
        operation = self._grant(role, read_only, dry_run)
        return run_sync(operation, self._executor)
