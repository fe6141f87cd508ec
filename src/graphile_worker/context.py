"""The :class:`WorkerContext` protocol: what a handler and a hook see of the running worker.

Handlers and hooks are written against this protocol, and the worker passes them its own
implementation (in ``graphile_worker.worker``). Keeping the protocol here, below ``task``
and ``hooks``, lets those modules name the context without importing the worker that
imports them, and lets tests hand a handler any object with these members.

:func:`context_for_testing` builds such an object (a :class:`StandaloneContext`) for a
handler's unit test: no worker, and no database unless the test lends it a driver.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final, overload, runtime_checkable

from ._log_fields import JobLogger, job_fields

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Mapping
    from contextlib import AbstractAsyncContextManager

    import anyio
    from anyio.lowlevel import EventLoopToken
    from typing_extensions import TypeVarTuple, Unpack

    from ._job_defaults import TaskReference
    from .drivers.base import AsyncExecutor, DatabaseDriver, Params, Row
    from .errors import ConfigurationError
    from .spec import Job, JobSpec, TypedPayload

    # utils sits below this module (it knows nothing of tasks, hooks or the worker); its
    # types are only named in annotations, so importing the context stays cheap.
    from .utils import AsyncBind, JobInput, WorkerUtils

__all__ = ["StandaloneContext", "WorkerContext", "context_for_testing"]

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


# ------------------------------------------------------------------ a context without a worker

_NO_PAYLOAD_GIVEN: Any = object()
"""Marks ``add_job(typed_payload)`` calls, where no second argument was given."""

_TESTING_WORKER_ID = "graphile_worker_testing"
_TESTING_TASK = "test_task"


def _no_database() -> ConfigurationError:
    from .errors import ConfigurationError

    return ConfigurationError(
        "this WorkerContext has no database: it was built by context_for_testing() without "
        "driver=, so ctx.utils, ctx.add_job(), ctx.add_jobs() and ctx.transaction() cannot "
        "run. Pass driver= (an open DatabaseDriver on a test database, such as the "
        "graphile_worker_driver pytest fixture), or run the job through a worker (the "
        "graphile_worker_run_jobs fixture)"
    )


class _NoDatabase:
    """The executor behind ``ctx.utils`` of a context without a driver: every query refuses.

    ``ctx.utils`` itself must not raise: ``isinstance(ctx, WorkerContext)`` reads every
    member of the protocol on Python 3.11 and older. So the utilities exist, check their
    arguments as usual, and the error comes with the first statement they would send.
    """

    __slots__ = ()

    async def execute(self, sql: str, params: Params | None = None) -> int:
        raise _no_database()

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        raise _no_database()

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        raise _no_database()

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        raise _no_database()

    async def execute_script(self, sql: str) -> None:
        raise _no_database()


@final
class StandaloneContext:
    """A :class:`WorkerContext` with no worker behind it, for calling a handler in a test.

    Build one with :func:`context_for_testing`. It answers every member of the protocol
    the way the worker's own context does, so ``await send_email(payload, ctx)`` runs the
    handler exactly as written. What needs a database (``utils``, ``transaction()``,
    ``add_job()``) works only when the context was given a driver; otherwise it raises a
    :class:`~graphile_worker.errors.ConfigurationError` saying so, instead of reaching
    for a server the test never set up.
    """

    __slots__ = (
        "_abort_event",
        "_abort_flag",
        "_driver",
        "_logger",
        "_schema",
        "_token",
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
        logger: logging.Logger,
        driver: DatabaseDriver | None,
        schema: str,
    ) -> None:
        import threading

        import anyio.lowlevel

        self.job: Job = job
        self.payload: object = payload
        self.worker_id: str = worker_id
        self.extensions: Mapping[str, object] = extensions
        self._driver = driver
        self._schema = schema
        self._logger = logger
        self._abort_flag = threading.Event()
        self._abort_event: anyio.Event | None = None
        # Built on the event loop (an async test), the context can reach that loop from a
        # plain def handler's thread later, as the worker's own context can.
        try:
            self._token: EventLoopToken | None = anyio.lowlevel.current_token()
        except RuntimeError:
            self._token = None

    def __repr__(self) -> str:
        return f"<StandaloneContext job={self.job.id} task={self.job.task_identifier!r}>"

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that names the job as the worker's does: ``[job <id> <task>]`` before
        each message, and ``job_id``, ``task_identifier``, ``queue_name``, ``attempt``,
        ``max_attempts`` and ``worker_id`` on each record."""
        return JobLogger(self._logger, job_fields(self.job, self.worker_id))

    @property
    def utils(self) -> WorkerUtils:
        """:class:`~graphile_worker.WorkerUtils` on the driver the context was given.

        Without one, each of its methods raises a
        :class:`~graphile_worker.errors.ConfigurationError` saying so when called.
        """
        from .utils import WorkerUtils

        driver = _NoDatabase() if self._driver is None else self._driver
        return WorkerUtils(driver, schema=self._schema)

    @property
    def abort_requested(self) -> bool:
        """True once :meth:`request_abort` was called, as if the worker were shutting down."""
        return self._abort_flag.is_set()

    def request_abort(self) -> None:
        """Act as a worker that begins to shut down: the test's way to check a handler's exit.

        Call it on the event loop (or before the handler starts); a plain ``def`` handler
        running in a thread sees :attr:`abort_requested` turn true.
        """
        self._abort_flag.set()
        if self._abort_event is not None:
            self._abort_event.set()

    async def wait_for_abort(self) -> None:
        """Return once :meth:`request_abort` was called."""
        import anyio

        if self._abort_event is None:
            self._abort_event = anyio.Event()
            if self._abort_flag.is_set():
                self._abort_event.set()
        await self._abort_event.wait()

    def transaction(self) -> AbstractAsyncContextManager[AsyncExecutor]:
        """A transaction on the driver the context was given, as the worker's context opens.

        Raises:
            ConfigurationError: the context was built without ``driver=``.
        """
        if self._driver is None:
            raise _no_database()
        return self._driver.transaction()

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
        payload: object = _NO_PAYLOAD_GIVEN,
        /,
        *,
        spec: JobSpec | None = None,
        executor: AsyncExecutor | AsyncBind | None = None,
    ) -> Job | None:
        """Queue a job on the context's driver (or ``executor``), as the worker's context does.

        No hooks run: a standalone context has no worker to take them from.

        Raises:
            ConfigurationError: the context was built without ``driver=`` and no
                ``executor`` was passed.
        """
        from .utils import _NO_PAYLOAD, WorkerUtils

        utils = self.utils if executor is None else WorkerUtils(executor, schema=self._schema)
        # WorkerUtils.add_job tells the two call shapes apart by its own marker.
        given = _NO_PAYLOAD if payload is _NO_PAYLOAD_GIVEN else payload
        return await utils.add_job(target, given, spec=spec)  # type: ignore[arg-type]

    async def add_jobs(
        self,
        jobs: Iterable[JobInput],
        *,
        job_key_preserve_run_at: bool = False,
        executor: AsyncExecutor | AsyncBind | None = None,
    ) -> list[Job]:
        """Queue many jobs in one statement on the context's driver (or ``executor``).

        Raises:
            ConfigurationError: the context was built without ``driver=`` and no
                ``executor`` was passed.
        """
        from .utils import WorkerUtils

        utils = self.utils if executor is None else WorkerUtils(executor, schema=self._schema)
        return await utils.add_jobs(jobs, job_key_preserve_run_at=job_key_preserve_run_at)

    def call_async(
        self,
        function: Callable[[Unpack[_PosArgsT]], Coroutine[Any, Any, _T]],
        *args: Unpack[_PosArgsT],
    ) -> _T:
        """Run an async function on the test's event loop from a plain ``def`` handler's thread.

        Works when the context was built inside an async test and the handler runs in
        another thread (``await anyio.to_thread.run_sync(handler, payload, ctx)``), or
        from any anyio worker thread.
        """
        import anyio.from_thread

        return anyio.from_thread.run(function, *args, token=self._token)


def context_for_testing(
    payload: object = None,
    job: Job | None = None,
    *,
    task_identifier: str | None = None,
    attempts: int | None = None,
    max_attempts: int | None = None,
    queue_name: str | None = None,
    key: str | None = None,
    flags: Iterable[str] | None = None,
    extensions: Mapping[str, object] | None = None,
    worker_id: str = _TESTING_WORKER_ID,
    driver: DatabaseDriver | None = None,
    schema: str = "graphile_worker",
    logger: logging.Logger | None = None,
) -> StandaloneContext:
    """Build a :class:`WorkerContext` for calling a handler directly, without a worker.

    A handler unit test then reads as the handler does::

        ctx = context_for_testing({"to": "ada@example.com"}, attempts=3)
        await send_email({"to": "ada@example.com"}, ctx)

    The job is made up unless ``job`` is given: id 1, the payload as JSON, due and locked
    now by ``worker_id``, on its first attempt of Node's default 25. The keyword job
    fields (``attempts``, ``task_identifier``, ...) replace those of the made-up job or of
    ``job``. Nothing touches a database unless ``driver`` is given; see
    :class:`StandaloneContext`.

    Args:
        payload: What the handler receives, which is also ``ctx.payload`` (a typed
            payload's class names the task when ``task_identifier`` is not given).
        job: The job the context is for, such as one returned by ``utils.add_job``.
        task_identifier: The job's task (default: the typed payload's ``IDENTIFIER``, or
            ``"test_task"``).
        attempts: This attempt's number, counting it (1 is the first).
        max_attempts: How many attempts the job has in all.
        queue_name: The job's named queue.
        key: The job's ``job_key``.
        flags: The job's flags.
        extensions: What the handler reads as ``ctx.extensions`` (a worker's
            ``WorkerOptions.extensions``), read-only.
        worker_id: ``ctx.worker_id``, and the job's ``locked_by`` when it is made up.
        driver: An open driver on a migrated database, for ``ctx.utils``,
            ``ctx.transaction()`` and ``ctx.add_job()``; the caller keeps and closes it.
        schema: The graphile-worker schema on that database.
        logger: Where ``ctx.logger`` writes (default ``graphile_worker.worker``, the
            worker's own).

    Raises:
        InvalidJobSpecError: a made-up job's payload cannot be represented as JSON.
    """
    import dataclasses
    import json
    from datetime import datetime, timezone
    from types import MappingProxyType

    from ._payload import DEFAULT_MAX_ATTEMPTS, identifier_of, payload_to_json
    from .spec import Job

    if job is None:
        now = datetime.now(timezone.utc)
        job = Job(
            id=1,
            task_identifier=identifier_of(payload) or _TESTING_TASK,
            queue_name=None,
            payload=json.loads(payload_to_json(payload)),
            priority=0,
            run_at=now,
            attempts=1,
            max_attempts=DEFAULT_MAX_ATTEMPTS,
            last_error=None,
            created_at=now,
            updated_at=now,
            key=None,
            locked_at=now,
            locked_by=worker_id,
            revision=0,
            flags=frozenset(),
        )
    job = dataclasses.replace(
        job,
        task_identifier=job.task_identifier if task_identifier is None else task_identifier,
        attempts=job.attempts if attempts is None else attempts,
        max_attempts=job.max_attempts if max_attempts is None else max_attempts,
        queue_name=job.queue_name if queue_name is None else queue_name,
        key=job.key if key is None else key,
        flags=job.flags if flags is None else frozenset(flags),
    )
    return StandaloneContext(
        job=job,
        payload=payload,
        worker_id=worker_id,
        extensions=MappingProxyType(dict(extensions or {})),
        logger=logger or logging.getLogger("graphile_worker.worker"),
        driver=driver,
        schema=schema,
    )


if TYPE_CHECKING:

    def _implements_the_protocol(context: StandaloneContext) -> WorkerContext:
        # mypy --strict proves here that a StandaloneContext is a WorkerContext, so that a
        # member added to the protocol cannot be forgotten here.
        return context
