"""The :class:`WorkerContext` protocol: what a handler and a hook see of the running worker.

Handlers and hooks are written against this protocol, and the worker passes them its own
implementation (in ``graphile_worker.worker``). Keeping the protocol here, below ``task``
and ``hooks``, lets those modules name the context without importing the worker that
imports them, and lets tests hand a handler any object with these members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload, runtime_checkable

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Coroutine, Iterable, Mapping
    from contextlib import AbstractAsyncContextManager

    from typing_extensions import TypeVarTuple, Unpack

    from .drivers.base import AsyncExecutor
    from .spec import Job, JobSpec, TypedPayload

    # utils sits below this module (it knows nothing of tasks, hooks or the worker); its
    # types are only named in annotations, so importing the context stays cheap.
    from .utils import AsyncBind, JobInput, WorkerUtils

__all__ = ["WorkerContext"]

_T = TypeVar("_T")
if TYPE_CHECKING:
    _PosArgsT = TypeVarTuple("_PosArgsT")


@runtime_checkable
class WorkerContext(Protocol):
    """Everything a handler gets besides its payload, for one attempt at one job.

    The worker builds one per attempt; annotate handlers and hooks with this protocol, so
    that a test may pass any object with these members instead. ``isinstance(obj,
    WorkerContext)`` works too; like any runtime-checkable protocol, it only checks that
    the members exist.

    Handlers that are plain ``def`` functions run in a worker thread, where the async
    methods below cannot be awaited; call them through :meth:`call_async`::

        @task("resize")
        def resize(payload: dict[str, Any], ctx: WorkerContext) -> None:
            ...
            ctx.call_async(ctx.add_job, "notify", {"done": payload["id"]})
    """

    @property
    def job(self) -> Job:
        """The job as claimed (``attempts`` already counts this attempt)."""
        ...

    @property
    def payload(self) -> object:
        """The decoded payload (what the handler receives)."""
        ...

    @property
    def worker_id(self) -> str:
        """The id of the worker running the job (``locked_by`` in the table)."""
        ...

    @property
    def extensions(self) -> Mapping[str, object]:
        """The worker's ``extensions`` (application state), read-only."""
        ...

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines name the job; records carry ``job_id`` and ``task_identifier``."""
        ...

    @property
    def utils(self) -> WorkerUtils:
        """:class:`~graphile_worker.WorkerUtils` on the worker's pool (no hooks applied)."""
        ...

    @property
    def abort_requested(self) -> bool:
        """True once the worker is shutting down: finish quickly or stop and raise.

        Safe to read from any thread. A handler that stops early should raise
        :class:`~graphile_worker.JobAbortedError`: the job is then released for a later
        run without spending an attempt, exactly as if it had been cancelled.
        """
        ...

    async def wait_for_abort(self) -> None:
        """Return when the worker begins to shut down (for use in a task group race)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[AsyncExecutor]:
        """Borrow a connection from the worker's pool, inside a transaction.

        Commits when the block ends normally and rolls back when it raises. Pass the
        executor to :meth:`add_job` (``executor=``) to queue jobs atomically with your
        own writes.
        """
        ...

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
        identifier: str,
        payload: object = None,
        /,
        *,
        spec: JobSpec | None = None,
        executor: AsyncExecutor | AsyncBind | None = None,
    ) -> Job | None: ...

    async def add_job(
        self,
        target: TypedPayload | str,
        payload: object = ...,
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
        ...

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
        ...

    def call_async(
        self,
        function: Callable[[Unpack[_PosArgsT]], Coroutine[Any, Any, _T]],
        *args: Unpack[_PosArgsT],
    ) -> _T:
        """Run an async function on the worker's event loop from a handler's thread.

        For plain ``def`` handlers, which run in a worker thread: ``ctx.call_async(
        ctx.add_job, "email", {...})`` blocks the thread until the job is added and returns
        the result. Equivalent to ``anyio.from_thread.run``. Must not be called from the
        event loop itself (``await`` the function there).
        """
        ...
