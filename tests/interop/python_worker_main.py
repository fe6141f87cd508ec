"""Run our worker with the suite's tasks in a process of its own, so a test can kill it.

Usage (from the repository root): ``python -m tests.interop.python_worker_main '<json>'``
with ``connection``, ``schema``, ``concurrency`` and ``backend`` (``asyncio`` or ``trio``).
Prints ``{"event": "ready", "workerId": ...}`` once the worker looks for jobs, and
``{"event": "stopped"}`` after a graceful stop (SIGTERM or SIGINT, handled by the worker,
or its stdin closing).
"""

from __future__ import annotations

import json
import sys
import threading

import anyio

from graphile_worker.hooks import Observer, WorkerStart
from graphile_worker.worker import Worker, WorkerOptions

from .python_tasks import TASKS


def say(event: dict[str, object]) -> None:
    print(json.dumps(event), flush=True)


class AnnounceReady(Observer):
    """Prints the ready line the test waits for."""

    def on_worker_start(self, event: WorkerStart) -> None:
        say({"event": "ready", "workerId": event.worker_id})


def stop_when_stdin_closes(worker: Worker) -> None:
    """Like the Node harness: a test that dies closes our stdin, and we stop."""

    def watch() -> None:
        sys.stdin.read()
        worker.stop()

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    options = json.loads(sys.argv[1])
    worker = Worker(
        WorkerOptions(
            tasks=TASKS,
            database_url=options["connection"],
            schema=options.get("schema", "graphile_worker"),
            concurrency=options.get("concurrency", 1),
            hooks=[AnnounceReady()],
        )
    )
    stop_when_stdin_closes(worker)
    anyio.run(worker.run, backend=options.get("backend", "asyncio"))
    say({"event": "stopped"})


if __name__ == "__main__":
    main()
