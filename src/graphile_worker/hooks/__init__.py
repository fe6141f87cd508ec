"""Hooks: observers that watch the worker, interceptors that change what it does, and plugins.

Two kinds of hook, deliberately kept apart because they fail differently:

* An :class:`Observer` is told about lifecycle events (:data:`Event`) and cannot change
  anything. An observer that raises is logged and ignored: metrics or tracing code must
  never stop a worker.
* An interceptor returns an explicit result type that says what happens next: before a job
  is scheduled (:class:`Schedule`, :class:`SkipSchedule`, :class:`FailSchedule`), before a
  job runs (:class:`Run`, :class:`SkipRun`, :class:`FailRun`) and after it ran (an
  :data:`Outcome`). Because interceptors decide outcomes, one that refuses or raises fails
  that job with a :class:`~graphile_worker.HookError`. ``recover_job`` interceptors decide
  what happens to each job of a dead worker (see :mod:`graphile_worker.recovery`); one
  that raises is logged and the job is recovered as usual.

A :class:`Plugin` bundles observers and interceptors under one name. Hand plugins and bare
observers to ``WorkerOptions(hooks=[...])``; the worker calls an observer only for the
events whose method it overrides, so a hook costs nothing where it does not look.

Hooks may be plain ``def`` or ``async def``; both run on the event loop, in order, one after
the other. Keep them quick: hand slow work to a queue or a background task of your own.
"""

from __future__ import annotations

from ._events import CronScheduled as CronScheduled
from ._events import CronTick as CronTick
from ._events import Event as Event
from ._events import JobComplete as JobComplete
from ._events import JobFail as JobFail
from ._events import JobFetch as JobFetch
from ._events import JobInterrupted as JobInterrupted
from ._events import JobPermanentlyFail as JobPermanentlyFail
from ._events import JobsClaimed as JobsClaimed
from ._events import JobStart as JobStart
from ._events import LocalQueueFetched as LocalQueueFetched
from ._events import LocalQueueInit as LocalQueueInit
from ._events import LocalQueueModeChange as LocalQueueModeChange
from ._events import LocalQueueRefetchDelay as LocalQueueRefetchDelay
from ._events import LocalQueueReturned as LocalQueueReturned
from ._events import Observer as Observer
from ._events import ObserverResult as ObserverResult
from ._events import OutcomesWritten as OutcomesWritten
from ._events import WorkerInit as WorkerInit
from ._events import WorkerRecovered as WorkerRecovered
from ._events import WorkerShutdown as WorkerShutdown
from ._events import WorkerStart as WorkerStart
from ._interceptors import UNCHANGED as UNCHANGED
from ._interceptors import AfterJobRun as AfterJobRun
from ._interceptors import BeforeJobRun as BeforeJobRun
from ._interceptors import BeforeJobSchedule as BeforeJobSchedule
from ._interceptors import Failed as Failed
from ._interceptors import FailRun as FailRun
from ._interceptors import FailSchedule as FailSchedule
from ._interceptors import Outcome as Outcome
from ._interceptors import Run as Run
from ._interceptors import RunDecision as RunDecision
from ._interceptors import Schedule as Schedule
from ._interceptors import ScheduleDecision as ScheduleDecision
from ._interceptors import ScheduleRequest as ScheduleRequest
from ._interceptors import SkipRun as SkipRun
from ._interceptors import SkipSchedule as SkipSchedule
from ._interceptors import Succeeded as Succeeded
from ._plugin import Plugin as Plugin

__all__ = [
    "UNCHANGED",
    "AfterJobRun",
    "BeforeJobRun",
    "BeforeJobSchedule",
    "CronScheduled",
    "CronTick",
    "Event",
    "FailRun",
    "FailSchedule",
    "Failed",
    "JobComplete",
    "JobFail",
    "JobFetch",
    "JobInterrupted",
    "JobPermanentlyFail",
    "JobStart",
    "JobsClaimed",
    "LocalQueueFetched",
    "LocalQueueInit",
    "LocalQueueModeChange",
    "LocalQueueRefetchDelay",
    "LocalQueueReturned",
    "Observer",
    "ObserverResult",
    "Outcome",
    "OutcomesWritten",
    "Plugin",
    "Run",
    "RunDecision",
    "Schedule",
    "ScheduleDecision",
    "ScheduleRequest",
    "SkipRun",
    "SkipSchedule",
    "Succeeded",
    "WorkerInit",
    "WorkerRecovered",
    "WorkerShutdown",
    "WorkerStart",
]
