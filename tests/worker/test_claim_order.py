"""The claim's ordering promises, whatever order the rows sit in on disk.

A claim walks Node's ``jobs_main_index`` in ``(priority, run_at)`` order and stops after its
batch; rows with equal keys come in heap order, which a rewritten row changes. These tests
move rows on purpose and check that each named queue still runs its jobs in the order they
were added (ties included), one at a time, with and without our queue-order index, and that
a queue whose first job is held by somebody else waits rather than running its second.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from graphile_worker import LocalQueueOptions
from graphile_worker.migrations.catalog import QUEUE_ORDER_INDEX
from graphile_worker.spec import JobSpec
from graphile_worker.task import task
from graphile_worker.worker import Worker

from .conftest import job_row, job_rows, options

if TYPE_CHECKING:
    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio

QUEUES = ("alpha", "beta", "gamma")


def _move_to_heap_end(connection: psycopg.Connection[Any], job_ids: list[int]) -> None:
    """Rewrite rows without changing what they mean, so that they land after their siblings.

    Setting and clearing a key is an update of an indexed column: each update writes a new
    row version at the end of the heap (the table has no free space earlier).
    """
    for job_id in job_ids:
        connection.execute(
            "update graphile_worker._private_jobs set key = 'moving-' || id where id = %s",
            (job_id,),
        )
        connection.execute(
            "update graphile_worker._private_jobs set key = null where id = %s", (job_id,)
        )


def _heap_order(connection: psycopg.Connection[Any], job_ids: list[int]) -> list[int]:
    rows = connection.execute(
        "select id from graphile_worker._private_jobs where id = any(%s) order by ctid",
        (job_ids,),
    ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture(params=["with-index", "without-index"])
def queue_order_index(
    request: pytest.FixtureRequest, sync_connection: psycopg.Connection[Any]
) -> str:
    """Run each test with our queue-order index and with it dropped (the opt-out)."""
    if request.param == "without-index":
        sync_connection.execute(f"drop index graphile_worker.{QUEUE_ORDER_INDEX}")
    return str(request.param)


@pytest.mark.parametrize("local_queue_size", [None, 50], ids=["claim-per-slot", "local-queue"])
async def test_queues_run_tied_jobs_in_id_order_after_their_rows_moved(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    queue_order_index: str,
    local_queue_size: int | None,
) -> None:
    started: list[tuple[str, int]] = []
    running: dict[str, int] = {}
    overlaps: list[str] = []

    @task("in_line")
    async def in_line(payload: dict[str, Any]) -> None:
        queue = payload["queue"]
        running[queue] = running.get(queue, 0) + 1
        if running[queue] > 1:
            overlaps.append(queue)
        started.append((queue, payload["n"]))
        running[queue] -= 1

    # One add_jobs call: every job shares priority and run_at (a single tie group), with
    # jobs outside any queue interleaved.
    specs: list[tuple[str, dict[str, Any], JobSpec]] = []
    for n in range(12):
        specs.extend(
            ("in_line", {"queue": queue, "n": n}, JobSpec(queue_name=queue)) for queue in QUEUES
        )
        specs.append(("in_line", {"queue": f"free-{n}", "n": n}, JobSpec()))
    added = await utils.add_jobs(specs)
    by_queue = {queue: [job.id for job in added if job.queue_name == queue] for queue in QUEUES}
    # The first three jobs of every queue move behind the rest of the tie group.
    moved = [job_id for ids in by_queue.values() for job_id in ids[:3]]
    _move_to_heap_end(sync_connection, moved)
    assert _heap_order(sync_connection, by_queue["alpha"])[-3:] == by_queue["alpha"][:3]

    local_queue = None if local_queue_size is None else LocalQueueOptions(size=local_queue_size)
    worker = Worker(options(driver, [in_line], concurrency=4, local_queue=local_queue))
    await worker.run_once()

    assert overlaps == []
    for queue in QUEUES:
        assert [n for q, n in started if q == queue] == list(range(12)), queue
    assert len(started) == len(specs)
    assert job_rows(sync_connection) == []


async def test_a_queue_head_runs_before_later_jobs_of_lower_priority_number_only_by_key(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    queue_order_index: str,
) -> None:
    # Inside one queue the order is (priority, run_at, id): a later job with a lower
    # priority number goes first, an earlier run_at goes before a later one.
    order: list[str] = []

    @task("ranked")
    async def ranked(payload: dict[str, str]) -> None:
        order.append(payload["name"])

    past = datetime.now(timezone.utc) - timedelta(minutes=10)
    spec = JobSpec(queue_name="ranked")
    await utils.add_job("ranked", {"name": "p0-now"}, spec=spec)
    await utils.add_job(
        "ranked", {"name": "p0-past"}, spec=JobSpec(queue_name="ranked", run_at=past)
    )
    await utils.add_job("ranked", {"name": "p-1"}, spec=JobSpec(queue_name="ranked", priority=-1))
    await utils.add_job(
        "ranked", {"name": "p3-past"}, spec=JobSpec(queue_name="ranked", priority=3, run_at=past)
    )
    await utils.add_job("ranked", {"name": "p0-now-2"}, spec=spec)

    await Worker(options(driver, [ranked], concurrency=3)).run_once()
    assert order == ["p-1", "p0-past", "p0-now", "p0-now-2", "p3-past"]


async def test_a_queue_whose_first_job_is_held_elsewhere_waits(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    queue_order_index: str,
) -> None:
    # Another transaction holds the queue's first job (as an add_job replacing it would):
    # the claim must not run the second job in its place, and must not wait either.
    ran: list[str] = []

    @task("held")
    async def held(payload: dict[str, str]) -> None:
        ran.append(payload["name"])

    first = await utils.add_job("held", {"name": "first"}, spec=JobSpec(queue_name="serial"))
    await utils.add_job("held", {"name": "second"}, spec=JobSpec(queue_name="serial"))
    await utils.add_job("held", {"name": "free"})
    worker = Worker(options(driver, [held], concurrency=2))

    with psycopg.connect(database_url) as holder:
        holder.execute(
            "select id from graphile_worker._private_jobs where id = %s for update", (first.id,)
        )
        await worker.run_once()
        assert ran == ["free"]
        holder.rollback()

    await worker.run_once()
    assert ran == ["free", "first", "second"]
    assert job_row(sync_connection, first.id) is None


async def test_a_queue_skips_jobs_it_may_not_run_and_keeps_its_order(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    queue_order_index: str,
) -> None:
    # The queue's first job carries a forbidden flag and its second is for a task this worker
    # does not know: both stay untouched, and the rest of the queue runs in order.
    ran: list[int] = []

    @task("mine")
    async def mine(payload: dict[str, int]) -> None:
        ran.append(payload["n"])

    flagged = await utils.add_job("mine", {"n": 0}, spec=JobSpec(queue_name="q", flags=["paused"]))
    stranger = await utils.add_job("not_mine", {"n": 1}, spec=JobSpec(queue_name="q"))
    for n in range(2, 5):
        await utils.add_job("mine", {"n": n}, spec=JobSpec(queue_name="q"))

    await Worker(options(driver, [mine], forbidden_flags=["paused"])).run_once()

    assert ran == [2, 3, 4]
    for job in (flagged, stranger):
        row = job_row(sync_connection, job.id)
        assert row is not None and (row["attempts"], row["locked_by"]) == (0, None)
