"""A worker process for the signal tests: ``python signal_worker.py URL BACKEND DRIVER GRACE``.

Runs one task, ``sleep``, which sleeps for ``payload["seconds"]``, with the worker's own
SIGINT/SIGTERM handling, until a signal stops it. Exits 0 after a clean stop. Logs go to
stderr so that a failing test can show them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import anyio

from graphile_worker.task import task
from graphile_worker.worker import Worker, WorkerContext, WorkerOptions


@task("sleep")
async def sleep(payload: dict[str, Any], ctx: WorkerContext) -> None:
    # The test waits for this line: a locked row alone does not prove the handler started.
    print(f"started job {ctx.job.id}", flush=True)
    await anyio.sleep(payload["seconds"])


async def main(url: str, driver: str, grace: float) -> None:
    worker = Worker(
        WorkerOptions(
            tasks=[sleep],
            database_url=url,
            driver=driver,
            migrate=False,
            concurrency=2,
            poll_interval=0.1,
            shutdown_grace_period=grace,
            interrupted_job_retry_delay=60,
            install_signal_handlers=True,
        )
    )
    await worker.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    database_url, backend, driver_name, grace_period = sys.argv[1:5]
    anyio.run(main, database_url, driver_name, float(grace_period), backend=backend)
