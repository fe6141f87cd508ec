"""What happens to jobs: success, failure, back-off, ordering, flags and unknown tasks.

Each test queues jobs, lets ``run_once()`` process everything runnable, and reads the
table back over a separate connection.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from graphile_worker import LocalQueueOptions
from graphile_worker.spec import JobSpec
from graphile_worker.task import task
from graphile_worker.worker import RunOnceSummary, Worker, WorkerContext

from .conftest import job_row, job_rows, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio


@task("ok")
async def ok(payload: Any) -> None:
    pass


@task("boom")
async def boom(payload: Any) -> None:
    raise ValueError("kaboom")


@task("empty_error")
async def empty_error(payload: Any) -> None:
    raise RuntimeError


async def test_success_deletes_the_job(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    seen: list[tuple[object, int]] = []

    @task("record")
    async def record(payload: dict[str, Any], ctx: WorkerContext) -> None:
        seen.append((payload, ctx.job.attempts))

    job = await utils.add_job("record", {"n": 1})
    summary = await Worker(options(driver, [record])).run_once()

    assert seen == [({"n": 1}, 1)]
    assert summary == RunOnceSummary(completed=1)
    assert job_row(sync_connection, job.id) is None


async def test_failure_records_the_error_and_backs_off_like_node(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    first = await utils.add_job("boom", {})
    second = await utils.add_job("empty_error", {})
    before = datetime.now(timezone.utc)
    summary = await Worker(options(driver, [boom, empty_error])).run_once()
    after = datetime.now(timezone.utc)

    assert summary == RunOnceSummary(failed=2)
    row = job_row(sync_connection, first.id)
    assert row is not None
    # Node records err.message alone; the traceback goes to the log.
    assert row["last_error"] == "kaboom"
    assert row["attempts"] == 1
    assert row["locked_by"] is None and row["locked_at"] is None
    # run_at = greatest(now(), run_at) + exp(least(attempts, 10)) seconds
    delay = timedelta(seconds=math.exp(1))
    assert before + delay - timedelta(seconds=1) <= row["run_at"] <= after + delay
    empty = job_row(sync_connection, second.id)
    assert empty is not None and empty["last_error"] == "RuntimeError"


async def test_back_off_is_capped_at_exp_10_and_counts_from_a_future_run_at(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
) -> None:
    job = await utils.add_job("boom", {})
    # 14 earlier attempts, and a run_at slightly in the past: the back-off uses least(15, 10).
    sync_connection.execute(
        "update graphile_worker._private_jobs set attempts = 14, run_at = now() - interval '1s'"
    )
    await Worker(options(driver, [boom])).run_once()
    row = job_row(sync_connection, job.id)
    assert row is not None and row["attempts"] == 15
    (now,) = sync_connection.execute("select now()").fetchone()  # type: ignore[misc]
    expected = now + timedelta(seconds=math.exp(10))
    assert abs((row["run_at"] - expected).total_seconds()) < 5


async def test_a_job_is_kept_after_its_last_attempt(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    job = await utils.add_job("boom", {}, spec=JobSpec(max_attempts=1))
    summary = await Worker(options(driver, [boom])).run_once()
    assert summary == RunOnceSummary(failed=1, permanently_failed=1)
    row = job_row(sync_connection, job.id)
    assert row is not None
    assert (row["attempts"], row["max_attempts"], row["is_available"]) == (1, 1, False)
    assert row["last_error"] == "kaboom"
    # It is never claimed again.
    assert await Worker(options(driver, [boom])).run_once() == RunOnceSummary()


async def test_success_after_a_force_unlock_still_deletes_the_job_as_node_does(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    """The handler did its work, so the job must not run again because its lock was taken."""

    @task("unlocked_midway")
    async def unlocked_midway(payload: Any, ctx: WorkerContext) -> None:
        await utils.force_unlock_workers([ctx.worker_id])

    job = await utils.add_job("unlocked_midway", {}, spec=JobSpec(queue_name="q"))
    summary = await Worker(options(driver, [unlocked_midway])).run_once()
    assert summary == RunOnceSummary(completed=1)
    assert job_row(sync_connection, job.id) is None


async def test_failure_after_a_force_unlock_leaves_the_job_to_its_new_holder(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @task("stolen")
    async def stolen(payload: Any, ctx: WorkerContext) -> None:
        await utils.force_unlock_workers([ctx.worker_id])
        sync_connection.execute(
            "update graphile_worker._private_jobs set locked_by = 'other', locked_at = now()"
        )
        raise ValueError("too late")

    job = await utils.add_job("stolen", {})
    await Worker(options(driver, [stolen])).run_once()
    row = job_row(sync_connection, job.id)
    assert row is not None
    assert (row["locked_by"], row["last_error"]) == ("other", None)


async def test_payloads_reach_the_handler_exactly_as_added(
    driver: DatabaseDriver, utils: WorkerUtils
) -> None:
    # Values a fast JSON decoder alone would change (integers beyond 64 bits), and long
    # digit runs inside strings, which take the exact decoder's path.
    seen: list[object] = []

    @task("exact")
    async def exact(payload: object) -> None:
        seen.append(payload)

    payloads: list[object] = [
        {"id": 123456789012345678901234567890, "neg": -9223372036854775809},
        {"text": "caf\u00e9 \U0001f600", "digits": "12345678901234567890", "x": [0.1, -0.0]},
        [1, 2.5, None, True, {"nested": {"deep": [18446744073709551616]}}],
    ]
    for payload in payloads:
        await utils.add_job("exact", payload)
    await utils.add_jobs([("exact", {"huge": 1e308}), ("exact", "plain")])

    await Worker(options(driver, [exact])).run_once()
    expected = [*payloads, {"huge": 1e308}, "plain"]
    assert sorted(map(repr, seen)) == sorted(map(repr, expected))


async def test_priority_then_run_at_then_id(driver: DatabaseDriver, utils: WorkerUtils) -> None:
    order: list[str] = []

    @task("ordered")
    async def ordered(payload: dict[str, str]) -> None:
        order.append(payload["name"])

    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    await utils.add_job("ordered", {"name": "p0-now-a"})
    await utils.add_job("ordered", {"name": "p0-now-b"})
    await utils.add_job("ordered", {"name": "p0-past"}, spec=JobSpec(run_at=past))
    await utils.add_job("ordered", {"name": "p5"}, spec=JobSpec(priority=5, run_at=past))
    await utils.add_job("ordered", {"name": "p-1"}, spec=JobSpec(priority=-1))
    same_time = datetime.now(timezone.utc) - timedelta(minutes=1)
    await utils.add_job("ordered", {"name": "tie-1"}, spec=JobSpec(priority=1, run_at=same_time))
    await utils.add_job("ordered", {"name": "tie-2"}, spec=JobSpec(priority=1, run_at=same_time))

    await Worker(options(driver, [ordered])).run_once()
    assert order == ["p-1", "p0-past", "p0-now-a", "p0-now-b", "tie-1", "tie-2", "p5"]


@pytest.mark.parametrize("local_queue_size", [None, 2], ids=["claim-per-slot", "local-queue"])
async def test_a_named_queue_runs_tied_jobs_in_id_order_whatever_their_storage_order(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    local_queue_size: int | None,
) -> None:
    # Jobs added together share priority and run_at. Rewriting the first one's row (a key
    # set and cleared again, as an update of a job may do) moves it behind the others in
    # storage, which is the order the claim's index scan meets tied rows in; the queue must
    # still run them in id order.
    order: list[int] = []

    @task("in_line")
    async def in_line(payload: dict[str, int]) -> None:
        order.append(payload["n"])

    added = await utils.add_jobs(
        [("in_line", {"n": n}, JobSpec(queue_name="line")) for n in range(4)]
        + [("in_line", {"n": n}) for n in range(100, 104)]
    )
    first = added[0].id
    sync_connection.execute(
        "update graphile_worker._private_jobs set key = 'moved' where id = %s", (first,)
    )
    sync_connection.execute(
        "update graphile_worker._private_jobs set key = null where id = %s", (first,)
    )
    local_queue = None if local_queue_size is None else LocalQueueOptions(size=local_queue_size)
    await Worker(options(driver, [in_line], concurrency=1, local_queue=local_queue)).run_once()

    assert [n for n in order if n < 100] == [0, 1, 2, 3]
    assert sorted(order) == [0, 1, 2, 3, 100, 101, 102, 103]


async def test_jobs_for_unknown_tasks_are_left_untouched(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    stranger = await utils.add_job("somebody_elses", {"x": 1})
    mine = await utils.add_job("ok", {})
    summary = await Worker(options(driver, [ok])).run_once()
    assert summary == RunOnceSummary(completed=1)
    assert job_row(sync_connection, mine.id) is None
    row = job_row(sync_connection, stranger.id)
    assert row is not None
    assert (row["attempts"], row["locked_by"], row["last_error"]) == (0, None, None)
    assert row["revision"] == stranger.revision and row["run_at"] == stranger.run_at


async def test_future_jobs_are_not_run(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    later = await utils.add_job(
        "ok", {}, spec=JobSpec(run_at=datetime.now(timezone.utc) + timedelta(hours=1))
    )
    assert await Worker(options(driver, [ok])).run_once() == RunOnceSummary()
    row = job_row(sync_connection, later.id)
    assert row is not None and row["attempts"] == 0


class TestForbiddenFlags:
    async def _queue(self, utils: WorkerUtils) -> dict[str, int]:
        plain = await utils.add_job("ok", {})
        red = await utils.add_job("ok", {}, spec=JobSpec(flags=["red"]))
        blue = await utils.add_job("ok", {}, spec=JobSpec(flags=["blue", "green"]))
        return {"plain": plain.id, "red": red.id, "blue": blue.id}

    def _left(self, connection: psycopg.Connection[Any], ids: dict[str, int]) -> set[str]:
        remaining = {row["id"] for row in job_rows(connection)}
        return {name for name, job_id in ids.items() if job_id in remaining}

    async def test_static_flags(
        self, driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
    ) -> None:
        ids = await self._queue(utils)
        worker = Worker(options(driver, [ok], forbidden_flags=["red", "green"]))
        assert await worker.run_once() == RunOnceSummary(completed=1)
        assert self._left(sync_connection, ids) == {"red", "blue"}

    async def test_callable_flags_are_asked_before_each_claim(
        self, driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
    ) -> None:
        ids = await self._queue(utils)
        calls: list[int] = []

        async def forbidden() -> list[str]:
            calls.append(1)
            return ["blue"]

        assert await Worker(options(driver, [ok], forbidden_flags=forbidden)).run_once() == (
            RunOnceSummary(completed=2)
        )
        assert calls and self._left(sync_connection, ids) == {"blue"}

        def nothing_forbidden() -> frozenset[str]:
            return frozenset()

        await Worker(options(driver, [ok], forbidden_flags=nothing_forbidden)).run_once()
        assert self._left(sync_connection, ids) == set()


async def test_sync_handlers_run_in_a_worker_thread(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    threads: list[int] = []

    @task("blocking")
    def blocking(payload: dict[str, Any], ctx: WorkerContext) -> None:
        threads.append(threading.get_ident())
        # A sync handler reaches async helpers through call_async.
        ctx.call_async(ctx.add_job, "ok", {"from": payload["n"]})

    await utils.add_job("blocking", {"n": 7})
    summary = await Worker(options(driver, [blocking, ok], concurrency=2)).run_once()
    assert threads and threads[0] != threading.get_ident()
    # run_once also runs the job the handler queued.
    assert summary == RunOnceSummary(completed=2)
    assert job_rows(sync_connection) == []


async def test_batch_job_keeps_only_the_failed_items(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    @task("notify_all", batch=True)
    async def notify_all(items: list[dict[str, int]]) -> list[BaseException | None]:
        return [None if item["n"] % 2 else ValueError(f"even {item['n']}") for item in items]

    job = await utils.add_job("notify_all", [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}])
    summary = await Worker(options(driver, [notify_all])).run_once()
    assert summary == RunOnceSummary(failed=1)
    row = job_row(sync_connection, job.id)
    assert row is not None
    assert row["payload"] == [{"n": 2}, {"n": 4}]
    assert row["last_error"] == "Batch failures:\neven 2\neven 4"
    assert row["attempts"] == 1


async def test_undecodable_payload_fails_with_a_clear_error(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    calls: list[int] = []

    @task("typed")
    async def typed(payload: list[int]) -> None:
        calls.append(1)

    job = await utils.add_job("typed", {"not": "a list"})
    summary = await Worker(options(driver, [typed])).run_once()
    # The same payload would fail the same way again: it fails for good at once.
    assert summary == RunOnceSummary(failed=1, permanently_failed=1)
    row = job_row(sync_connection, job.id)
    assert row is not None
    assert "'typed'" in row["last_error"] and "list" in row["last_error"]
    assert row["attempts"] == row["max_attempts"]
    assert calls == []


async def test_run_once_with_a_worker_owned_pool(
    database_url: str, driver_name: str, sync_connection: psycopg.Connection[Any]
) -> None:
    """A driver name opens (and closes) a pool per run; migrate=True is a no-op here."""
    sync_connection.execute("select graphile_worker.add_job('ok', '{}')")
    worker = Worker(
        options(driver_name, [ok], database_url=database_url, migrate=True, max_pool_size=2)
    )
    assert await worker.run_once() == RunOnceSummary(completed=1)
    assert await worker.run_once() == RunOnceSummary()
    assert worker.worker_id.startswith("graphile_worker_")


async def test_use_local_time_runs_what_is_due_by_this_clock(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    children: list[object] = []

    @task("parent_local")
    async def parent_local(payload: Any, ctx: WorkerContext) -> None:
        children.append(await ctx.add_job("ok", {}))

    await utils.add_job("parent_local", {})
    summary = await Worker(options(driver, [parent_local, ok], use_local_time=True)).run_once()
    assert summary == RunOnceSummary(completed=2)
    assert job_rows(sync_connection) == []
    # Node's makeAddJob stamps run_at with the local clock when use_local_time is on.
    (child,) = children
    assert child is not None
