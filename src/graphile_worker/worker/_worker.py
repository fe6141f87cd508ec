"""The public runner: :class:`Worker`.

A ``Worker`` holds its options, hooks and id; each ``run()``/``run_once()`` opens the
driver (unless the application lent one), migrates, and hands over to a
:class:`~graphile_worker.worker._run.WorkerRun`. ``stop()`` may be called from anywhere at
any time: from a signal, from another thread, from a job, before the run has started.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, final
from urllib.parse import quote

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from ..drivers import create_driver
from ..drivers._url import resolve_url
from ..drivers.base import DatabaseDriver
from ..hooks import WorkerInit
from ..hooks._dispatch import Hooks
from ..migrations import migrate, require_migrated
from ..sql._statement import run_async
from ..sql.grants import check_worker_access
from ._options import RunOnceSummary, WorkerOptions
from ._run import WorkerRun

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Worker"]

_LOGGER_NAME = "graphile_worker.worker"


def new_worker_id() -> str:
    """``graphile_worker_`` and 18 random hex digits (Node's workers write ``pool-<hex>``)."""
    return f"graphile_worker_{secrets.token_hex(9)}"


def with_application_name(url: str, name: str) -> str:
    """``url`` asking the server to show ``name`` as the connection's ``application_name``.

    The worker id in ``pg_stat_activity`` ties every connection to the worker, its jobs'
    ``locked_by`` and its registry row. A name the URL already sets is kept.
    """
    base, _, query = url.partition("?")
    items = [item for item in query.split("&") if item]
    if any(item.startswith("application_name=") for item in items):
        return url
    items.append(f"application_name={quote(name, safe='')}")
    return f"{base}?{'&'.join(items)}"


@final
class Worker:
    """Runs jobs from the queue: ``await worker.run()``, ``run_once()`` or ``async with``.

    One instance, one worker id (written to ``locked_by`` of the jobs and queues it holds).
    A worker may run several times in a row (``run_once()`` in a test, then again), never
    twice at once.

    Args:
        options: See :class:`WorkerOptions`.

    Raises:
        ConfigurationError: a hook is not a Plugin or Observer.
    """

    __module__ = "graphile_worker.worker"

    def __init__(self, options: WorkerOptions) -> None:
        if not isinstance(options, WorkerOptions):
            raise TypeError(f"Worker() takes a WorkerOptions, not {options!r:.80}")
        self._options = options
        self._worker_id = new_worker_id()
        self._logger = options.logger or logging.getLogger(_LOGGER_NAME)
        self._hooks = Hooks(options.hooks, logger=self._logger)
        self._lock = threading.Lock()
        self._run: WorkerRun | None = None
        self._active = False
        self._stop_requested = False
        self._background: AbstractAsyncContextManager[Worker] | None = None

    def __repr__(self) -> str:
        state = "running" if self._active else "idle"
        return f"<Worker {self._worker_id} {state}>"

    @property
    def worker_id(self) -> str:
        """This worker's id, ``graphile_worker_<hex>``."""
        return self._worker_id

    @property
    def options(self) -> WorkerOptions:
        """The options the worker was built with."""
        return self._options

    # --------------------------------------------------------------------------- control

    def stop(self) -> None:
        """Ask the worker to stop gracefully; returns at once.

        Claiming stops, the abort signal is raised, running jobs get
        ``shutdown_grace_period`` seconds and are then cancelled and released. Safe to call
        from any thread, from a job or a hook, any number of times. Called while no run is
        active, it makes the next run stop as soon as it has started.
        """
        with self._lock:
            self._stop_requested = True
            run = self._run
        if run is not None:
            run.request_stop_from_any_thread("stop() was called")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run jobs until :meth:`stop` is called or a signal arrives.

        Returns after a clean stop. Database outages while running are retried; errors at
        start-up (no database, a schema that is too new) are raised.

        ``await task_group.start(worker.run)`` (``nursery.start`` on trio) returns once
        the worker is connected, migrated and looking for jobs, and raises a start-up error
        itself instead of leaving it to the task group.
        """
        await self._serve(continuous=True, task_status=task_status)

    async def run_once(self) -> RunOnceSummary:
        """Run every job that is runnable now (and any that become runnable meanwhile), then
        return what happened. Does not listen or poll: the tool for tests and cron-style
        batch runs."""
        return await self._serve(continuous=False)

    async def __aenter__(self) -> Worker:
        """Start :meth:`run` in the background; returns once the worker is looking for jobs.

        Made for application lifespans (Starlette, FastAPI)::

            @asynccontextmanager
            async def lifespan(app):
                async with Worker(options):
                    yield
        """
        if self._background is not None:
            raise RuntimeError("this worker is already running in an 'async with' block")
        background = self._in_background()
        worker = await background.__aenter__()
        self._background = background
        return worker

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        """Stop gracefully and wait for the run to end.

        When the block raised, the run is cancelled instead: running jobs are released at
        once rather than given the grace period.
        """
        background, self._background = self._background, None
        assert background is not None
        return await background.__aexit__(exc_type, exc, traceback)

    @asynccontextmanager
    async def _in_background(self) -> AsyncIterator[Worker]:
        # Failures are kept out of the task group, which would wrap them in an
        # ExceptionGroup: a start-up error is raised as run() raises it (application
        # lifespans print it as it is), and so is the caller's own exception.
        failure: BaseException | None = None
        async with anyio.create_task_group() as group:
            try:
                await group.start(self.run)
            except BaseException as error:  # noqa: BLE001 - re-raised below, unwrapped
                failure = error
            else:
                try:
                    yield self
                except BaseException as error:  # noqa: BLE001 - re-raised below, unwrapped
                    failure = error
                    group.cancel_scope.cancel()  # the run is cancelled, its jobs released
                else:
                    self.stop()
        if failure is not None:
            raise failure

    # ----------------------------------------------------------------------------- runs

    async def _serve(
        self,
        *,
        continuous: bool,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> RunOnceSummary:
        with self._lock:
            if self._active:
                raise RuntimeError(f"worker {self._worker_id} is already running")
            self._active = True
        try:
            if self._hooks:
                await self._hooks.notify(WorkerInit(self._worker_id))
            async with self._open_driver() as driver:
                # Before migrating: a role without grants would fail there, less clearly.
                access = check_worker_access(
                    self._options.schema,
                    cron=continuous and bool(self._options.cron_items),
                    recovery=self._options.recovery is not None,
                )
                await run_async(access, driver)
                if self._options.migrate:
                    await migrate(driver, schema=self._options.schema)
                else:
                    await require_migrated(driver, schema=self._options.schema)
                run = WorkerRun(
                    options=self._options,
                    driver=driver,
                    hooks=self._hooks,
                    worker_id=self._worker_id,
                    logger=self._logger,
                    continuous=continuous,
                    token=anyio.lowlevel.current_token(),
                )
                with self._lock:
                    self._run = run
                    stop_requested = self._stop_requested
                if stop_requested:
                    run.request_stop("stop() was called before the run started")
                return await run.serve(task_status)
        finally:
            with self._lock:
                self._run = None
                self._active = False
                self._stop_requested = False

    @asynccontextmanager
    async def _open_driver(self) -> AsyncIterator[DatabaseDriver]:
        """The application's driver as it is, or a pool of our own closed after the run."""
        configured = self._options.driver
        if isinstance(configured, DatabaseDriver):
            yield configured
            return
        assert isinstance(configured, str)  # WorkerOptions made an engine into a driver
        listen_url = self._options.listen_url
        driver: DatabaseDriver = await create_driver(
            with_application_name(resolve_url(self._options.database_url), self._worker_id),
            driver=configured,
            max_size=self._options.max_pool_size,
            prepared_statements=self._options.prepared_statements,
            listen_url=(
                None
                if listen_url is None
                else with_application_name(resolve_url(listen_url), self._worker_id)
            ),
        )
        try:
            yield driver
        finally:
            with anyio.CancelScope(shield=True):
                await driver.aclose()
