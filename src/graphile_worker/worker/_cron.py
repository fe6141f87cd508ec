"""The cron scheduler: one service of a running worker that turns crontab entries into jobs.

Any number of schedulers (in Python workers, in Node workers) may run on one database:
each minute is claimed per cron identifier in ``_private_known_crontabs`` by the statement
in :mod:`graphile_worker.sql.cron`, so exactly one of them adds each job. The life of a
scheduler, as in Node graphile-worker 0.18.0 (``runCron``):

1. **start**: read the known identifiers, register the new ones (known from now on) and
   backfill the old ones (:func:`~graphile_worker.worker._cron_plan.backfill_steps`), one
   statement per minute, oldest first;
2. **loop**: sleep until the next minute, check the clock, schedule what is due, move on
   one minute; never skip a minute and never repeat one (see
   :func:`~graphile_worker.worker._cron_plan.timer_check`);
3. **on error** (the database went away): log, wait with a growing, jittered delay, and
   start again at 1, so that the backfill covers what the outage missed (within ``fill``).

The decisions live in :mod:`._cron_plan`; this module only sleeps, reads the clock and runs
statements.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from ..errors import DatabaseError
from ..hooks import CronScheduled, CronTick
from ..sql._statement import perform_async
from ..sql.cron import (
    KnownCrontab,
    bind_known_crontabs,
    bind_register_crontabs,
    bind_schedule_cron_jobs,
    decode_known_crontabs,
    decode_scheduled,
)
from ._cron_plan import (
    ONE_MINUTE,
    backfill_steps,
    ceil_minute,
    job_spec,
    timer_check,
    unknown_identifiers,
)

if TYPE_CHECKING:
    from ..crontab import CronItem
    from ..drivers.base import DatabaseDriver
    from ..hooks._dispatch import Hooks
    from ._cron_clock import CronClock

__all__ = ["CronScheduler", "restart_delay"]

# Node's CRON_RETRY: 200 ms growing by 1.5x per failure up to a minute, then jittered.
_RETRY_MIN_DELAY = 0.2
_RETRY_MAX_DELAY = 60.0
_RETRY_MULTIPLIER = 1.5


def restart_delay(failures: int) -> float:
    """Seconds to wait before restarting after ``failures`` failures in a row (1 or more).

    Node's ``calculateDelay``: the base delay grows 1.5-fold per failure, capped at 60 s,
    and is multiplied by a random factor between 0.5 and 1.5 so that many workers that lost
    the same database do not come back in step.
    """
    base = min(_RETRY_MIN_DELAY * _RETRY_MULTIPLIER ** (failures - 1), _RETRY_MAX_DELAY)
    return base * (0.5 + random.random())


class CronScheduler:
    """Schedules jobs for ``items`` until cancelled; see the module docstring.

    Args:
        items: The cron items, with distinct identifiers.
        clock: Where the time comes from (``WorkerOptions.cron_clock``).
        hooks: Told :class:`~graphile_worker.hooks.CronTick` and
            :class:`~graphile_worker.hooks.CronScheduled`.
    """

    def __init__(
        self,
        *,
        items: Sequence[CronItem],
        driver: DatabaseDriver,
        schema: str,
        clock: CronClock,
        hooks: Hooks,
        worker_id: str,
        logger: logging.Logger,
    ) -> None:
        self._items = tuple(items)
        self._driver = driver
        self._schema = schema
        self._clock = clock
        self._hooks = hooks
        self._worker_id = worker_id
        self._logger = logger

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Schedule until cancelled; never raises a database error (it restarts instead).

        ``task_status.started()`` is called once the identifiers are registered, before the
        backfill, or after the first failure to do so: a worker's start-up waits for a
        healthy database's answer but never for a backfill or a retry.
        """
        failures = 0
        started = False
        while True:
            try:
                start = self._clock.now()
                known = await self._register(start)
                if not started:
                    started = True
                    task_status.started()
                await self._backfill(start, known)
                failures = 0
                await self._loop(start)
            # One try per attempt is the point: the loop is the restart.
            except Exception as error:  # noqa: PERF203
                # Node restarts cron on any error, so that its backfill runs again: a
                # minute lost to an outage comes back if the item's fill covers it.
                if not started:
                    started = True
                    task_status.started()
                failures += 1
                delay = restart_delay(failures)
                self._logger.error(
                    "Cron scheduling failed (%s); restarting the scheduler in %.1f s "
                    "(failure %d in a row)",
                    error,
                    delay,
                    failures,
                    exc_info=not isinstance(error, DatabaseError),
                )
                await anyio.sleep(delay)

    # --------------------------------------------------------------------------- start

    async def _register(self, start: datetime) -> dict[str, KnownCrontab]:
        """Read the known identifiers and register ours that are new (known from ``start``)."""
        rows = await perform_async(bind_known_crontabs(self._schema), self._driver)
        known = decode_known_crontabs(rows)
        new = unknown_identifiers(self._items, known)
        if new:
            statement = bind_register_crontabs(self._schema, identifiers=new, start=start)
            await perform_async(statement, self._driver)
        return known

    async def _backfill(self, start: datetime, known: dict[str, KnownCrontab]) -> None:
        for step in backfill_steps(self._items, known, start):
            await self._schedule(step.minute, step.items, backfilled=True)

    # ---------------------------------------------------------------------------- loop

    async def _loop(self, start: datetime) -> None:
        # The backfill may have taken a while; the live schedule still starts where the
        # worker started, and catching up on it is not a backfill.
        minute = ceil_minute(start)
        while True:
            await self._clock.sleep_until(minute)
            now = self._clock.now()
            check = timer_check(minute, now)
            if check == "early":
                self._logger.debug(
                    "Cron woke %.3f s before %s (clock set back?); sleeping again",
                    (minute - now).total_seconds(),
                    minute.isoformat(),
                )
                continue
            if check == "late":
                self._logger.debug(
                    "Cron is %.0f s behind %s; catching up",
                    (now - minute).total_seconds(),
                    minute.isoformat(),
                )
            due = tuple(item for item in self._items if item.matches(minute))
            if self._hooks:
                identifiers = tuple(item.identifier for item in due)
                await self._hooks.notify(CronTick(self._worker_id, minute, identifiers))
            if due:
                await self._schedule(minute, due, backfilled=False)
            minute += ONE_MINUTE

    async def _schedule(
        self, minute: datetime, items: Sequence[CronItem], *, backfilled: bool
    ) -> None:
        jobs = [job_spec(item, minute, backfilled=backfilled) for item in items]
        statement = bind_schedule_cron_jobs(self._schema, minute=minute, jobs=jobs)
        added = decode_scheduled(await perform_async(statement, self._driver))
        if added:
            self._logger.debug(
                "Cron scheduled %s for %s%s",
                ", ".join(f"{name} (job {job_id})" for name, job_id in added.items()),
                minute.isoformat(),
                " (backfill)" if backfilled else "",
            )
        if self._hooks:
            others = tuple(item.identifier for item in items if item.identifier not in added)
            await self._hooks.notify(
                CronScheduled(
                    self._worker_id,
                    minute,
                    backfilled=backfilled,
                    scheduled=MappingProxyType(added),
                    already_scheduled=others,
                )
            )
