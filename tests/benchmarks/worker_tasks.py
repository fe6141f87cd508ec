"""The no-op task the benchmarked worker processes run (``graphile-worker run --tasks <this>``).

It records as little as possible on the hot path: a counter and the time of the first and
last start (``time.time()``, the wall clock, which the benchmark process shares), plus in
latency mode the start time of each job by id. The records reach the benchmark through a
JSON file per process in ``$GRAPHILE_WORKER_BENCH_RECORDS``, written by a daemon thread
every 50 ms and once more at exit. The thread matters: a process started by
``--processes`` may end without running ``atexit`` handlers (multiprocessing children
leave through ``os._exit``), so the benchmark waits a few flush intervals after the queue
is empty before it stops the worker, and never depends on the exit hook alone.

Without the environment variable (a stray import) nothing is recorded and no thread starts.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from pathlib import Path

from graphile_worker import WorkerContext, task

RECORDS_ENV = "GRAPHILE_WORKER_BENCH_RECORDS"
"""Directory that receives ``<pid>.json`` from every worker process."""
LATENCY_ENV = "GRAPHILE_WORKER_BENCH_LATENCY"
"""Set to ``1`` to record each job's start time by id (the latency figure)."""
FLUSH_INTERVAL = 0.05
"""Seconds between two writes of the records file."""

_records_dir = os.environ.get(RECORDS_ENV)
_per_job = os.environ.get(LATENCY_ENV) == "1"
_count = 0
_first_start: float | None = None
_last_start: float | None = None
_starts: dict[str, float] = {}
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
        _starts[str(ctx.job.id)] = now


def _write() -> None:
    """Replace this process's records file atomically (the reader never sees half a file)."""
    if _records_dir is None:
        return
    with _write_lock:
        record = {
            "pid": os.getpid(),
            "count": _count,
            "first_start": _first_start,
            "last_start": _last_start,
            "starts": dict(_starts) if _per_job else {},
        }
        target = Path(_records_dir) / f"{os.getpid()}.json"
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
