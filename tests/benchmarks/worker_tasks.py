"""The no-op task the benchmarked worker processes run (``graphile-worker run --tasks <this>``).

It records as little as possible on the hot path: a counter and the time of the first and
last start (``time.time()``, the wall clock, which the benchmark process shares), plus in
latency mode the start time of each job by id, and with ``$GRAPHILE_WORKER_BENCH_MARK_EVERY``
the time of every Nth start (the depth figure's slices). The records reach the benchmark
through a JSON file per process in ``$GRAPHILE_WORKER_BENCH_RECORDS``, written by a daemon
thread every 50 ms and once more at exit; the start times of single jobs go to a second
file, ``<pid>.starts``, which each write only appends to, so that a steady-state run of
hundreds of thousands of jobs costs the thread no more per write than a short one. The
thread matters: a process started by ``--processes`` may end without running ``atexit``
handlers (multiprocessing children leave through ``os._exit``), so the benchmark waits a
few flush intervals after the queue is empty before it stops the worker, and never depends
on the exit hook alone.

With ``$GRAPHILE_WORKER_BENCH_SLEEP_MS`` the task sleeps that long (the serial-mix figure's
jobs); it is an environment setting rather than a second task so that every other figure's
worker knows exactly one task, as before.

Without the environment variable (a stray import) nothing is recorded and no thread starts.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from pathlib import Path

import anyio

from graphile_worker import WorkerContext, task

RECORDS_ENV = "GRAPHILE_WORKER_BENCH_RECORDS"
"""Directory that receives ``<pid>.json`` from every worker process."""
LATENCY_ENV = "GRAPHILE_WORKER_BENCH_LATENCY"
"""Set to ``1`` to record each job's start time by id (the latency figures)."""
MARK_ENV = "GRAPHILE_WORKER_BENCH_MARK_EVERY"
"""Record the time of every Nth start (``0`` or unset: none)."""
SLEEP_ENV = "GRAPHILE_WORKER_BENCH_SLEEP_MS"
"""Milliseconds each job sleeps (``0`` or unset: none, a no-op job)."""
FLUSH_INTERVAL = 0.05
"""Seconds between two writes of the records file."""

_records_dir = os.environ.get(RECORDS_ENV)
_per_job = os.environ.get(LATENCY_ENV) == "1"
_mark_every = int(os.environ.get(MARK_ENV) or 0)
_sleep_seconds = float(os.environ.get(SLEEP_ENV) or 0) / 1000
_count = 0
_first_start: float | None = None
_last_start: float | None = None
_marks: list[tuple[int, float]] = []
_starts: list[tuple[int, float]] = []
"""(job id, start time) in the order the jobs started; only ever appended to."""
_starts_written = 0
_write_lock = threading.Lock()


@task("bench_noop")
async def bench_noop(payload: object, ctx: WorkerContext) -> None:
    """Do nothing but count, so that the figures measure the queue, not the job."""
    global _count, _first_start, _last_start
    now = time.time()
    if _first_start is None:
        _first_start = now
    _last_start = now
    _count += 1
    if _per_job:
        _starts.append((ctx.job.id, now))
    if _mark_every and _count % _mark_every == 0:
        _marks.append((_count, now))
    if _sleep_seconds:
        await anyio.sleep(_sleep_seconds)


def _write() -> None:
    """Append the start times not yet written, then replace the records file atomically.

    The reader never sees half a records file; the starts file may lag the count by the
    jobs that started during a write, which the next write (at the latest the one at exit)
    adds.
    """
    global _starts_written
    if _records_dir is None:
        return
    with _write_lock:
        pid = os.getpid()
        new_starts = _starts[_starts_written : len(_starts)]
        if new_starts:
            lines = "".join(f"{job_id} {start!r}\n" for job_id, start in new_starts)
            with open(Path(_records_dir) / f"{pid}.starts", "a", encoding="ascii") as log:
                log.write(lines)
            _starts_written += len(new_starts)
        record = {
            "pid": pid,
            "count": _count,
            "first_start": _first_start,
            "last_start": _last_start,
            "marks": list(_marks),
        }
        target = Path(_records_dir) / f"{pid}.json"
        scratch = target.with_suffix(".tmp")
        scratch.write_text(json.dumps(record))
        os.replace(scratch, target)


def _flush_forever() -> None:
    written = -1
    while True:
        time.sleep(FLUSH_INTERVAL)
        if _count != written:
            written = _count
            _write()


if _records_dir is not None:
    _write()  # an empty record at once: the process got as far as loading its tasks
    threading.Thread(target=_flush_forever, name="bench-records", daemon=True).start()
    atexit.register(_write)
