"""The runner: :class:`Worker` claims jobs from PostgreSQL and runs their handlers.

Build a :class:`WorkerOptions`, then ``await Worker(options).run()`` (until stopped),
``await worker.run_once()`` (what is runnable now, for tests), or ``async with worker:``
inside an application. Handlers receive a :class:`WorkerContext`.
"""

from __future__ import annotations

from ..context import WorkerContext as WorkerContext
from ._cron_clock import CronClock as CronClock
from ._cron_clock import ManualCronClock as ManualCronClock
from ._cron_clock import SystemCronClock as SystemCronClock
from ._local_queue_options import LocalQueueOptions as LocalQueueOptions
from ._local_queue_options import RefetchDelay as RefetchDelay
from ._options import RunOnceSummary as RunOnceSummary
from ._options import WorkerOptions as WorkerOptions
from ._worker import Worker as Worker

__all__ = [
    "CronClock",
    "LocalQueueOptions",
    "ManualCronClock",
    "RefetchDelay",
    "RunOnceSummary",
    "SystemCronClock",
    "Worker",
    "WorkerContext",
    "WorkerOptions",
]
