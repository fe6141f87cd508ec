"""Plain ``def`` handlers: blocking code (a sync driver, requests, Pillow) in a worker.

A handler written as ``def`` instead of ``async def`` runs in a worker thread, so it may
block as long as it likes without stalling the event loop or the other jobs. This example
queues jobs from sync code with :class:`~graphile_worker.SyncWorkerUtils` (psycopg), then
runs them four at a time; each handler writes a row with its own blocking psycopg
connection::

    DATABASE_URL=postgresql://localhost/mydb python examples/sync_handlers.py
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import anyio
import psycopg

from graphile_worker import SyncWorkerUtils
from graphile_worker.task import task
from graphile_worker.worker import Worker, WorkerOptions

DATABASE_URL = os.environ["DATABASE_URL"]


@task("sync_example_report")
def build_report(payload: dict[str, Any]) -> None:
    # Blocking calls are fine here: this runs in a worker thread. (The ctx parameter is
    # optional; this handler does not need it.)
    time.sleep(0.05)  # stand-in for slow, blocking work
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute(
            "insert into sync_example_reports (customer, thread) values (%s, %s)",
            (payload["customer"], threading.current_thread().name),
        )


def queue_reports(customers: list[str]) -> None:
    # Sync code (a Django view, a script) queues jobs without any event loop.
    with SyncWorkerUtils.connect(DATABASE_URL) as utils:
        utils.migrate()
        utils.add_jobs([("sync_example_report", {"customer": name}) for name in customers])


def main() -> None:
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute(
            "create table if not exists sync_example_reports (customer text, thread text)"
        )
    queue_reports(["acme", "globex", "initech", "umbrella", "hooli", "stark"])

    # The worker itself is async; anyio.run starts an event loop for it.
    worker = Worker(WorkerOptions(tasks=[build_report], database_url=DATABASE_URL, concurrency=4))
    summary = anyio.run(worker.run_once)
    print(f"Built {summary.completed} reports in worker threads.")


if __name__ == "__main__":
    main()
