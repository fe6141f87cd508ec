"""What a running job sees: :class:`JobContext`, and the abort signal shared by a run.

:class:`JobContext` is the worker's implementation of the
:class:`~graphile_worker.context.WorkerContext` protocol that handlers are written
against. One is built for every job, so it does as little as possible up front: the logger
and the utilities are made on first use. Everything a handler may need from the worker
goes through it, which keeps handlers free of globals.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar, final, overload

import anyio
import anyio.from_thread

from .._log_fields import JobLogger, job_fields
from ..hooks import ScheduleRequest
from ..spec import Job, JobSpec, TypedPayload

# The private helpers are the single place add_job's call shapes are resolved; the context
# reuses them so that its add_job accepts exactly what WorkerUtils.add_job accepts.
from ..utils import _NO_PAYLOAD, JobInput, WorkerUtils, _prepare, _prepare_many

if TYPE_CHECKING:
    from anyio.lowlevel import EventLoopToken
    from typing_extensions import TypeVarTuple, Unpack

    from .._job_defaults import TaskReference
    from ..context import WorkerContext
    from ..drivers.base import AsyncExecutor, DatabaseDriver
    from ..hooks._dispatch import Hooks
    from ..utils import AsyncBind

__all__ = ["AbortSignal", "JobContext"]

T = TypeVar("T")
if TYPE_CHECKING:
    PosArgsT = TypeVarTuple("PosArgsT")


class AbortSignal:
    """Set once when the worker begins to shut down; shared by every job of a run.

    Readable from any thread (a :class:`threading.Event` underneath), awaitable on the
    worker's event loop. Setting it twice is harmless.
    """

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._event = anyio.Event()

    @property
    def is_set(self) -> bool:
        """Whether shutdown has begun."""
        return self._flag.is_set()

    def set(self) -> None:
        """Raise the signal; call on the worker's event loop."""
        self._flag.set()
        self._event.set()

    async def wait(self) -> None:
        """Return once the signal is raised."""
        await self._event.wait()


@final
class JobContext:
    """Everything a handler gets besides its payload, for one attempt at one job.

    The worker's :class:`~graphile_worker.context.WorkerContext`; handlers should be
    annotated with that protocol, not with this class.

    Attributes:
        job: The job as claimed (``attempts`` already counts this attempt).
        payload: The decoded payload (what the handler receives).
        worker_id: The id of the worker running the job (``locked_by`` in the table).
        extensions: The worker's ``extensions`` (application state), read-only.

    Handlers that are plain ``def`` functions run in a worker thread, where the async
    methods below cannot be awaited; call them through :meth:`call_async`::

        @task("resize")
        def resize(payload: dict[str, Any], ctx: WorkerContext) -> None:
            ...
            ctx.call_async(ctx.add_job, "notify", {"done": payload["id"]})
    """

    __slots__ = (
        "_abort",
        "_driver",
        "_hooks",
        "_logger",
        "_parent_logger",
        "_schema",
        "_token",
        "_use_local_time",
        "_utils",
        "extensions",
        "job",
        "payload",
        "worker_id",
    )

    def __init__(
        self,
        *,
        job: Job,
        payload: object,
        worker_id: str,
        extensions: Mapping[str, object],
        driver: DatabaseDriver,
        schema: str,
        hooks: Hooks,
        abort: AbortSignal,
        logger: logging.Logger,
        token: EventLoopToken | None = None,
        use_local_time: bool = False,
    ) -> None:
        self.job: Job = job
        self.payload: object = payload
        self.worker_id: str = worker_id
        self.extensions: Mapping[str, object] = extensions
        self._driver = driver
        self._schema = schema
        self._hooks = hooks
        self._abort = abort
        self._parent_logger = logger
        self._token = token
        self._use_local_time = use_local_time
        self._logger: JobLogger | None = None
        self._utils: WorkerUtils | None = None

    def __repr__(self) -> str:
        return f"<WorkerContext job={self.job.id} task={self.job.task_identifier!r}>"

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines name the job; records carry the job's fields (``job_id``,
        ``task_identifier``, ``queue_name``, ``attempt``, ``max_attempts``, ``worker_id``)."""
        if self._logger is None:
            self._logger = JobLogger(
                self._parent_logger,
                job_fields(self.job, self.worker_id),
            )
        return self._logger

    @property
    def utils(self) -> WorkerUtils:
        """:class:`~graphile_worker.WorkerUtils` on the worker's pool (no hooks applied)."""
        if self._utils is None:
            self._utils = WorkerUtils(self._driver, schema=self._schema)
        return self._utils

    # ----------------------------------------------------------------------------- abort

    @property
    def abort_requested(self) -> bool:
        """True once the worker is shutting down: finish quickly or stop and raise.

        Safe to read from any thread. A handler that stops early should raise
        :class:`~graphile_worker.JobAbortedError`: the job is then released for a later
        run without spending an attempt, exactly as if it had been cancelled.
        """
        return self._abort.is_set

    async def wait_for_abort(self) -> None:
        """Return when the worker begins to shut down (for use in a task group race)."""
        await self._abort.wait()

    # --------------------------------------------------------------------------- database

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncExecutor]:
        """Borrow a connection from the worker's pool, inside a transaction.

        Commits when the block ends normally and rolls back when it raises. Pass the
        executor to :meth:`add_job` (``executor=``) to queue jobs atomically with your
        own writes.
        """
        async with self._driver.transaction() as executor:
            yield executor

    @overload
    async def add_job(
        self,
        payload: TypedPayload,
        /,
        *,
        spec: JobSpec | None = None,
        executor: AsyncExecutor | AsyncBind | None = None,
    ) -> Job | None: ...

    @overload
    async def add_job(
        self,
        identifier: str | TaskReference,
        payload: object = None,
        /,
        *,
        spec: JobSpec | None = None,
        executor: AsyncExecutor | AsyncBind | None = None,
    ) -> Job | None: ...

    async def add_job(
        self,
        target: TypedPayload | str | TaskReference,
        payload: object = _NO_PAYLOAD,
        /,
        *,
        spec: JobSpec | None = None,
        executor: AsyncExecutor | AsyncBind | None = None,
    ) -> Job | None:
        """Queue a job on the worker's database, as :meth:`WorkerUtils.add_job` does.

        ``before_job_schedule`` hooks run first; the result is ``None`` when one of them
        skipped the job. ``executor`` (from :meth:`transaction`, or a SQLAlchemy
        ``AsyncConnection``/``AsyncSession``) adds it inside that transaction instead.
        With ``use_local_time`` a job without ``run_at`` is due at this machine's "now",
        as in Node.

        Raises:
            InvalidJobSpecError: the payload or spec cannot be queued.
            HookError: a hook refused the job.
        """
        utils = self._utils_for(executor)
        if not self._hooks and not self._use_local_time:
            return await utils.add_job(target, payload, spec=spec)  # type: ignore[arg-type]
        prepared = _prepare(target, payload, spec)
        request = await self._schedule(prepared.identifier, prepared.payload_json, prepared.spec)
        if request is None:
            return None
        return await utils.add_job(request.identifier, request.payload, spec=request.spec)

    async def add_jobs(
        self,
        jobs: Iterable[JobInput],
        *,
        job_key_preserve_run_at: bool = False,
        executor: AsyncExecutor | AsyncBind | None = None,
    ) -> list[Job]:
        """Queue many jobs in one statement, as :meth:`WorkerUtils.add_jobs` does.

        Each job goes through the ``before_job_schedule`` hooks; skipped jobs are left
        out of the result.
        """
        utils = self._utils_for(executor)
        if not self._hooks and not self._use_local_time:
            return await utils.add_jobs(jobs, job_key_preserve_run_at=job_key_preserve_run_at)
        entries: list[JobInput] = []
        for entry in _prepare_many(jobs):
            request = await self._schedule(entry.identifier, entry.payload_json, entry.spec)
            if request is not None:
                entries.append((request.identifier, request.payload, request.spec))
        if not entries:
            return []
        return await utils.add_jobs(entries, job_key_preserve_run_at=job_key_preserve_run_at)

    async def _schedule(
        self, identifier: str, payload_json: str, spec: JobSpec
    ) -> ScheduleRequest | None:
        if self._use_local_time and spec.run_at is None:
            spec = dataclasses.replace(spec, run_at=datetime.now(timezone.utc))
        request = ScheduleRequest(identifier, json.loads(payload_json), spec)
        if not self._hooks:
            return request
        return await self._hooks.before_job_schedule(request)

    def _utils_for(self, executor: AsyncExecutor | AsyncBind | None) -> WorkerUtils:
        if executor is None:
            return self.utils
        return WorkerUtils(executor, schema=self._schema)

    # --------------------------------------------------------------------------- threads

    def call_async(
        self,
        function: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T]],
        *args: Unpack[PosArgsT],
    ) -> T:
        """Run an async function on the worker's event loop from a handler's thread.

        For plain ``def`` handlers, which run in a worker thread: ``ctx.call_async(
        ctx.add_job, "email", {...})`` blocks the thread until the job is added and returns
        the result. Equivalent to ``anyio.from_thread.run``. Must not be called from the
        event loop itself (``await`` the function there).
        """
        return anyio.from_thread.run(function, *args, token=self._token)


if TYPE_CHECKING:

    def _implements_the_protocol(context: JobContext) -> WorkerContext:
        # mypy --strict proves here that a JobContext is a WorkerContext: a member that
        # drifts from the protocol handlers are typed against fails this module's check.
        return context
