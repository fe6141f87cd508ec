"""Quickstart: define tasks, queue jobs, run them.

Run it against any PostgreSQL database (the schema is installed on first use)::

    DATABASE_URL=postgresql://localhost/mydb python examples/quickstart.py

It queues two jobs, runs everything that is runnable with ``run_once`` and exits. A real
deployment runs the worker until it is stopped instead: ``await worker.run()`` in your own
program, or ``graphile-worker run --tasks examples/quickstart.py`` on the command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio

from graphile_worker import WorkerUtils
from graphile_worker.task import task
from graphile_worker.worker import Worker, WorkerContext, WorkerOptions


# A task is an async function taking the job's payload (and optionally the context).
@task("quickstart_hello")
async def hello(payload: dict[str, Any], ctx: WorkerContext) -> None:
    ctx.logger.info("saying hello")
    print(f"Hello, {payload['name']}!")


# Or a handler class: the payload *is* an instance, so producers and the handler share a
# type, and add_job(SendWelcome(...)) needs no task name.
@dataclass
class SendWelcome:
    IDENTIFIER: ClassVar[str] = "quickstart_send_welcome"
    email: str

    async def run(self, ctx: WorkerContext) -> None:
        print(f"Sending a welcome email to {self.email} (attempt {ctx.job.attempts})")


async def main() -> None:
    database_url = os.environ["DATABASE_URL"]

    # Producers (web requests, scripts, cron...) queue jobs with WorkerUtils.
    async with await WorkerUtils.connect(database_url) as utils:
        await utils.migrate()  # the worker would do it too; adding jobs needs the schema
        await utils.add_job("quickstart_hello", {"name": "world"})
        await utils.add_job(SendWelcome(email="ada@example.com"))

    # A worker runs them. run_once() returns when nothing runnable is left.
    worker = Worker(WorkerOptions(tasks=[hello, SendWelcome], database_url=database_url))
    summary = await worker.run_once()
    print(f"Completed {summary.completed} jobs, {summary.failed} failed.")


if __name__ == "__main__":
    anyio.run(main)
