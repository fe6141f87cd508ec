"""One run of a worker: the claim loop, the jobs, the wake-ups and the shutdown sequence.

A :class:`WorkerRun` lives from ``run()``/``run_once()`` start to return. Its shape:

* the **claim loop** asks for as many jobs as there are free slots, hands them to the
  :class:`~graphile_worker.worker._slots.Slots` (``concurrency`` long-lived tasks that run
  jobs one after another) and claims again while claims return something; when one comes
  back empty it sleeps until a wake-up: a ``jobs:insert`` notification, a slot running
  out of work (its job's end may have unlocked a serial queue), the timer for the next
  delayed job, or the poll interval;
* with a **local queue** the claims fetch a batch into memory, and slots take their next
  job straight from there; the claim loop only refills it, and hands back what expires;
* each job's **outcome** is recorded by an
  :class:`~graphile_worker.worker._outcomes.OutcomeRecorder`, at once or in batches;
* **stopping** (``stop()``, a signal, a breaking migration) ends the claim loop and raises
  the abort signal; running jobs get ``shutdown_grace_period`` seconds, then the jobs task
  group is cancelled; a second signal skips the wait;
* jobs still in the local queue are handed back at once, outcomes waiting in a batch are
  written, and every job that did not finish is **released** in one statement, without
  spending its attempt: all in shielded scopes, so this also happens when the run itself
  is cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import sniffio
from anyio.abc import TaskGroup, TaskStatus

from .._log_fields import job_fields
from ..errors import ConnectionLostError, DatabaseError
from ..hooks import (
    Event,
    JobFetch,
    JobInterrupted,
    LocalQueueFetched,
    LocalQueueInit,
    LocalQueueModeChange,
    LocalQueueRefetchDelay,
    LocalQueueReturned,
    WorkerShutdown,
    WorkerStart,
)
from ._context import AbortSignal, JobContext
from ._cron import CronScheduler
from ._execute import attempt_job
from ._fetch import JobSource
from ._listen import listen_for_jobs
from ._local_queue import LocalQueue
from ._options import RunOnceSummary
from ._outcomes import OutcomeRecorder
from ._presence import Presence
from ._shutdown import watch_signals
from ._slots import Slots

if TYPE_CHECKING:
    from anyio.lowlevel import EventLoopToken

    from ..drivers.base import DatabaseDriver
    from ..hooks._dispatch import Hooks
    from ..spec import Job
    from ._options import WorkerOptions

__all__ = ["WorkerRun"]

TIMER_SLACK = 0.002
"""Seconds added to the timer for the next delayed job, so it fires after run_at, not just
before it (the database rounds to microseconds, our clock does not)."""


REFILL_TURNS = 4
"""Loop turns the slots give the claim loop when the local queue wants a top-up: one to
wake it, the others for the checkpoints a statement passes before it is sent (anyio's
thread hand-off takes two or three)."""


def _threadsafe_scheduler(token: EventLoopToken) -> Callable[..., object]:
    """The loop's own "call this soon" entry point for other threads; it never blocks.

    anyio's ``from_thread.run_sync`` waits for the result, which deadlocks when the loop
    thread is itself waiting for the calling thread. Both native entry points take
    ``(callback, *args)``: asyncio's loop ``call_soon_threadsafe``, trio's token
    ``run_sync_soon``.
    """
    native = token.native_token
    name = "run_sync_soon" if sniffio.current_async_library() == "trio" else "call_soon_threadsafe"
    scheduler: Callable[..., object] = getattr(native, name)
    return scheduler


class WorkerRun:
    """The state of one run; built and driven by :class:`~graphile_worker.worker.Worker`."""

    def __init__(
        self,
        *,
        options: WorkerOptions,
        driver: DatabaseDriver,
        hooks: Hooks,
        worker_id: str,
        logger: logging.Logger,
        continuous: bool,
        token: EventLoopToken,
    ) -> None:
        self._options = options
        self._driver = driver
        self._hooks = hooks
        self._worker_id = worker_id
        self._logger = logger
        self._continuous = continuous
        self._token = token
        self._thread_id = threading.get_ident()
        self._call_soon_threadsafe = _threadsafe_scheduler(token)
        self._registry = options.registry
        self._source = JobSource(
            driver=driver,
            schema=options.schema,
            worker_id=worker_id,
            task_identifiers=self._registry.identifiers,
            forbidden_flags=options.forbidden_flags,
            use_local_time=options.use_local_time,
            logger=logger,
            hooks=hooks,
        )
        # Local-queue events are built only when an observer watches them; the queue hands
        # them over synchronously and the claim loop delivers them (_deliver_events).
        self._events: list[Event] = []
        watched = hooks.observes(
            LocalQueueInit,
            LocalQueueModeChange,
            LocalQueueFetched,
            LocalQueueReturned,
            LocalQueueRefetchDelay,
        )
        self._local_queue = (
            None
            if options.local_queue is None
            else LocalQueue(
                options.local_queue,
                self._source,
                logger,
                emit=self._events.append if watched else None,
                worker_id=worker_id,
            )
        )
        self._outcomes = OutcomeRecorder(
            source=self._source,
            hooks=hooks,
            worker_id=worker_id,
            logger=logger,
            job_logger=logger.getChild("jobs"),
            complete_delay=options.complete_job_batch_delay,
            fail_delay=options.fail_job_batch_delay,
            settled=self._nudge,
            retry_window=options.outcome_retry_window,
            retry_max_delay=options.outcome_retry_max_delay,
        )
        self.abort = AbortSignal()
        self._threads = anyio.CapacityLimiter(options.concurrency)
        self._retry_undecodable = options.retry_undecodable_payloads
        self._wake = anyio.Event()
        self._running: dict[int, Job] = {}  # handed to the slots: waiting or running
        self._slots = Slots(
            count=options.concurrency,
            run_job=self._run_job,
            take_nowait=self._take_from_memory,
            idle=self._nudge,
        )
        self._unstarted: list[Job] = []
        # Claimed by a claim sent before an outcome could not be written: kept, not started,
        # until what is owed is written (see _claim_loop).
        self._held: list[Job] = []
        self._interrupted: list[Job] = []
        self._stop_reason: str | None = None
        self._immediate = False
        self._grace_scope: anyio.CancelScope | None = None
        self._shutdown_notified = False
        self._released = 0
        self._claim_in_doubt = False
        self._presence = (
            None
            if options.recovery is None
            else Presence(
                driver=driver,
                schema=options.schema,
                worker_id=worker_id,
                options=options.recovery,
                hooks=hooks,
                logger=logger,
                running=self._running.keys,
                given_up=self._forget_local_jobs,
            )
        )

    # ------------------------------------------------------------------------- stopping

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (the run no longer claims jobs)."""
        return self._stop_reason is not None

    def request_stop(self, reason: str) -> None:
        """Stop claiming and let running jobs finish; call on the event loop."""
        if self._stop_reason is None:
            self._stop_reason = reason
            self._logger.info("Worker %s stopping: %s", self._worker_id, reason)
            self._unstarted.extend(self._slots.close())
            self.abort.set()
            self._wake.set()

    def request_immediate_stop(self, reason: str) -> None:
        """Stop now: cancel running jobs at once (they are still released)."""
        self.request_stop(reason)
        self._immediate = True
        if self._grace_scope is not None:
            self._grace_scope.cancel()

    def request_stop_from_any_thread(self, reason: str) -> None:
        """:meth:`request_stop`, safe to call from any thread."""
        if threading.get_ident() == self._thread_id:
            self.request_stop(reason)
            return
        # Schedule without waiting: the loop may be busy (even blocked on this very thread),
        # and a stop request must never hang its caller. A RuntimeError means the event
        # loop has finished, and with it the run.
        with contextlib.suppress(RuntimeError):
            self._call_soon_threadsafe(self.request_stop, reason)

    def _on_breaking_migration(self, number: int) -> None:
        self._logger.warning(
            "A breaking migration (%s) was applied to the database; this worker cannot "
            "safely continue and is stopping",
            number,
        )
        self.request_stop(f"breaking migration {number} applied by another process")

    def _nudge(self) -> None:
        self._wake.set()

    def _forget_local_jobs(self) -> None:
        """A sweep gave this worker up and handed its jobs back: memory is no longer ours."""
        if self._local_queue is not None:
            dropped = self._local_queue.forget()
            if dropped:
                self._logger.warning(
                    "Dropped %d job(s) from the local queue: the sweep handed them back",
                    dropped,
                )

    def _jobs_announced(self, count: int) -> None:
        if self._local_queue is not None:
            self._local_queue.announce(count)
        self._wake.set()

    # ------------------------------------------------------------------------------ run

    async def serve(self, task_status: TaskStatus[None]) -> RunOnceSummary:
        """Run until stopped (or, for ``run_once``, until nothing is runnable)."""
        presence = self._presence
        try:
            async with anyio.create_task_group() as services:
                if self._options.install_signal_handlers:
                    await services.start(self._watch_signals)
                if presence is not None:
                    # Registered before the first claim: a job must never be locked by a
                    # worker that sweepers cannot see.
                    await presence.register()
                    services.start_soon(presence.run)
                if self._continuous:
                    await services.start(self._listen)
                    services.start_soon(self._source.reset_stale_locks_periodically)
                    if self._options.cron_items:
                        # Only continuous runs schedule cron jobs, as in Node (whose
                        # runOnce has no cron): run_once() ends when the queue is empty,
                        # while a scheduler must be running as each minute begins.
                        await services.start(self._run_cron)
                else:
                    await self._source.reset_stale_locks()
                await self._outcomes.start(services)
                self._warn_small_local_queue()
                self._warn_unknown_cron_tasks()
                self._logger.info(
                    "Worker %s connected and looking for jobs (task names: %s)",
                    self._worker_id,
                    ", ".join(repr(name) for name in self._registry.identifiers),
                )
                if self._hooks:
                    await self._hooks.notify(WorkerStart(self._worker_id))
                task_status.started()
                await self._process()
                services.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._notify_shutdown(self._stop_reason or "the run was cancelled")
                if presence is not None:
                    await presence.unregister()
        outcomes = self._outcomes
        return RunOnceSummary(
            completed=outcomes.completed,
            failed=outcomes.failed,
            permanently_failed=outcomes.permanently_failed,
            interrupted=self._released,
        )

    def _warn_unknown_cron_tasks(self) -> None:
        """A crontab line for a task this worker lacks is usually a typo or a missing import;
        it may also be meant for another kind of worker, so it is a warning, not an error."""
        known = set(self._registry.identifiers)
        unknown = sorted({item.task_identifier for item in self._options.cron_items} - known)
        if unknown:
            self._logger.warning(
                "The crontab names task(s) worker %s does not define: %s; their jobs will "
                "wait for a worker that has them",
                self._worker_id,
                ", ".join(repr(name) for name in unknown),
            )

    def _warn_small_local_queue(self) -> None:
        local_queue = self._options.local_queue
        if local_queue is not None and local_queue.size < self._options.concurrency:
            # As Node warns: the batch is used up before every slot has a job.
            self._logger.warning(
                "The local queue's size (%d) is smaller than the concurrency (%d); jobs "
                "are fetched more often than needed. Use a size of at least %d",
                local_queue.size,
                self._options.concurrency,
                self._options.concurrency,
            )

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        await watch_signals(
            graceful=self.request_stop,
            immediate=self.request_immediate_stop,
            logger=self._logger,
            task_status=task_status,
        )

    async def _run_cron(self, *, task_status: TaskStatus[None]) -> None:
        clock = self._options.cron_clock
        assert clock is not None  # WorkerOptions puts the system clock in by default
        scheduler = CronScheduler(
            items=self._options.cron_items,
            driver=self._driver,
            schema=self._options.schema,
            clock=clock,
            hooks=self._hooks,
            worker_id=self._worker_id,
            logger=self._logger,
        )
        async with anyio.create_task_group() as cron:
            await cron.start(scheduler.run)
            task_status.started()
            # Like Node, which releases cron when the runner stops: a worker that is
            # shutting down schedules nothing more, even while its jobs finish.
            await self.abort.wait()
            cron.cancel_scope.cancel()

    async def _listen(self, *, task_status: TaskStatus[None]) -> None:
        await listen_for_jobs(
            self._driver,
            on_jobs=self._jobs_announced,
            on_breaking_migration=self._on_breaking_migration,
            logger=self._logger,
            task_status=task_status,
        )

    async def _notify_shutdown(self, reason: str) -> None:
        if not self._shutdown_notified:
            self._shutdown_notified = True
            if self._hooks:
                await self._hooks.notify(WorkerShutdown(self._worker_id, reason))

    async def _process(self) -> None:
        try:
            async with anyio.create_task_group() as jobs:
                self._slots.start(jobs)
                await self._claim_loop()
                self._unstarted.extend(self._slots.close())
                self._unstarted.extend(self._take_held())
                await self._return_unstarted()
                await self._return_local_jobs()
                await self._notify_shutdown(self._stop_reason or "no more jobs to run")
                await self._wait_for_jobs(jobs)
        finally:
            with anyio.CancelScope(shield=True):
                self._unstarted.extend(self._slots.close())
                self._unstarted.extend(self._take_held())
                await self._return_unstarted()
                await self._return_local_jobs()
                await self._outcomes.drain()
                await self._release_interrupted()

    def _take_held(self) -> list[Job]:
        held, self._held = self._held, []
        return held

    def _start(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._running[job.id] = job
        self._slots.hand_out(jobs)

    async def _return_local_jobs(self) -> None:
        """Hand back the jobs waiting in the local queue, before running ones finish."""
        if self._local_queue is not None:
            with anyio.CancelScope(shield=True):
                await self._local_queue.release()
                await self._deliver_events()

    async def _deliver_events(self) -> None:
        """Tell observers the local-queue events collected since the last delivery."""
        while self._events:
            events, self._events[:] = list(self._events), []
            for event in events:
                await self._hooks.notify(event)

    def _take_from_memory(self) -> Job | None:
        """A slot's next job straight from the local queue's memory, if it has one."""
        local_queue = self._local_queue
        if local_queue is None or self.stopping or self._outcomes.troubled:
            return None
        job = local_queue.take_nowait()
        if job is not None:
            self._running[job.id] = job
            if local_queue.wants_refill:
                # The claim loop must get turns to send the top-up while the slots work
                # through the other half of memory (a threaded driver needs a few).
                self._wake.set()
                self._slots.yield_soon(turns=REFILL_TURNS)
        return job

    async def _refill(self, local_queue: LocalQueue) -> None:
        """Top the local queue up while the slots work through what it holds."""
        try:
            await local_queue.refill()
        except DatabaseError as error:
            self._claim_failed(error)
            self._logger.warning("Could not fetch jobs (%s); retrying", error)

    def _claim_failed(self, error: DatabaseError) -> None:
        """A claim that lost its connection may still have been committed by the server."""
        if isinstance(error, ConnectionLostError):
            self._claim_in_doubt = True

    async def _release_orphans(self) -> None:
        """Hand back what a claim whose reply was lost may have locked in our name.

        Everything this run holds is excluded: jobs handed to the slots, waiting in the
        local queue, being given back, or whose outcome is still to be written. Until it
        succeeds it is tried again before each claim.
        """
        known = set(self._running)
        known.update(job.id for job in self._unstarted)
        known.update(job.id for job in self._held)
        known.update(job.id for job in self._interrupted)
        known.update(self._outcomes.held_ids())
        if self._local_queue is not None:
            known.update(self._local_queue.held_ids())
        try:
            released = await self._source.release_orphans(known)
        except DatabaseError as error:
            self._logger.warning("Could not check for jobs of a lost claim (%s); retrying", error)
            return
        self._claim_in_doubt = False
        if released:
            self._logger.warning(
                "Handed back %d job(s) locked by a claim whose reply was lost with its "
                "connection: %s",
                len(released),
                ", ".join(map(str, released)),
            )

    async def _claim(self, free: int) -> list[Job]:
        if self._local_queue is not None:
            return await self._local_queue.take(free)
        return await self._source.claim(free)

    async def _claim_loop(self) -> None:
        options = self._options
        local_queue = self._local_queue
        while not self.stopping:
            if self._wake.is_set():  # renewed before claiming: a wake-up during it counts
                self._wake = anyio.Event()
            if self._events:
                await self._deliver_events()
            free = options.concurrency - len(self._running) - len(self._held)
            timeout: float | None = None
            if local_queue is not None:
                await local_queue.expire()
                if local_queue.wants_refill and not self._outcomes.troubled:
                    await self._refill(local_queue)
            if self._claim_in_doubt and not self._outcomes.troubled:
                await self._release_orphans()
            if self._outcomes.troubled:
                # Outcomes cannot be written right now; running more jobs would only add to
                # them. The batcher wakes us once a batch is written.
                timeout = options.poll_interval
            elif self._held:
                self._logger.info(
                    "Outcomes written; starting %d job(s) held meanwhile", len(self._held)
                )
                self._start(self._take_held())
                continue
            elif free > 0:
                try:
                    claimed = await self._claim(free)
                except DatabaseError as error:
                    self._claim_failed(error)
                    if not self._continuous:
                        raise
                    self._logger.warning("Could not fetch jobs (%s); retrying", error)
                    claimed = []
                    timeout = options.poll_interval
                else:
                    if self.stopping and claimed:
                        # The stop came while the claim was in flight: hand these back
                        # untouched rather than start them with the abort signal raised.
                        self._unstarted.extend(claimed)
                        return
                    if claimed and self._outcomes.troubled:
                        # Sent before an outcome failed to be written, answered after: keep
                        # these unstarted until it is. Should this worker die meanwhile,
                        # recovery hands them back with their attempt refunded, and none
                        # has run only to have its outcome lost too.
                        self._logger.info(
                            "Holding %d claimed job(s) (%s) until owed outcomes are written",
                            len(claimed),
                            ", ".join(str(job.id) for job in claimed),
                        )
                        self._held.extend(claimed)
                        continue
                    self._start(claimed)
                    if claimed:
                        continue  # there may be more; claim until a claim comes back empty
                    if local_queue is not None and local_queue.held_back:
                        timeout = local_queue.delay_left()  # no fetch was made: try again then
                    elif not self._continuous:
                        # Done once nothing runs and no outcome waits to be written (writing
                        # one may unlock a named queue with more jobs), unless something
                        # happened during the claim (a job ended, a batch was written): then
                        # the claim may have missed a job that is runnable now.
                        if not (self._running or self._outcomes.unrecorded or self._wake.is_set()):
                            return
                    else:
                        timeout = await self._until_next_poll()
            if local_queue is not None:
                expiry = local_queue.expiry_left()
                if expiry is not None:
                    timeout = expiry if timeout is None else min(timeout, expiry)
            with anyio.move_on_after(timeout):
                await self._wake.wait()

    async def _until_next_poll(self) -> float:
        """Seconds to sleep after an empty claim: the poll interval, or less for a delayed job."""
        try:
            due = await self._source.seconds_until_next()
        except DatabaseError as error:
            self._logger.warning("Could not look for delayed jobs (%s)", error)
            due = None
        poll = self._options.poll_interval
        return poll if due is None else min(poll, due + TIMER_SLACK)

    async def _wait_for_jobs(self, jobs: TaskGroup) -> None:
        """Give running jobs the grace period, then cancel whatever is left."""
        if not self._running:
            return
        grace = 0.0 if self._immediate else self._options.shutdown_grace_period
        with anyio.move_on_after(grace) as self._grace_scope:
            while self._running:
                self._wake = anyio.Event()
                await self._wake.wait()
        self._grace_scope = None
        if self._running:
            why = "at once, as asked" if self._immediate else f"after the {grace:.1f}s grace period"
            self._logger.warning(
                "Cancelling %d running job(s) (%s) %s",
                len(self._running),
                ", ".join(str(job_id) for job_id in self._running),
                why,
            )
            jobs.cancel_scope.cancel()

    # ----------------------------------------------------------------------------- jobs

    def _make_context(self, job: Job, payload: object) -> JobContext:
        return JobContext(
            job=job,
            payload=payload,
            worker_id=self._worker_id,
            extensions=self._options.extensions,
            driver=self._driver,
            schema=self._options.schema,
            hooks=self._hooks,
            abort=self.abort,
            logger=self._logger,
            token=self._token,
            use_local_time=self._options.use_local_time,
        )

    async def _run_job(self, job: Job) -> None:
        settled = False
        if self._presence is not None:
            self._presence.job_started()
        try:
            if self._hooks and self._hooks.watching(JobFetch):
                await self._hooks.notify(JobFetch(self._worker_id, job))
            attempt = await attempt_job(
                job,
                self._registry.get(job.task_identifier),
                make_context=self._make_context,
                hooks=self._hooks,
                abort=self.abort,
                worker_id=self._worker_id,
                limiter=self._threads,
                retry_undecodable=self._retry_undecodable,
            )
            if attempt.kind != "interrupted":
                settled = True
                await self._outcomes.record(job, attempt)
        finally:
            if not settled:
                self._interrupted.append(job)  # cancelled, or gave up on an abort request
            del self._running[job.id]

    async def _return_unstarted(self) -> None:
        """Give back claimed jobs that never started, at once and without delay."""
        jobs, self._unstarted = self._unstarted, []
        if not jobs:
            return
        for job in jobs:
            self._running.pop(job.id, None)
        with anyio.CancelScope(shield=True):
            try:
                await self._source.release(jobs, 0.0)
                self._logger.info(
                    "Returned %d claimed job(s) that never started: %s",
                    len(jobs),
                    ", ".join(str(job.id) for job in jobs),
                )
            except DatabaseError as error:
                self._logger.error(
                    "Could not return unstarted job(s) %s: %s",
                    ", ".join(str(job.id) for job in jobs),
                    error,
                )

    async def _release_interrupted(self) -> None:
        """Give back every job that did not finish, in one statement; never raises."""
        jobs, self._interrupted = self._interrupted, []
        if not jobs:
            return
        delay = self._options.interrupted_job_retry_delay
        try:
            released = await self._source.release(jobs, delay)
        except DatabaseError as error:
            self._logger.error(
                "Could not release interrupted job(s) %s: %s; they stay locked until the "
                "stale-lock reset frees them",
                ", ".join(str(job.id) for job in jobs),
                error,
            )
            return
        for job in jobs:
            outcome = released.get(job.id)
            if outcome is None:
                continue
            self._released += 1
            self._logger.info(
                "Released job %s (%s), interrupted by shutdown; it runs again from %s",
                job.id,
                job.task_identifier,
                outcome.run_at.isoformat(),
                extra=job_fields(job, self._worker_id),
            )
            if self._hooks:
                await self._hooks.notify(JobInterrupted(self._worker_id, job, outcome.run_at))
