"""Progress for the demo: an observer counting outcomes and a plain line-based display.

The display prints a new line at most every half second, and only when something changed,
so it reads the same on a terminal, in a CI log or piped into a file: no cursor tricks, no
carriage returns. The counts come from the worker's own lifecycle events
(:class:`~graphile_worker.hooks.Observer`), which is how an application would build
metrics too.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

import anyio

from ..hooks import JobComplete, JobFail, JobPermanentlyFail, Observer, WorkerShutdown

__all__ = ["ProgressObserver", "final_line", "report_progress"]

_BAR_WIDTH = 24


class ProgressObserver(Observer):
    """Counts finished jobs and failed attempts per task; signals when all jobs are done.

    Jobs of the ``untracked`` tasks (the cron task, whose jobs the demo does not queue
    itself) are left out of every count. Create it inside the event loop: it owns anyio
    events.
    """

    def __init__(self, total: int, *, untracked: frozenset[str] = frozenset()) -> None:
        self.total = total
        self.untracked = untracked
        self.completed: Counter[str] = Counter()
        self.failed_attempts: Counter[str] = Counter()
        self.permanently_failed: Counter[str] = Counter()
        self.last_error: str | None = None
        self.retry_delays: list[float] = []
        """Seconds between each failure and the retry its back-off scheduled."""
        self.all_done = anyio.Event()
        self.worker_stopped = anyio.Event()
        self.shutdown_reason: str | None = None
        self.finished_at: float | None = None

    @property
    def done(self) -> int:
        """Jobs that finished for good, successfully or not."""
        return sum(self.completed.values()) + sum(self.permanently_failed.values())

    def _check_done(self) -> None:
        if self.done >= self.total and not self.all_done.is_set():
            self.finished_at = time.monotonic()
            self.all_done.set()

    def on_job_complete(self, event: JobComplete) -> None:
        if event.job.task_identifier in self.untracked:
            return
        self.completed[event.job.task_identifier] += 1
        self._check_done()

    def on_job_fail(self, event: JobFail) -> None:
        if event.job.task_identifier in self.untracked:
            return
        self.failed_attempts[event.job.task_identifier] += 1
        self.last_error = str(event.error)
        if event.next_run_at is not None:
            delay = event.next_run_at - datetime.now(timezone.utc)
            self.retry_delays.append(delay.total_seconds())

    def on_job_permanently_fail(self, event: JobPermanentlyFail) -> None:
        if event.job.task_identifier in self.untracked:
            return
        self.permanently_failed[event.job.task_identifier] += 1
        self._check_done()

    def on_worker_shutdown(self, event: WorkerShutdown) -> None:
        self.shutdown_reason = event.reason
        self.worker_stopped.set()


def _line(observer: ProgressObserver, elapsed: float) -> str:
    done, total = observer.done, observer.total
    filled = _BAR_WIDTH * done // total if total else _BAR_WIDTH
    bar = "#" * filled + "." * (_BAR_WIDTH - filled)
    failures = sum(observer.failed_attempts.values())
    rate = done / elapsed if elapsed > 0 else 0.0
    width = len(str(total))
    return (
        f"{elapsed:6.1f}s [{bar}] {done:>{width}}/{total} jobs done, "
        f"{failures} failed attempt{'s' if failures != 1 else ''} so far, {rate:6.0f} jobs/s"
    )


async def report_progress(
    observer: ProgressObserver,
    echo: Callable[[str], None],
    *,
    started: float,
    interval: float = 0.5,
) -> None:
    """Print a progress line whenever the counts change (at most every ``interval`` s).

    Runs until cancelled; the caller prints the final line itself.
    """
    shown: tuple[int, int] | None = None
    while True:
        await anyio.sleep(interval)
        current = (observer.done, sum(observer.failed_attempts.values()))
        if current != shown:
            shown = current
            echo(_line(observer, time.monotonic() - started))


def final_line(observer: ProgressObserver, started: float) -> str:
    """The last progress line, measured at the moment the last job finished."""
    end = observer.finished_at or time.monotonic()
    return _line(observer, end - started)
