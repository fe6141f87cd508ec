"""The worker's side of the job table: claim, complete, fail and release, in batches.

:class:`JobSource` is the only part of the runner that talks to the jobs table. Each
method takes or returns a list, one statement per call, so that a local queue or a
completion batcher can sit in front of it later without changing it. Claims and the
statements that record an outcome run in shielded cancel scopes: a statement cancelled in
flight may still commit on the server, and a claim whose result we never read would leave
jobs locked by us for hours.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Sequence, Sized
from datetime import datetime, timezone
from functools import partial
from time import time_ns
from typing import TYPE_CHECKING, TypeVar

import anyio

from ..errors import ConnectionLostError, DatabaseError
from ..hooks import JobsClaimed, OutcomesWritten
from ..sql import worker as worker_sql
from ..sql._statement import fetch_values, perform_async

if TYPE_CHECKING:
    from ..drivers.base import DatabaseDriver
    from ..hooks._dispatch import Hooks
    from ..spec import Job
    from ..sql._statement import Row, Statement
    from ._options import ForbiddenFlags

__all__ = ["JobSource", "is_transient"]

RECORD_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Seconds between attempts to record an outcome when the database is unreachable.

Losing a completion leaves the job locked until the four-hour stale-lock reset and then
runs it again, so it is worth waiting out a short outage (a failover, a restart)."""


R = TypeVar("R")
S = TypeVar("S", bound=Sized)

RESET_LOCKED_FIRST = 60.0
RESET_LOCKED_INTERVAL = (480.0, 600.0)
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})


class JobSource:
    """Claims and settles jobs for one worker id, through one driver.

    Args:
        driver: The pool every statement runs on (autocommit, one statement each).
        schema: The graphile-worker schema.
        worker_id: Written to ``locked_by``; only jobs locked by it are settled.
        task_identifiers: The tasks this worker can run; other jobs are never claimed.
        forbidden_flags: A collection, or a function asked before each claim.
        use_local_time: Send this machine's clock as "now" (Node's ``useNodeTime``).
        logger: Where retries are reported.
        hooks: Told about each claim and each outcome statement, when an observer watches
            :class:`~graphile_worker.hooks.JobsClaimed` or
            :class:`~graphile_worker.hooks.OutcomesWritten`.
    """

    def __init__(
        self,
        *,
        driver: DatabaseDriver,
        schema: str,
        worker_id: str,
        task_identifiers: Sequence[str],
        forbidden_flags: ForbiddenFlags,
        use_local_time: bool,
        logger: logging.Logger,
        hooks: Hooks | None = None,
    ) -> None:
        self._driver = driver
        self._schema = schema
        self._worker_id = worker_id
        self._task_identifiers = list(task_identifiers)
        self._forbidden_flags = forbidden_flags
        self._use_local_time = use_local_time
        self._logger = logger
        self._hooks = hooks
        # Decided once: when nobody watches, a claim or a write pays one attribute test,
        # and no clock is read and no event built.
        self._report_claims = hooks is not None and hooks.watching(JobsClaimed)
        self._report_writes = hooks is not None and hooks.watching(OutcomesWritten)

    def _now(self) -> datetime | None:
        return datetime.now(timezone.utc) if self._use_local_time else None

    @property
    def flags_can_change(self) -> bool:
        """Whether the forbidden flags come from a function, so may differ between claims."""
        return callable(self._forbidden_flags)

    async def forbidden_flags(self) -> Collection[str]:
        """The flags forbidden right now (the function's answer, when there is one)."""
        flags = self._forbidden_flags
        if not callable(flags):
            return flags
        result = flags()
        if inspect.isawaitable(result):
            result = await result
        return result

    async def claim(
        self, limit: int, *, flags: Collection[str] | None = None, local_queue: bool = False
    ) -> list[Job]:
        """Lock and return up to ``limit`` runnable jobs (fewer, or none, when fewer are ready).

        ``flags`` are the forbidden flags when the caller has already asked for them;
        ``local_queue`` says the jobs fill the local queue (for the hook event only).
        """
        statement = worker_sql.bind_get_jobs(
            self._schema,
            worker_id=self._worker_id,
            task_identifiers=self._task_identifiers,
            limit=limit,
            forbidden_flags=await self.forbidden_flags() if flags is None else flags,
            now=self._now(),
        )
        if self._report_claims:
            return await self._reported_claim(statement, limit, local_queue)
        with anyio.CancelScope(shield=True):
            rows = await fetch_values(
                self._driver, statement.sql, statement.params, worker_sql.CLAIM_COLUMNS
            )
        return worker_sql.decode_claimed(rows)

    async def _reported_claim(
        self, statement: Statement, limit: int, local_queue: bool
    ) -> list[Job]:
        """:meth:`claim`, timed, with a :class:`~graphile_worker.hooks.JobsClaimed` event.

        The observers are told inside the shield too: a cancellation while they run must
        not lose jobs that are already locked in our name.
        """
        assert self._hooks is not None
        jobs: list[Job] = []
        error: Exception | None = None
        with anyio.CancelScope(shield=True):
            started = time_ns()
            try:
                rows = await fetch_values(
                    self._driver, statement.sql, statement.params, worker_sql.CLAIM_COLUMNS
                )
                jobs = worker_sql.decode_claimed(rows)
            except Exception as caught:  # noqa: BLE001 - reported, then raised below
                error = caught
            ended = time_ns()
            await self._hooks.notify(
                JobsClaimed(self._worker_id, limit, tuple(jobs), local_queue, started, ended, error)
            )
        if error is not None:
            raise error
        return jobs

    async def seconds_until_next(self) -> float | None:
        """Seconds until the earliest future job this worker could claim, if any."""
        statement = worker_sql.bind_next_due(
            self._schema,
            task_identifiers=self._task_identifiers,
            forbidden_flags=await self.forbidden_flags(),
            now=self._now(),
        )
        seconds = await perform_async(statement, self._driver)
        return None if seconds is None else max(0.0, float(seconds))

    async def complete(
        self, jobs: Sequence[Job], *, retry_delays: Sequence[float] = RECORD_RETRY_DELAYS
    ) -> set[int]:
        """Delete succeeded jobs; returns the ids that were still there to delete."""
        ids = [job.id for job in jobs]
        statement = worker_sql.bind_complete_jobs(
            self._schema, worker_id=self._worker_id, job_ids=ids
        )
        # Bare values rather than a dict per row: a batch deletes hundreds of jobs.
        values = partial(fetch_values, self._driver, statement.sql, statement.params, ("id",))
        if self._report_writes:
            rows = await self._reported_write(
                "complete", ids, partial(self._settle, values, "complete", ids, retry_delays)
            )
        else:
            rows = await self._settle(values, "complete", ids, retry_delays)
        return {row[0] for row in rows}

    async def fail(
        self,
        failures: Sequence[worker_sql.FailureSpec],
        *,
        retry_delays: Sequence[float] = RECORD_RETRY_DELAYS,
    ) -> dict[int, worker_sql.Released]:
        """Record failed attempts; returns the new ``run_at``/``attempts`` by job id."""
        statement = worker_sql.bind_fail_jobs(
            self._schema, worker_id=self._worker_id, failures=failures
        )
        ids = [failure.job_id for failure in failures]
        if self._report_writes:
            rows = await self._reported_write(
                "fail", ids, partial(self._settle, self._rows(statement), "fail", ids, retry_delays)
            )
        else:
            rows = await self._settle(self._rows(statement), "fail", ids, retry_delays)
        return worker_sql.decode_released(rows)

    async def _reported_write(
        self, action: str, ids: list[int], write: Callable[[], Awaitable[S]]
    ) -> S:
        """Run ``write`` timed, with an :class:`~graphile_worker.hooks.OutcomesWritten` event.

        Shielded as a whole, for the reason :meth:`_reported_claim` gives: whoever asked
        for the write must get its answer.
        """
        assert self._hooks is not None
        rows: S | None = None
        error: Exception | None = None
        with anyio.CancelScope(shield=True):
            started = time_ns()
            try:
                rows = await write()
            except Exception as caught:  # noqa: BLE001 - reported, then raised below
                error = caught
            ended = time_ns()
            written = 0 if rows is None else len(rows)
            await self._hooks.notify(
                OutcomesWritten(self._worker_id, action, tuple(ids), written, started, ended, error)
            )
        if error is not None:
            raise error
        assert rows is not None
        return rows

    async def release(self, jobs: Sequence[Job], delay: float) -> dict[int, worker_sql.Released]:
        """Hand jobs back, refunding their attempt, runnable after ``delay`` seconds.

        With a delay of 0 the job keeps its ``run_at``, and so its place in line (Node's
        ``returnJobs``, for jobs claimed but never started).
        """
        ids = [job.id for job in jobs]
        statement = worker_sql.bind_release_jobs(
            self._schema, worker_id=self._worker_id, job_ids=ids, delay=delay
        )
        rows = await self._settle(self._rows(statement), "release", ids, RECORD_RETRY_DELAYS)
        return worker_sql.decode_released(rows)

    async def release_orphans(self, known: Collection[int]) -> list[int]:
        """Hand back jobs locked in this worker's name that it does not hold (``known``).

        For after a claim failed with its connection: the server may have committed it,
        and its jobs would otherwise stay locked by a live worker for four hours.

        Raises:
            DatabaseError: the database is still away; try again later.
        """
        statement = worker_sql.bind_release_orphans(
            self._schema, worker_id=self._worker_id, known=known
        )
        rows = await perform_async(statement, self._driver)
        return [row["id"] for row in rows]

    async def reset_stale_locks(self) -> None:
        """Unlock jobs and queues locked more than four hours ago (Node's ``resetLockedAt``).

        Their workers died; a failure here is logged, since the next sweep will retry.
        """
        statement = worker_sql.bind_reset_locked(self._schema, now=self._now())
        try:
            await perform_async(statement, self._driver)
        except DatabaseError as error:
            self._logger.error("Could not reset stale job locks (%s); will try again", error)

    async def reset_stale_locks_periodically(self) -> None:
        """Sweep stale locks as Node does: first within a minute (at a random moment, so that
        a fleet restarting together does not sweep in step), then every 8 to 10 minutes."""
        delay = random.uniform(0, RESET_LOCKED_FIRST)  # spreading load, not security
        while True:
            await anyio.sleep(delay)
            await self.reset_stale_locks()
            delay = random.uniform(*RESET_LOCKED_INTERVAL)

    async def _settle(
        self,
        run: Callable[[], Awaitable[R]],
        action: str,
        ids: list[int],
        retry_delays: Sequence[float],
    ) -> R:
        """Run a statement that records outcomes, retrying while the database is away."""
        with anyio.CancelScope(shield=True):
            for attempt, delay in enumerate((*retry_delays, None), start=1):
                result = await _attempt(run)
                if not isinstance(result, DatabaseError):
                    return result
                error = result
                if delay is None or not is_transient(error):
                    raise error
                self._logger.warning(
                    "Could not %s job(s) %s (attempt %d: %s); retrying in %.1fs",
                    action,
                    _id_list(ids),
                    attempt,
                    error,
                    delay,
                )
                await anyio.sleep(delay)
        raise AssertionError("unreachable")  # the last round always returns or raises

    def _rows(self, statement: Statement) -> Callable[[], Awaitable[list[Row]]]:
        """The statement's run, rows as dicts."""
        return partial(perform_async, statement, self._driver)


async def _attempt(run: Callable[[], Awaitable[R]]) -> R | DatabaseError:
    """One attempt: its result, or the database error it raised (returned, not raised, so
    that the retry loop never waits inside an ``except`` block)."""
    try:
        return await run()
    except DatabaseError as error:
        return error


def _id_list(ids: Sequence[int], limit: int = 20) -> str:
    """Job ids for a log line; a batch of hundreds is cut short, saying how many more."""
    shown = ", ".join(map(str, ids[:limit]))
    return shown if len(ids) <= limit else f"{shown} and {len(ids) - limit} more"


def is_transient(error: DatabaseError) -> bool:
    """Errors worth retrying: a lost connection, a deadlock or a serialisation failure."""
    return isinstance(error, ConnectionLostError) or error.sqlstate in _TRANSIENT_SQLSTATES
