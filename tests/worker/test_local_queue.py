"""The local queue: batched claims, hand-out from memory, hand-backs on stop, on ttl expiry
and for newly forbidden flags, the refetch delay, serial queues, and option checks.

What the worker did is read from the table over a separate connection. A job "handed
back" is unlocked with its claim's attempt refunded and its ``run_at`` untouched.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from graphile_worker import LocalQueueOptions, RefetchDelay
from graphile_worker.errors import ConfigurationError
from graphile_worker.hooks import (
    LocalQueueFetched,
    LocalQueueInit,
    LocalQueueModeChange,
    LocalQueueRefetchDelay,
    LocalQueueReturned,
    Observer,
)
from graphile_worker.spec import JobSpec
from graphile_worker.task import task
from graphile_worker.worker import RunOnceSummary, Worker, WorkerOptions

from .conftest import eventually, job_row, job_rows, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.spec import Job
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio


class Held:
    """A task ``hold`` that blocks until released, and a task ``count`` that counts runs."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.runs: dict[int, int] = {}

        @task("hold")
        async def hold(payload: Any) -> None:
            self.started.set()
            await self.release.wait()

        @task("count")
        async def count(payload: dict[str, int]) -> None:
            self.runs[payload["n"]] = self.runs.get(payload["n"], 0) + 1

        self.tasks: list[object] = [hold, count]


def locked(connection: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return [row for row in job_rows(connection) if row["locked_by"] is not None]


def assert_handed_back(row: dict[str, Any] | None, original: Job) -> None:
    assert row is not None, "a handed-back job must still be in the table"
    assert row["locked_by"] is None and row["locked_at"] is None
    assert row["attempts"] == 0, "the claim's attempt must be refunded"
    assert row["run_at"] == original.run_at, "a handed-back job keeps its place in line"
    assert row["last_error"] is None


async def test_one_claim_fills_the_local_queue_and_slots_are_fed_from_it(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    await utils.add_job("hold", {})
    await utils.add_jobs([("count", {"n": n}) for n in range(14)])
    worker = Worker(options(driver, held.tasks, local_queue=LocalQueueOptions(size=10)))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run_once)
            await held.started.wait()
            # One slot runs the first job; the claim took a whole batch of 10 all the same.
            assert len(locked(sync_connection)) == 10
            held.release.set()
    assert job_rows(sync_connection) == []
    assert held.runs == dict.fromkeys(range(14), 1)


async def test_memory_is_topped_up_before_it_runs_dry_and_never_holds_more_than_size(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    await utils.add_jobs([("count", {"n": n}) for n in range(6)])
    await utils.add_job("hold", {})
    await utils.add_jobs([("count", {"n": n}) for n in range(6, 30)])
    worker = Worker(options(driver, held.tasks, local_queue=LocalQueueOptions(size=10)))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run_once)
            await held.started.wait()
            # The first fetch was full; by the time the 7th job runs, memory fell to half
            # of size and was topped up. Fetching only once memory is empty would leave
            # 1 running + 3 waiting locked here.
            await eventually(lambda: len(locked(sync_connection)) > 4)
            assert len(locked(sync_connection)) <= 1 + 10
            held.release.set()
    assert held.runs == dict.fromkeys(range(30), 1)
    assert job_rows(sync_connection) == []


async def test_the_top_up_is_sent_while_jobs_that_never_wait_run_from_memory(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    # Jobs 0-9 fill memory (size 10, one slot); at half, the top-up (jobs 10-14) must be
    # on its way while the slot goes on with jobs that never hand control back to the
    # loop. Job 8 looks, over another connection, without giving the loop a turn: the
    # top-up's claim runs on the server meanwhile. Sent only once memory ran dry, it would
    # find none of them claimed.
    claimed_while_job_8_ran: list[int] = []

    def claimed_top_up() -> int:
        (count,) = sync_connection.execute(
            "select count(*) from graphile_worker._private_jobs"
            " where (payload->>'n')::int between 10 and 14 and attempts = 1"
        ).fetchone()  # type: ignore[misc]
        return int(count)

    @task("quick")
    async def quick(payload: dict[str, int]) -> None:
        if payload["n"] == 8:
            deadline = time.monotonic() + 5
            while (seen := claimed_top_up()) < 5 and time.monotonic() < deadline:
                time.sleep(0.005)  # noqa: ASYNC251 - blocks the loop on purpose
            claimed_while_job_8_ran.append(seen)

    await utils.add_jobs([("quick", {"n": n}) for n in range(30)])
    worker = Worker(
        options(
            driver,
            [quick],
            concurrency=1,
            local_queue=LocalQueueOptions(size=10),
            complete_job_batch_delay=0,
        )
    )
    with anyio.fail_after(20):
        summary = await worker.run_once()
    assert summary == RunOnceSummary(completed=30)
    assert claimed_while_job_8_ran == [5]


async def test_run_once_reports_every_job_from_the_local_queue(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    held.release.set()
    await utils.add_jobs([("count", {"n": n}) for n in range(25)])
    summary = await Worker(
        options(driver, held.tasks, concurrency=3, local_queue=LocalQueueOptions(size=4))
    ).run_once()
    assert summary == RunOnceSummary(completed=25)
    assert held.runs == dict.fromkeys(range(25), 1)
    assert job_rows(sync_connection) == []


async def test_jobs_waiting_in_memory_are_handed_back_as_soon_as_the_worker_stops(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    first = await utils.add_job("hold", {})
    waiting = [await utils.add_job("count", {"n": n}) for n in range(4)]
    worker = Worker(options(driver, held.tasks, local_queue=LocalQueueOptions(size=10)))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await held.started.wait()
            worker.stop()
            # Handed back while the running job is still in its grace period.
            await eventually(lambda: len(locked(sync_connection)) == 1)
            held.release.set()
    assert job_row(sync_connection, first.id) is None
    for job in waiting:
        assert_handed_back(job_row(sync_connection, job.id), job)
    assert held.runs == {}


async def test_jobs_waiting_in_memory_are_handed_back_when_the_run_is_cancelled(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    await utils.add_job("hold", {})
    waiting = [await utils.add_job("count", {"n": n}) for n in range(3)]
    worker = Worker(options(driver, held.tasks, local_queue=LocalQueueOptions(size=10)))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await held.started.wait()
            group.cancel_scope.cancel()
    for job in waiting:
        assert_handed_back(job_row(sync_connection, job.id), job)
    assert locked(sync_connection) == [], "the cancelled job is released too"


async def test_jobs_that_wait_longer_than_the_ttl_are_handed_back_then_run_once(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    await utils.add_job("hold", {})
    waiting = [await utils.add_job("count", {"n": n}) for n in range(3)]
    worker = Worker(options(driver, held.tasks, local_queue=LocalQueueOptions(size=10, ttl=0.2)))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run_once)
            await held.started.wait()
            # The only slot is busy; the waiting jobs expire and go back to the table.
            await eventually(lambda: len(locked(sync_connection)) == 1)
            for job in waiting:
                assert_handed_back(job_row(sync_connection, job.id), job)
            held.release.set()
    # Once the slot was free they were claimed again and ran, each exactly once.
    assert held.runs == {0: 1, 1: 1, 2: 1}
    assert job_rows(sync_connection) == []


async def test_a_slot_freed_during_a_ttl_hand_back_does_not_take_the_jobs_being_handed_back(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
) -> None:
    import psycopg

    held = Held()
    await utils.add_job("hold", {})
    waiting = [await utils.add_job("count", {"n": n}) for n in range(3)]
    worker = Worker(options(driver, held.tasks, local_queue=LocalQueueOptions(size=10, ttl=0.3)))
    with psycopg.Connection.connect(database_url) as blocker:
        with anyio.fail_after(15):
            async with anyio.create_task_group() as group:
                group.start_soon(worker.run_once)
                await held.started.wait()
                # Lock the waiting rows in a transaction of our own: the hand-back of the
                # expired jobs waits for it, and the slot frees up meanwhile.
                blocker.execute(
                    "select id from graphile_worker._private_jobs where id = any(%s) for update",
                    [[job.id for job in waiting]],
                )
                try:
                    await eventually(lambda: _lock_waits(sync_connection) > 0)
                    held.release.set()
                    await anyio.sleep(0.3)  # time for the freed slot to look in memory
                    runs_during_hand_back = dict(held.runs)
                finally:
                    blocker.commit()  # a shielded statement of the worker may wait for it
    assert runs_during_hand_back == {}, "a job being handed back must not run from memory"
    # Back in the table, they were claimed again and ran, each exactly once.
    assert held.runs == {0: 1, 1: 1, 2: 1}
    assert job_rows(sync_connection) == []


def _lock_waits(connection: psycopg.Connection[Any]) -> int:
    (count,) = connection.execute("select count(*) from pg_locks where not granted").fetchone()  # type: ignore[misc]
    return int(count)


async def test_named_queues_stay_serial_with_a_local_queue_and_batched_completion(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    running = 0
    most = 0
    order: list[int] = []

    @task("serial")
    async def serial(payload: dict[str, int]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(0.01)
        order.append(payload["n"])
        running -= 1

    for n in range(6):
        await utils.add_job("serial", {"n": n}, spec=JobSpec(queue_name="one_at_a_time"))
    summary = await Worker(
        options(
            driver,
            [serial],
            concurrency=4,
            local_queue=LocalQueueOptions(size=10),
            complete_job_batch_delay=0.05,
        )
    ).run_once()
    assert summary.completed == 6
    assert most == 1
    assert order == list(range(6))
    assert job_rows(sync_connection) == []


async def test_fixed_forbidden_flags_are_applied_to_the_batched_claim(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    held.release.set()
    flagged = await utils.add_job("count", {"n": 0}, spec=JobSpec(flags=["slow"]))
    await utils.add_jobs([("count", {"n": n}) for n in range(1, 6)])
    summary = await Worker(
        options(
            driver,
            held.tasks,
            forbidden_flags=["slow"],
            local_queue=LocalQueueOptions(size=10),
        )
    ).run_once()
    assert summary.completed == 5
    row = job_row(sync_connection, flagged.id)
    assert row is not None and row["attempts"] == 0 and row["locked_by"] is None


async def test_jobs_in_memory_with_a_newly_forbidden_flag_are_handed_back_not_run(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    forbidden: list[str] = []
    await utils.add_job("hold", {})
    flagged = await utils.add_job("count", {"n": 1}, spec=JobSpec(flags=["slow"]))
    await utils.add_job("count", {"n": 2})
    worker = Worker(
        options(
            driver,
            held.tasks,
            forbidden_flags=lambda: forbidden,
            local_queue=LocalQueueOptions(size=10),
        )
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run_once)
            await held.started.wait()
            assert len(locked(sync_connection)) == 3  # all three are in memory
            forbidden.append("slow")  # e.g. a rate limit kicks in
            held.release.set()
    assert held.runs == {2: 1}
    assert_handed_back(job_row(sync_connection, flagged.id), flagged)


async def test_a_refetch_delay_holds_back_the_next_fetch_after_a_short_one(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    held.release.set()
    delay = RefetchDelay(duration=10.0, threshold=5, max_abort_threshold=10**9)
    worker = Worker(
        options(driver, held.tasks, local_queue=LocalQueueOptions(size=10, refetch_delay=delay))
    )
    first = await utils.add_job("count", {"n": 1})
    async with worker:
        # The first fetch found 1 job (<= threshold): the next one waits at least 5 s, and
        # one announced job is nowhere near the abort threshold.
        await eventually(lambda: job_row(sync_connection, first.id) is None)
        job = await utils.add_job("count", {"n": 2})
        await anyio.sleep(0.5)
        row = job_row(sync_connection, job.id)
        assert row is not None and row["locked_by"] is None
    assert held.runs == {1: 1}


async def test_enough_announced_jobs_end_a_refetch_delay_early(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    held.release.set()
    # An abort threshold drawn below 1: the first announced job ends the delay.
    delay = RefetchDelay(duration=10.0, threshold=5, max_abort_threshold=1)
    worker = Worker(
        options(driver, held.tasks, local_queue=LocalQueueOptions(size=10, refetch_delay=delay))
    )
    first = await utils.add_job("count", {"n": 1})
    async with worker:
        # The first fetch found 1 job (<= threshold), which started the delay.
        await eventually(lambda: job_row(sync_connection, first.id) is None)
        job = await utils.add_job("count", {"n": 2})
        # Well before the 5 s the shortest delay lasts.
        await eventually(lambda: job_row(sync_connection, job.id) is None, within=4)
    assert held.runs == {1: 1, 2: 1}


class LocalQueueEvents(Observer):
    """Records every local-queue event, in order."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def on_local_queue_init(self, event: LocalQueueInit) -> None:
        self.events.append(event)

    def on_local_queue_mode_change(self, event: LocalQueueModeChange) -> None:
        self.events.append(event)

    def on_local_queue_fetched(self, event: LocalQueueFetched) -> None:
        self.events.append(event)

    async def on_local_queue_returned(self, event: LocalQueueReturned) -> None:
        self.events.append(event)

    def on_local_queue_refetch_delay(self, event: LocalQueueRefetchDelay) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def modes(self) -> list[str]:
        return [event.mode for event in self.of(LocalQueueModeChange)]


async def test_observers_see_the_local_queue_start_fetch_change_mode_and_hand_back(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    await utils.add_job("hold", {})
    waiting = [await utils.add_job("count", {"n": n}) for n in range(3)]
    events = LocalQueueEvents()
    worker = Worker(
        options(driver, held.tasks, local_queue=LocalQueueOptions(size=10, ttl=60), hooks=[events])
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await held.started.wait()
            worker.stop()
            await eventually(lambda: len(locked(sync_connection)) == 1)
            held.release.set()
    wid = worker.worker_id
    assert events.events[0] == LocalQueueInit(wid, 10, 60)
    assert all(event.worker_id == wid for event in events.events)  # type: ignore[attr-defined]
    # The first fetch took all four jobs: one went to the slot, three waited in memory.
    assert events.of(LocalQueueFetched)[0] == LocalQueueFetched(wid, 10, 4, 4)
    assert events.modes()[:1] == ["WAITING"]
    assert events.modes()[-1] == "RELEASED"
    [returned] = events.of(LocalQueueReturned)
    assert sorted(returned.job_ids) == sorted(job.id for job in waiting)
    assert returned.reason == "the worker is stopping"
    assert held.runs == {}


async def test_observers_see_a_refetch_delay_start_and_end(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    held = Held()
    held.release.set()
    events = LocalQueueEvents()
    # An abort threshold drawn below 1: the first announced job ends the delay.
    delay = RefetchDelay(duration=10.0, threshold=5, max_abort_threshold=1)
    local_queue = LocalQueueOptions(size=10, refetch_delay=delay)
    worker = Worker(options(driver, held.tasks, local_queue=local_queue, hooks=[events]))
    first = await utils.add_job("count", {"n": 1})
    async with worker:
        await eventually(lambda: job_row(sync_connection, first.id) is None)
        second = await utils.add_job("count", {"n": 2})
        await eventually(lambda: job_row(sync_connection, second.id) is None, within=4)
    changes = events.of(LocalQueueRefetchDelay)
    assert [change.change for change in changes][:2] == ["started", "aborted"]
    started = changes[0]
    assert started.seconds is not None and 5.0 <= started.seconds <= 15.0
    assert started.abort_threshold is not None and started.abort_threshold < 1


@pytest.mark.parametrize("watching", [False, True])
async def test_local_queue_events_are_built_only_when_an_observer_watches_them(
    driver: DatabaseDriver, watching: bool
) -> None:
    class Unrelated(Observer):
        def on_job_complete(self, event: Any) -> None:
            pass

    held = Held()
    hooks = [Unrelated(), LocalQueueEvents()] if watching else [Unrelated()]
    worker = Worker(
        options(driver, held.tasks, local_queue=LocalQueueOptions(size=10), hooks=hooks)
    )
    async with worker:
        run = worker._run
        assert run is not None and run._local_queue is not None
        assert (run._local_queue._emit is not None) is watching


class TestOptions:
    def test_the_size_must_be_a_positive_int(self) -> None:
        for size in (0, -1, 1.5, True, "10"):
            with pytest.raises(ConfigurationError, match=r"local_queue\.size"):
                LocalQueueOptions(size=size)  # type: ignore[arg-type]

    def test_the_ttl_must_be_positive(self) -> None:
        with pytest.raises(ConfigurationError, match=r"local_queue\.ttl"):
            LocalQueueOptions(size=10, ttl=0)

    def test_the_refetch_delay_is_checked(self) -> None:
        with pytest.raises(ConfigurationError, match=r"refetch_delay\.duration"):
            RefetchDelay(duration=-1)
        with pytest.raises(ConfigurationError, match=r"refetch_delay\.threshold"):
            RefetchDelay(duration=0.1, threshold=-1)
        with pytest.raises(ConfigurationError, match=r"refetch_delay\.max_abort_threshold"):
            RefetchDelay(duration=0.1, max_abort_threshold=0)

    def test_a_refetch_delay_longer_than_the_poll_interval_is_refused(self) -> None:
        local_queue = LocalQueueOptions(size=10, refetch_delay=RefetchDelay(duration=3))
        with pytest.raises(ConfigurationError, match="must not be longer than poll_interval"):
            WorkerOptions(tasks=Held().tasks, local_queue=local_queue, poll_interval=2)

    def test_local_queue_must_be_local_queue_options(self) -> None:
        with pytest.raises(ConfigurationError, match="LocalQueueOptions"):
            WorkerOptions(tasks=Held().tasks, local_queue=500)  # type: ignore[arg-type]
