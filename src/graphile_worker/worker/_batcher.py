"""Outcomes waiting in memory: recorded together in one statement, and retried while the
database is away.

Each commit costs an fsync, so recording every finished job on its own caps a worker at a
few hundred to a few thousand jobs a second. A :class:`Batcher` collects items (finished
jobs), and its background task records everything collected so far in one call once the
first item has waited ``delay`` seconds (0: the items that arrive in the same moment, and
those that arrive while the previous batch is being written). Node graphile-worker's
``completeJobBatchDelay``/``failJobBatchDelay`` work the same way. Without batching, a
``retry_only`` batcher holds just the outcomes whose own write failed, so that both modes
ride out an outage the same way.

Nothing collected is ever dropped without a log line:

* a batch that fails for a passing reason (a lost connection, a restart or failover, a
  statement or lock timeout) is retried with capped, jittered back-off
  (:func:`retry_delay`) for ``retry_window`` seconds (:data:`RETRY_WINDOW` by default);
  meanwhile :attr:`Batcher.troubled` is set so the runner claims no jobs whose outcomes it
  could not record either;
* the runner calls :meth:`Batcher.drain` when it stops, in a shielded scope: it waits for
  a batch in flight and records what is left, retrying for :data:`FINAL_RETRY_WINDOW`
  seconds at most, so that a stop during an outage ends;
* a batch that still cannot be recorded is logged as an error naming every job; those jobs
  stay locked by this worker until they are freed (:data:`GIVEN_UP_FATE`), and then run
  again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from .._log_fields import jobs_fields
from ..errors import DatabaseError
from ._fetch import is_transient

__all__ = [
    "FINAL_RETRY_WINDOW",
    "GIVEN_UP_FATE",
    "RETRY_FIRST_DELAY",
    "RETRY_MAX_DELAY",
    "RETRY_WINDOW",
    "Batcher",
    "retry_delay",
    "worth_retrying",
]

T = TypeVar("T")
R = TypeVar("R")

RETRY_WINDOW = 600.0
"""Seconds an outcome is retried while the worker runs, from its first failed attempt.

Long enough for a restart, a failover or a short maintenance window of the database. Giving
up early costs a lot: the job stays locked by a live worker for four hours and then runs
again."""

RETRY_FIRST_DELAY = 0.1
"""Seconds before the first retry; each later delay doubles, up to the maximum."""

RETRY_MAX_DELAY = 10.0
"""Longest wait between two attempts: how late an outcome may be written once the database
is back."""

FINAL_RETRY_WINDOW = 10.0
"""Seconds of retrying left to outcomes still owed when the worker stops: a stop must end.
The statement in flight when the window closes is still waited for."""

GIVEN_UP_FATE = (
    "the job(s) stay locked by this worker and run again once freed: by a recovery sweep "
    "some minutes after this worker stops (with recovery on), or at the latest by the "
    "stale-lock reset 4 hours after they were locked"
)
"""What becomes of a job whose outcome is given up, for the error that says so."""

_RETRYABLE_SQLSTATES = frozenset(
    {
        "57014",  # query_canceled: a statement_timeout, or an administrator's cancel
        "55P03",  # lock_not_available: a lock_timeout
        "25006",  # read_only_sql_transaction: a failover still pointing at the old primary
        # object_not_in_prerequisite_state: a database closed to new sessions (ALLOW_CONNECTIONS
        # false, during maintenance); a driver that connects inside the statement (asyncpg's
        # pool) reports the refusal as the statement's own error.
        "55000",
    }
)
_RETRYABLE_CLASSES = ("53",)  # insufficient resources: disk full, memory, too many connections


def worth_retrying(error: DatabaseError) -> bool:
    """Whether writing an outcome that failed with ``error`` may succeed later.

    More than :func:`~graphile_worker.worker._fetch.is_transient` (lost connections,
    deadlocks, serialisation failures): timeouts and a full disk pass too. Writing an
    outcome again is harmless even if the first write went through, because it only
    touches jobs still locked by this worker.
    """
    if is_transient(error):
        return True
    sqlstate = error.sqlstate or ""
    return sqlstate in _RETRYABLE_SQLSTATES or sqlstate.startswith(_RETRYABLE_CLASSES)


def retry_delay(
    attempt: int, elapsed: float, *, window: float, max_delay: float, jitter: float
) -> float | None:
    """Seconds to wait after ``attempt`` failed attempts, or ``None`` when the window is spent.

    The delay doubles from :data:`RETRY_FIRST_DELAY` up to ``max_delay``; ``jitter`` takes up
    to half of it away, so that workers cut off together do not come back in step. The
    last wait is cut short so that one more attempt is made as the window closes.

    Args:
        attempt: How many attempts have failed (1 after the first).
        elapsed: Seconds since the first attempt began.
        window: Seconds of retrying allowed in all.
        max_delay: The cap on a single wait.
        jitter: A number from 0 to 1 (``random.random()`` in use).
    """
    remaining = window - elapsed
    if remaining <= 0:
        return None
    base = min(max_delay, RETRY_FIRST_DELAY * 2.0 ** min(attempt - 1, 32))
    return min(base * (1.0 - jitter / 2), remaining)


class Batcher(Generic[T, R]):
    """Items waiting to be recorded together, and the background task that records them.

    Args:
        name: What a batch does, for log lines (``"complete"``, ``"fail"``).
        delay: Seconds the first item of a batch waits for others.
        record: Records a batch in one statement (one attempt; raises
            :class:`~graphile_worker.errors.DatabaseError`). Always run shielded.
        recorded: Follow-up once a batch is recorded (counters, hooks), with what
            ``record`` returned.
        describe: The job id of an item, for log lines.
        settled: Called after every batch, recorded or given up (the runner looks for
            jobs again: a recorded outcome may have unlocked a named queue).
        logger: Where retries and lost batches are reported.
        retry_window: Seconds a batch is retried while the worker runs.
        retry_max_delay: Longest wait between two attempts.
        retry_only: Items arrive only after their own write failed (no batching was
            asked for), so any item waiting means trouble.
        worker_id: Put on log records (with the job ids), for structured logging.
    """

    def __init__(
        self,
        *,
        name: str,
        delay: float,
        record: Callable[[list[T]], Awaitable[R]],
        recorded: Callable[[list[T], R], Awaitable[None]],
        describe: Callable[[T], int],
        settled: Callable[[], None],
        logger: logging.Logger,
        retry_window: float = RETRY_WINDOW,
        retry_max_delay: float = RETRY_MAX_DELAY,
        retry_only: bool = False,
        worker_id: str = "",
    ) -> None:
        self._name = name
        self._delay = delay
        self._record = record
        self._recorded = recorded
        self._describe = describe
        self._settled = settled
        self._logger = logger
        self._window = retry_window
        self._max_delay = retry_max_delay
        self._retry_only = retry_only
        self._worker_id = worker_id
        self._pending: list[T] = []
        self._flying: list[T] = []
        self._in_flight = 0
        self._arrived = anyio.Event()
        self._lock = anyio.Lock()
        self._scope: anyio.CancelScope | None = None
        self._retrying = False

    def add(self, item: T) -> None:
        """Queue one item; it is recorded with the next batch."""
        self._pending.append(item)
        self._arrived.set()

    @property
    def troubled(self) -> bool:
        """Whether outcomes are owed that could not be written yet (claim nothing meanwhile).

        With batching: while a batch is being retried. Without (``retry_only``): while any
        item waits, since each one has failed once already.
        """
        if self._retrying:
            return True
        return self._retry_only and (self._in_flight > 0 or bool(self._pending))

    @property
    def unrecorded(self) -> int:
        """Items collected and not yet recorded (waiting, or in a batch being written)."""
        return len(self._pending) + self._in_flight

    def held_ids(self) -> list[int]:
        """The job ids of the items not yet recorded (waiting, or being written)."""
        describe = self._describe
        return [describe(item) for item in (*self._pending, *self._flying)]

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Record batches as items arrive; runs until cancelled (then call :meth:`drain`)."""
        with anyio.CancelScope() as self._scope:
            task_status.started()
            while True:
                await self._arrived.wait()
                self._arrived = anyio.Event()
                if self._delay > 0:
                    await anyio.sleep(self._delay)
                else:
                    # Let the jobs finishing in this same moment join the batch.
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                await self._flush(self._window)

    async def drain(self) -> None:
        """Stop the background task and record everything collected; call shielded.

        A batch being written is finished first; one waiting between two attempts is
        taken over. Retrying ends :data:`FINAL_RETRY_WINDOW` seconds after the drain began
        (or sooner, with a shorter ``retry_window``).
        """
        if self._scope is not None:
            self._scope.cancel()
        async with self._lock:  # wait for a batch in flight
            pass
        window = min(self._window, FINAL_RETRY_WINDOW)
        ends = anyio.current_time() + window
        while self._pending:
            await self._flush(max(0.0, ends - anyio.current_time()))

    async def _flush(self, window: float) -> None:
        async with self._lock:
            items, self._pending = self._pending, []
            if not items:
                return
            self._in_flight = len(items)
            self._flying = items
            try:
                result = await self._attempts(items, window)
            finally:
                self._in_flight = 0
                self._flying = []
        if result is not None:
            # Shielded: the follow-up (counters, hooks) belongs to a batch already recorded.
            with anyio.CancelScope(shield=True):
                await self._recorded(items, result[0])
        self._settled()

    async def _attempts(self, items: list[T], window: float) -> tuple[R] | None:
        """Record ``items``, retrying passing failures; ``None`` when they could not be."""
        began = anyio.current_time()
        attempt = 0
        while True:
            attempt += 1
            with anyio.CancelScope(shield=True):
                outcome = await self._try(items)
            if not isinstance(outcome, DatabaseError):
                self._retrying = False
                return outcome
            elapsed = anyio.current_time() - began
            delay = (
                retry_delay(
                    attempt,
                    elapsed,
                    window=window,
                    max_delay=self._max_delay,
                    jitter=random.random(),  # spreading load, not security
                )
                if worth_retrying(outcome)
                else None
            )
            if delay is None:
                self._retrying = False
                self._give_up(items, outcome, attempt, elapsed)
                return None
            self._retrying = True
            self._logger.warning(
                "Could not %s a batch of %d job(s) (%s) (attempt %d: %s); retrying in %.1fs, "
                "and claiming no new jobs until it is written",
                self._name,
                len(items),
                self._ids(items),
                attempt,
                outcome,
                delay,
                extra=self._fields(items),
            )
            try:
                await anyio.sleep(delay)
            except BaseException:
                # Cancelled between attempts (the run is ending): hand the items back to
                # the pending list, where drain() finds them.
                self._pending[:0] = items
                raise

    async def _try(self, items: list[T]) -> tuple[R] | DatabaseError:
        try:
            return (await self._record(items),)
        except DatabaseError as error:
            return error

    def _fields(self, items: list[T]) -> dict[str, object]:
        return jobs_fields(map(self._describe, items), self._worker_id)

    def _ids(self, items: list[T], limit: int = 20) -> str:
        shown = ", ".join(str(self._describe(item)) for item in items[:limit])
        return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"

    def _give_up(self, items: list[T], error: DatabaseError, attempts: int, spent: float) -> None:
        self._logger.error(
            "Could not %s job(s) %s after %d attempt(s) over %.0fs: %s. Giving up on these "
            "outcomes: %s",
            self._name,
            ", ".join(str(self._describe(item)) for item in items),
            attempts,
            spent,
            error,
            GIVEN_UP_FATE,
            extra=self._fields(items),
        )
