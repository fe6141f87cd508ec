"""A batcher: outcomes wait a moment in memory, then one statement records them all.

Each commit costs an fsync, so recording every finished job on its own caps a worker at a
few hundred to a few thousand jobs a second. A :class:`Batcher` collects items (finished
jobs), and its background task records everything collected so far in one call once the
first item has waited ``delay`` seconds (0: the items that arrive in the same moment, and
those that arrive while the previous batch is being written). Node graphile-worker's
``completeJobBatchDelay``/``failJobBatchDelay`` work the same way.

Nothing collected is ever dropped without a log line:

* a batch that fails for a passing reason (a lost connection, a failover, a deadlock) is
  retried with growing delays; meanwhile :attr:`Batcher.troubled` is set so the runner
  stops claiming jobs whose outcomes it could not record either;
* the runner calls :meth:`Batcher.drain` when it stops, in a shielded scope: it waits for
  a batch in flight and records what is left, with a shorter retry budget;
* a batch that still cannot be recorded is logged as an error naming every job; those jobs
  stay locked by this worker until the stale-lock reset frees them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from ..errors import DatabaseError
from ._fetch import is_transient

__all__ = ["FINAL_RETRY_DELAYS", "RUNNING_RETRY_DELAYS", "Batcher"]

T = TypeVar("T")
R = TypeVar("R")

RUNNING_RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 30.0, 30.0, 30.0, 30.0)
"""Seconds between attempts at a batch while the worker runs: about three minutes in all,
enough to ride out a restart or a failover of the database."""
FINAL_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Seconds between attempts at the last batch when the worker stops: a stop must end."""


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
        retry_delays: Seconds between attempts while the worker runs.
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
        retry_delays: Sequence[float] = RUNNING_RETRY_DELAYS,
    ) -> None:
        self._name = name
        self._delay = delay
        self._record = record
        self._recorded = recorded
        self._describe = describe
        self._settled = settled
        self._logger = logger
        self._retry_delays = tuple(retry_delays)
        self._pending: list[T] = []
        self._in_flight = 0
        self._arrived = anyio.Event()
        self._lock = anyio.Lock()
        self._scope: anyio.CancelScope | None = None
        self.troubled = False
        """Set while a batch is being retried after a failure."""

    def add(self, item: T) -> None:
        """Queue one item; it is recorded with the next batch."""
        self._pending.append(item)
        self._arrived.set()

    @property
    def unrecorded(self) -> int:
        """Items collected and not yet recorded (waiting, or in a batch being written)."""
        return len(self._pending) + self._in_flight

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
                await self._flush(self._retry_delays)

    async def drain(self) -> None:
        """Stop the background task and record everything collected; call shielded.

        A batch being written is finished first; one waiting between two attempts is
        taken over, with the shorter retry budget of a stopping worker.
        """
        if self._scope is not None:
            self._scope.cancel()
        async with self._lock:  # wait for a batch in flight
            pass
        while self._pending:
            await self._flush(FINAL_RETRY_DELAYS)

    async def _flush(self, retry_delays: tuple[float, ...]) -> None:
        async with self._lock:
            items, self._pending = self._pending, []
            if not items:
                return
            self._in_flight = len(items)
            try:
                result = await self._attempts(items, retry_delays)
            finally:
                self._in_flight = 0
        if result is not None:
            # Shielded: the follow-up (counters, hooks) belongs to a batch already recorded.
            with anyio.CancelScope(shield=True):
                await self._recorded(items, result[0])
        self._settled()

    async def _attempts(self, items: list[T], retry_delays: tuple[float, ...]) -> tuple[R] | None:
        """Record ``items``, retrying passing failures; ``None`` when they could not be."""
        for attempt, delay in enumerate((*retry_delays, None), start=1):
            with anyio.CancelScope(shield=True):
                outcome = await self._try(items)
            if not isinstance(outcome, DatabaseError):
                self.troubled = False
                return outcome
            if delay is None or not is_transient(outcome):
                self.troubled = False
                self._give_up(items, outcome, attempt)
                return None
            self.troubled = True
            self._logger.warning(
                "Could not %s a batch of %d job(s) (attempt %d: %s); retrying in %.1fs",
                self._name,
                len(items),
                attempt,
                outcome,
                delay,
            )
            try:
                await anyio.sleep(delay)
            except BaseException:
                # Cancelled between attempts (the run is ending): hand the items back to
                # the pending list, where drain() finds them.
                self._pending[:0] = items
                raise
        raise AssertionError("unreachable")  # the last round always returns

    async def _try(self, items: list[T]) -> tuple[R] | DatabaseError:
        try:
            return (await self._record(items),)
        except DatabaseError as error:
            return error

    def _give_up(self, items: list[T], error: DatabaseError, attempts: int) -> None:
        self._logger.error(
            "Could not %s job(s) %s after %d attempt(s): %s. They stay locked by this worker "
            "until the stale-lock reset frees them (after 4 hours) and may then run again",
            self._name,
            ", ".join(str(self._describe(item)) for item in items),
            attempts,
            error,
        )
