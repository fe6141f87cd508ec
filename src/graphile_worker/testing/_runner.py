"""Run the jobs that are due, the way a test wants: per-job outcomes, failures retried at once.

:class:`JobRunner` is ``Worker.run_once`` with two additions a test needs. It returns a
:class:`~graphile_worker.testing.JobOutcome` per job (collected by an observer, so the
worker runs exactly as in production), and with ``retry_failed`` it moves failed jobs'
back-off out of the way and runs again, so that a test of "fails twice, then succeeds"
does not wait ``exp(attempts)`` seconds or call ``reschedule_jobs`` itself.
:class:`SyncJobRunner` does the same from a plain ``def`` test.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import final

import anyio
import sniffio

from ..drivers import create_driver
from ..drivers.base import DatabaseDriver
from ..errors import ConfigurationError
from ..sql import DEFAULT_SCHEMA
from ..task import TaskRegistry
from ..utils import WorkerUtils
from ..worker import Worker, WorkerOptions
from ._outcomes import JobOutcome, OutcomeCollector

__all__ = ["JobRunner", "SyncJobRunner"]


def _retry_budget(retry_failed: bool | int) -> int | None:
    """Retries allowed per job: ``None`` for as many as ``max_attempts`` leaves."""
    if isinstance(retry_failed, bool):
        return None if retry_failed else 0
    if not isinstance(retry_failed, int) or retry_failed < 0:
        raise ConfigurationError(
            f"retry_failed must be True, False or a number of retries (0 or more), not "
            f"{retry_failed!r}"
        )
    return retry_failed


@asynccontextmanager
async def _lent_driver(options: WorkerOptions) -> AsyncIterator[DatabaseDriver]:
    """The options' own driver, or one opened for every round of the run and closed after."""
    if isinstance(options.driver, DatabaseDriver):
        yield options.driver
        return
    assert isinstance(options.driver, str)  # WorkerOptions made an engine into a driver
    driver: DatabaseDriver = await create_driver(
        options.database_url,
        driver=options.driver,
        max_size=options.max_pool_size,
        prepared_statements=options.prepared_statements,
    )
    try:
        yield driver
    finally:
        with anyio.CancelScope(shield=True):
            await driver.aclose()


async def _run_jobs(options: WorkerOptions, retries: int | None) -> list[JobOutcome]:
    collector = OutcomeCollector()
    async with _lent_driver(options) as driver:
        worker = Worker(
            dataclasses.replace(
                options,
                driver=driver,
                hooks=(*options.hooks, collector),
                # pytest owns Ctrl-C; a worker's handlers would turn it into a graceful stop.
                install_signal_handlers=False,
            )
        )
        await worker.run_once()
        retried: dict[int, int] = {}
        put_back_at: dict[int, int] = {}  # job id -> its attempts when last put back
        while True:
            due = [
                outcome
                for outcome in collector.outcomes()
                if outcome.status == "failed"
                and (retries is None or retried.get(outcome.id, 0) < retries)
                # Put back, yet not run again (a hook failed it for good, or removed it):
                # another round would not run it either.
                and put_back_at.get(outcome.id) != outcome.attempts
            ]
            if not due:
                return collector.outcomes()
            for outcome in due:
                retried[outcome.id] = retried.get(outcome.id, 0) + 1
                put_back_at[outcome.id] = outcome.attempts
            # Each job was due at its claimed run_at, by the database's clock: putting it
            # back there makes it due again at once, whatever this machine's clock says.
            await WorkerUtils(driver, schema=options.schema).reschedule_jobs(
                [outcome.id for outcome in due],
                run_at=min(outcome.job.run_at for outcome in due),
            )
            await worker.run_once()


def _options_for(
    base: WorkerOptions | None,
    tasks: tuple[object, ...],
    extensions: Mapping[str, object] | None,
    *,
    driver: DatabaseDriver | str,
    database_url: str | None,
    schema: str,
) -> WorkerOptions:
    """The options for one call: the caller's, on the test's database."""
    # A registry among the tasks stands for the tasks it holds.
    tasks = tuple(
        task for item in tasks for task in (item if isinstance(item, TaskRegistry) else (item,))
    )
    if base is None:
        if not tasks:
            raise ConfigurationError(
                "run_jobs() needs the tasks to run: pass them, as in run_jobs(send_email, "
                "SendWelcome), or pass options=WorkerOptions(tasks=[...], ...)"
            )
        # Dead-worker recovery registers and heartbeats: nothing a test run needs.
        base = WorkerOptions(tasks=tasks, schema=schema, recovery=None)
    elif tasks:
        base = dataclasses.replace(base, tasks=tasks)
    if extensions is not None:
        base = dataclasses.replace(base, extensions=extensions)
    return dataclasses.replace(base, driver=driver, database_url=database_url)


@final
class JobRunner:
    """Runs the jobs that are due on a test's database and says what became of each.

    The ``graphile_worker_run_jobs`` fixture is one of these, on the test's database;
    build one yourself over any open driver. Call it from async code.

    Args:
        driver: An open driver on a migrated database; the caller keeps and closes it.
        schema: The graphile-worker schema on it.
    """

    __module__ = "graphile_worker.testing"

    def __init__(self, driver: DatabaseDriver, *, schema: str = DEFAULT_SCHEMA) -> None:
        self._driver = driver
        self._schema = schema

    def __repr__(self) -> str:
        return f"<JobRunner schema={self._schema!r}>"

    async def __call__(
        self,
        *tasks: object,
        retry_failed: bool | int = False,
        extensions: Mapping[str, object] | None = None,
        options: WorkerOptions | None = None,
    ) -> list[JobOutcome]:
        """Run every job that is due now (and any that fall due meanwhile) with ``tasks``.

        Under the hood this is ``Worker.run_once()``: jobs of other tasks, and jobs not
        due yet, stay in the queue, and each failure is recorded with its back-off.

        Args:
            tasks: ``@task`` functions, handler classes, ``Task`` objects or a
                ``TaskRegistry``, as ``WorkerOptions(tasks=...)`` takes them.
            retry_failed: Run failed jobs again at once: ``True`` until each succeeds or
                uses its ``max_attempts``, a number for at most that many retries per job.
            extensions: The worker's ``extensions`` (``ctx.extensions`` in handlers).
            options: Start from these worker options instead of the defaults (for hooks,
                concurrency, ...); their database and driver are replaced by the test's,
                and ``tasks``, when given, replace theirs.

        Returns:
            One :class:`JobOutcome` per job that ran, in the order they were first claimed.

        Raises:
            ConfigurationError: no tasks, or an option is invalid.
        """
        retries = _retry_budget(retry_failed)
        settings = _options_for(
            options,
            tasks,
            extensions,
            driver=self._driver,
            database_url=None,
            schema=self._schema,
        )
        return await _run_jobs(settings, retries)


@final
class SyncJobRunner:
    """:class:`JobRunner` for plain ``def`` tests: each call runs its own event loop.

    The ``graphile_worker_sync_run_jobs`` fixture is one of these. Each call opens a
    driver on ``database_url``, runs the jobs under ``anyio.run`` and closes the driver.
    It cannot be called from async code (where an event loop is already running): use
    :class:`JobRunner` there.

    Args:
        database_url: A migrated database.
        driver: The driver to open (a name from ``graphile_worker.drivers.DRIVER_NAMES``).
        schema: The graphile-worker schema.
        backend: The anyio backend to run the worker on (``"asyncio"`` or ``"trio"``).
    """

    __module__ = "graphile_worker.testing"

    def __init__(
        self,
        database_url: str,
        *,
        driver: str = "auto",
        schema: str = DEFAULT_SCHEMA,
        backend: str = "asyncio",
    ) -> None:
        self._database_url = database_url
        self._driver = driver
        self._schema = schema
        self._backend = backend

    def __repr__(self) -> str:
        return f"<SyncJobRunner backend={self._backend!r} driver={self._driver!r}>"

    def __call__(
        self,
        *tasks: object,
        retry_failed: bool | int = False,
        extensions: Mapping[str, object] | None = None,
        options: WorkerOptions | None = None,
    ) -> list[JobOutcome]:
        """Run every job that is due now; the arguments are :meth:`JobRunner.__call__`'s.

        Raises:
            RuntimeError: called while an event loop runs in this thread.
            ConfigurationError: no tasks, or an option is invalid.
        """
        try:
            running = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            running = None
        if running is not None:
            raise RuntimeError(
                f"SyncJobRunner cannot run inside {running} code, which already has an event "
                "loop; await a JobRunner instead (the graphile_worker_run_jobs fixture)"
            )
        retries = _retry_budget(retry_failed)
        settings = _options_for(
            options,
            tasks,
            extensions,
            driver=self._driver,
            database_url=self._database_url,
            schema=self._schema,
        )
        return anyio.run(functools.partial(_run_jobs, settings, retries), backend=self._backend)
