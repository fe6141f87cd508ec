"""A worker on trio.

asyncpg and psycopg's async API only run on asyncio, so on trio the worker uses the
threaded psycopg driver (``driver="auto"`` picks it). Handlers can use trio's own API.
This example chains jobs: each countdown step records itself and queues the next step in
one transaction borrowed from the worker (``ctx.transaction()``), so a step is never
recorded without its successor, or the other way round::

    DATABASE_URL=postgresql://localhost/mydb python examples/trio_worker.py
"""

from __future__ import annotations

import os
from typing import Any

import trio

from graphile_worker import WorkerUtils, create_driver
from graphile_worker.task import task
from graphile_worker.worker import Worker, WorkerContext, WorkerOptions


@task("trio_example_countdown")
async def countdown(payload: dict[str, Any], ctx: WorkerContext) -> None:
    remaining = payload["remaining"]
    await trio.sleep(0.01)  # any trio API works inside a handler
    async with ctx.transaction() as transaction:
        await transaction.execute(
            "insert into trio_example_steps (remaining) values (:remaining)",
            {"remaining": remaining},
        )
        if remaining > 0:
            next_step = {"remaining": remaining - 1}
            await ctx.add_job("trio_example_countdown", next_step, executor=transaction)
    print("Liftoff!" if remaining == 0 else f"{remaining}...")


async def main() -> None:
    database_url = os.environ["DATABASE_URL"]
    async with create_driver(database_url, driver="psycopg-threaded") as driver:
        utils = WorkerUtils(driver)
        await utils.migrate()
        await driver.execute("create table if not exists trio_example_steps (remaining int)")
        await utils.add_job("trio_example_countdown", {"remaining": 3})

        # The worker shares the application's pool here; it never closes a driver it was
        # given. run_once() keeps going while jobs (including newly queued ones) are runnable.
        worker = Worker(WorkerOptions(tasks=[countdown], driver=driver))
        summary = await worker.run_once()
    print(f"Completed {summary.completed} jobs on trio.")


if __name__ == "__main__":
    trio.run(main)
