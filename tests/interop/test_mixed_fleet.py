"""A Node worker and our worker drain one queue of 20,000 jobs together.

Half of the jobs are added by our ``add_jobs`` and half by Node's ``addJobs`` (one
statement each), half of them spread over a few serial queues. Every job writes one row to
``interop_fleet`` with the database clock at its start and end. Then:

* every job ran exactly once (one row per job number, none twice, none missing);
* both workers did a share of the work, serial queues included, and serial queues changed
  hands between them;
* no two jobs of one serial queue overlapped in time, whichever worker ran them;
* nothing is left in the queue, and no job or queue is left locked.

The figures (duration, jobs per second, each worker's share) are printed; run with ``-s``
to see them.

At about half a minute per drain, the fleet runs once per runtime and driver rather than
also once per schema name: the pairs alternate between the default schema and the custom
one (see the ``schema`` fixture below), so both names and every pair are covered.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import anyio
import psycopg
import pytest

from graphile_worker.spec import JobSpec
from graphile_worker.utils import SyncWorkerUtils

from .conftest import CUSTOM_SCHEMA, DEFAULT_SCHEMA
from .node import node_utils, node_worker
from .python_tasks import python_worker
from .tables import eventually, jobs, queues

pytestmark = [pytest.mark.anyio, pytest.mark.node]

JOB_COUNT = 20_000
SERIAL_QUEUES = 5
CONCURRENCY = 10
DRAIN_TIMEOUT = 180.0
"""Generous on purpose: the test is about correctness; the figures are printed."""


_CUSTOM_SCHEMA_PAIRS = {("asyncio", "psycopg"), ("trio", "psycopg-threaded")}


@pytest.fixture
def schema(anyio_backend: str, driver_name: str) -> str:
    """Overrides the suite's two-way ``schema`` parametrisation: one schema per pair."""
    return CUSTOM_SCHEMA if (anyio_backend, driver_name) in _CUSTOM_SCHEMA_PAIRS else DEFAULT_SCHEMA


def fleet_payload(n: int) -> dict[str, Any]:
    """Odd job numbers go to the serial queues, even ones to no queue."""
    if n % 2:
        return {"n": n, "q": f"serial-{n % (2 * SERIAL_QUEUES) // 2}"}
    return {"n": n}


def python_half(db: psycopg.Connection[Any], schema: str) -> None:
    entries: list[tuple[str, object, JobSpec | None]] = []
    for n in range(JOB_COUNT // 2):
        payload = fleet_payload(n)
        entries.append(("fleet", payload, JobSpec(queue_name=payload.get("q"))))
    added = SyncWorkerUtils(db, schema=schema).add_jobs(entries)
    assert len(added) == len(entries)


def node_half(url: str, schema: str) -> None:
    specs = []
    for n in range(JOB_COUNT // 2, JOB_COUNT):
        payload = fleet_payload(n)
        spec: dict[str, Any] = {"identifier": "fleet", "payload": payload}
        if "q" in payload:
            spec["queueName"] = payload["q"]
        specs.append(spec)
    (added,) = node_utils(url, schema, [{"op": "addJobs", "specs": specs}], timeout=120)
    assert len(added) == len(specs)


def scalar(db: psycopg.Connection[Any], sql: str) -> Any:
    row = db.execute(sql).fetchone()
    assert row is not None
    return row[0]


def done(db: psycopg.Connection[Any]) -> bool:
    return bool(scalar(db, "select count(*) from public.interop_fleet") >= JOB_COUNT)


async def test_mixed_fleet(
    interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
) -> None:
    worker = python_worker(
        interop_url, schema, driver_name, concurrency=CONCURRENCY, max_pool_size=CONCURRENCY + 4
    )
    async with node_worker(
        interop_url, schema, concurrency=CONCURRENCY, max_pool_size=CONCURRENCY + 4
    ) as node:
        async with worker:
            started = time.monotonic()
            async with anyio.create_task_group() as group:
                group.start_soon(anyio.to_thread.run_sync, python_half, db, schema)
                group.start_soon(
                    anyio.to_thread.run_sync, functools.partial(node_half, interop_url, schema)
                )
            added = time.monotonic()
            await eventually(lambda: done(db), within=DRAIN_TIMEOUT, what="the fleet to drain")
            drained = time.monotonic()
        node_logs = node.logs()
    assert node_logs.messages("warning", "error") == []

    # Every job ran exactly once.
    assert scalar(db, "select count(*) from public.interop_fleet") == JOB_COUNT
    assert scalar(db, "select count(distinct n) from public.interop_fleet") == JOB_COUNT
    assert scalar(db, "select count(distinct job_id) from public.interop_fleet") == JOB_COUNT
    assert scalar(db, "select min(n) from public.interop_fleet") == 0
    assert scalar(db, "select max(n) from public.interop_fleet") == JOB_COUNT - 1

    # Both workers took part, in the serial queues too.
    shares = dict(
        db.execute(
            "select side || coalesce(':' || left(queue_name, 6), ''), count(*) "
            "from public.interop_fleet group by 1"
        ).fetchall()
    )
    assert shares.get("node", 0) > 0 and shares.get("python", 0) > 0, shares
    assert shares.get("node:serial", 0) > 0 and shares.get("python:serial", 0) > 0, shares

    # Serial queues: each job started after the previous one (by start time) ended.
    overlaps = db.execute(
        """
        select queue_name, n, started_at, previous_end
        from (
          select queue_name, n, started_at,
                 lag(finished_at) over (partition by queue_name order by started_at, n)
                   as previous_end
          from public.interop_fleet
          where queue_name is not null
        ) as ordered
        where started_at < previous_end
        limit 5
        """
    ).fetchall()
    assert overlaps == []
    handoffs = scalar(
        db,
        """
        select count(*) from (
          select side, lag(side) over (partition by queue_name order by started_at) as previous
          from public.interop_fleet where queue_name is not null
        ) as ordered
        where side <> previous
        """,
    )
    assert handoffs > 0
    assert scalar(db, "select count(distinct queue_name) from public.interop_fleet") == (
        SERIAL_QUEUES
    )

    # Nothing left behind, nothing locked.
    assert jobs(db, schema) == []
    assert [queue for queue in queues(db, schema) if queue["locked_at"] or queue["locked_by"]] == []

    add_seconds = added - started
    drain_seconds = drained - started
    print(
        f"\nmixed fleet [{schema}, {driver_name}]: {JOB_COUNT} jobs added in "
        f"{add_seconds:.1f}s, all run after {drain_seconds:.1f}s "
        f"({JOB_COUNT / drain_seconds:.0f} jobs/s); shares {shares}; "
        f"serial-queue handoffs between the workers: {handoffs}"
    )
