"""A worker's presence in the registry: register, heartbeat, sweep the dead, unregister.

One :class:`Presence` per run with recovery on. It registers before the first claim (so a
job is never locked by a worker the sweepers cannot see), refreshes the heartbeat every
``heartbeat_interval`` with the ids of the jobs running at that moment (which decide whether
a recovered job's attempt counts), sweeps on the same beat, and unregisters after the run
has released everything. Heartbeats and sweeps are retried on the next beat when the
database is away; they never stop the worker.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable, Collection
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from ..errors import DatabaseError, MigrationError, QueryError
from ..hooks import WorkerRecovered
from ..recovery import SweepReport, sweep
from ..sql import recovery as statements
from ..sql._statement import perform_async

if TYPE_CHECKING:
    from ..drivers.base import DatabaseDriver
    from ..hooks._dispatch import Hooks
    from ..recovery import RecoveryOptions

__all__ = ["Presence"]

_UNDEFINED_TABLE = "42P01"
RUNNING_REPORT_DELAY = 1.0
"""Seconds after a job starts before the registry learns it is running (one write covers
every job started meanwhile). A job that dies with its worker sooner than this is taken for
one that never started, once (see :mod:`graphile_worker.recovery`); jobs shorter than this
never cost a write."""

_JITTER = 0.1
"""Each beat waits ``heartbeat_interval`` give or take 10 %, so a fleet started together
does not heartbeat and sweep in lockstep."""


@cache
def _library_version() -> str:
    try:
        return version("graphile-worker")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


class Presence:
    """Registers one worker run, keeps it alive in the registry and sweeps for dead ones."""

    def __init__(
        self,
        *,
        driver: DatabaseDriver,
        schema: str,
        worker_id: str,
        options: RecoveryOptions,
        hooks: Hooks,
        logger: logging.Logger,
        running: Callable[[], Collection[int]],
        given_up: Callable[[], None],
    ) -> None:
        self._driver = driver
        self._schema = schema
        self._worker_id = worker_id
        self._options = options
        self._hooks = hooks
        self._logger = logger
        self._running = running
        self._given_up = given_up
        self._registered = False
        self._hostname = socket.gethostname()
        self._reported: frozenset[int] = frozenset()
        self._job_started = anyio.Event()

    def job_started(self) -> None:
        """Called as each job starts: the running set is reported shortly after."""
        if not self._job_started.is_set():
            self._job_started.set()

    @property
    def registered(self) -> bool:
        """Whether the worker is in the registry (False when the schema has no registry)."""
        return self._registered

    async def _beat(self) -> bool:
        """Write the heartbeat; True when the row had to be created."""
        options = self._options
        running = frozenset(self._running())
        statement = statements.bind_heartbeat(
            self._schema,
            worker_id=self._worker_id,
            hostname=self._hostname,
            pid=os.getpid(),
            library_version=_library_version(),
            heartbeat_interval=options.heartbeat_interval,
            stale_after=options.stale_after,
            long_running_stale_after=options.long_running_stale_after,
            recovery_delay=options.recovery_delay,
            running_job_ids=sorted(running),
        )
        created = bool(await perform_async(statement, self._driver))
        self._reported = running
        return created

    async def register(self) -> None:
        """Enter the registry before the first claim.

        A schema migrated by Node alone (or by an older version) has no registry: the
        worker then runs without recovery, and says how to get it.

        Raises:
            DatabaseError: the database failed (the run cannot start either).
        """
        try:
            await self._beat()
        except QueryError as error:
            if error.sqlstate != _UNDEFINED_TABLE:
                raise
            self._logger.warning(
                "Dead-worker recovery is off for worker %s: schema %r has no worker registry "
                "(%s). Run 'graphile-worker migrate' with this version to add it",
                self._worker_id,
                self._schema,
                statements.WORKER_REGISTRY_TABLE,
            )
            return
        self._registered = True

    async def unregister(self) -> None:
        """Leave the registry after a clean stop; never raises."""
        if not self._registered:
            return
        self._registered = False
        with anyio.CancelScope(shield=True):
            try:
                await perform_async(
                    statements.bind_unregister(self._schema, worker_id=self._worker_id),
                    self._driver,
                )
            except DatabaseError as error:
                self._logger.warning(
                    "Could not remove worker %s from the registry (%s); a sweep will, once "
                    "its heartbeat is stale",
                    self._worker_id,
                    error,
                )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Heartbeat and sweep until cancelled; a first sweep runs at once."""
        task_status.started()
        if not self._registered:
            return
        async with anyio.create_task_group() as group:
            group.start_soon(self._report_running)
            await self._beat_and_sweep()

    async def _report_running(self) -> None:
        """Tell the registry soon after jobs start, not only at the next heartbeat.

        Whether a dead worker's job keeps its attempt spent depends on the worker having
        reported it running; with heartbeats alone, a job killed within its first
        ``heartbeat_interval`` would be refunded however long it had run.
        """
        while True:
            await self._job_started.wait()
            await anyio.sleep(RUNNING_REPORT_DELAY)
            self._job_started = anyio.Event()
            if not frozenset(self._running()) <= self._reported:
                await self.heartbeat_once()

    async def _beat_and_sweep(self) -> None:
        await self.sweep_once()
        interval = self._options.heartbeat_interval
        while True:
            await anyio.sleep(interval * random.uniform(1 - _JITTER, 1 + _JITTER))
            await self.heartbeat_once()
            await self.sweep_once()

    async def heartbeat_once(self) -> None:
        """Refresh the heartbeat; a row that had to be re-created means we were given up."""
        try:
            recreated = await self._beat()
        except DatabaseError as error:
            self._logger.warning(
                "Could not write worker %s's heartbeat (%s); retrying in %gs",
                self._worker_id,
                error,
                self._options.heartbeat_interval,
            )
            return
        if recreated:
            self._logger.error(
                "Worker %s was given up as dead by a sweep (no heartbeat for more than "
                "%gs) and its jobs were handed back; jobs it was running may run again "
                "elsewhere. It has registered again and goes on",
                self._worker_id,
                self._options.stale_after,
            )
            self._given_up()

    async def sweep_once(self) -> SweepReport | None:
        """Recover the jobs of dead workers; logs and returns ``None`` when it failed."""
        hooks = self._hooks
        try:
            report = await sweep(
                self._driver,
                schema=self._schema,
                decide=hooks.recover_job if hooks.intercepts_recovery else None,
            )
        except (DatabaseError, MigrationError) as error:
            self._logger.warning("Could not sweep for dead workers (%s)", error)
            return None
        for worker_id in report.workers:
            entries = report.jobs_of(worker_id)
            handed_back = sum(1 for entry in entries if entry.action != "deferred")
            self._logger.warning(
                "Recovered worker %s, which stopped sending heartbeats: %d job(s) handed "
                "back or failed, %d long-running job(s) left for later",
                worker_id,
                handed_back,
                len(entries) - handed_back,
            )
            if hooks:
                await hooks.notify(
                    WorkerRecovered(self._worker_id, worker_id, entries, report.unlocked_queues)
                )
        return report
