"""A job added by one side wakes an idle worker of the other side at once.

Both libraries announce new jobs on the ``jobs:insert`` channel (the SQL functions do it)
and both workers listen on it. Here the idle worker polls only once a minute, so a job
that runs within seconds proves the notification crossed over. Our worker must also start
a delayed job on time (not before its ``run_at``, and long before the next poll).
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import psycopg
import pytest

from graphile_worker.utils import WorkerUtils

from .node import node_utils, node_worker
from .python_tasks import python_worker
from .tables import eventually, results

pytestmark = [pytest.mark.anyio, pytest.mark.node]

POLL_SECONDS = 60
"""Far longer than any wait below: only a notification (or a timer) can start the job."""
DELAY = timedelta(seconds=1.5)


def recorded_at(db: psycopg.Connection[Any], job_id: int) -> datetime | None:
    row = db.execute(
        "select recorded_at from public.interop_results where job_id = %s", (job_id,)
    ).fetchone()
    return None if row is None else row[0]


async def test_our_idle_worker_wakes_for_node_jobs(
    interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
) -> None:
    worker = python_worker(interop_url, schema, driver_name, poll_interval=POLL_SECONDS)
    async with worker:
        run_at = datetime.now(timezone.utc) + DELAY
        now_job, later_job = await anyio.to_thread.run_sync(
            functools.partial(
                node_utils,
                interop_url,
                schema,
                [
                    {"op": "addJob", "identifier": "record", "payload": {"when": "now"}},
                    {
                        "op": "addJob",
                        "identifier": "record",
                        "payload": {"when": "later"},
                        "spec": {"runAt": run_at.isoformat()},
                    },
                ],
            )
        )
        await eventually(lambda: len(results(db)) == 2, within=15, what="both Node jobs to run")
    assert [row.side for row in results(db)] == ["python", "python"]
    later_ran = recorded_at(db, int(later_job["id"]))
    assert later_ran is not None and later_ran >= run_at - timedelta(milliseconds=1)
    assert int(now_job["id"]) in {row.job_id for row in results(db)}


async def test_an_idle_node_worker_wakes_for_our_jobs(
    interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
) -> None:
    """Node starts jobs we add at once. (A delayed job waits for Node's next poll: Node
    keeps no timer for future ``run_at`` values, so that part is ours alone.)"""
    async with (
        node_worker(interop_url, schema, poll_interval=POLL_SECONDS * 1000),
        await WorkerUtils.connect(interop_url, driver=driver_name, schema=schema) as utils,
    ):
        single = await utils.add_job("record", {"via": "add_job"})
        batch = await utils.add_jobs([("record", {"via": "add_jobs", "i": i}) for i in range(3)])
        await eventually(lambda: len(results(db)) == 4, within=15, what="Node to run our jobs")
    assert {row.side for row in results(db)} == {"node"}
    assert sorted(row.job_id for row in results(db)) == sorted(
        [single.id, *(job.id for job in batch)]
    )
