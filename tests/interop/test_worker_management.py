"""The worker-management SQL, called from one side, on jobs the other side's worker holds.

Node documents ``complete_jobs``, ``permanently_fail_jobs`` and ``reschedule_jobs`` as
acting only on jobs that are not locked, ``remove_job`` as deleting an unlocked job but
only disarming a running one (key cleared, no retries left), and ``force_unlock_workers``
as releasing every job and queue of workers known to be dead. Here a real Node worker
holds jobs (the ``hold`` task keeps them until the test releases them) while Python calls
each function, then the other way round: our worker holds jobs while Node's WorkerUtils
call them. Then the holding worker finishes or retries the jobs, and everything must be
as Node documents it. For ``force_unlock_workers`` the holding worker is killed first
(SIGKILL), as the function is meant for dead workers, and another worker runs the jobs.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import psycopg
import pytest

from graphile_worker.spec import Job, JobSpec
from graphile_worker.utils import SyncWorkerUtils, WorkerUtils

from .node import NodeWorker, node_utils, node_worker
from .processes import PythonWorkerProcess
from .python_tasks import python_worker
from .tables import eventually, jobs, queues, release, results, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.node]

# Whole seconds: Node turns dates into milliseconds, which must not change them.
FUTURE = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3650)
LATER = FUTURE + timedelta(days=1)


def by_id(connection: psycopg.Connection[Any], schema: str) -> dict[int, dict[str, Any]]:
    return {row["id"]: row for row in jobs(connection, schema)}


def started(connection: psycopg.Connection[Any], count: int) -> bool:
    return len(results(connection, outcome="started")) >= count


def assert_nothing_locked(connection: psycopg.Connection[Any], schema: str) -> None:
    assert [row["id"] for row in jobs(connection, schema) if row["locked_at"]] == []
    assert [row["queue_name"] for row in queues(connection, schema) if row["locked_at"]] == []


async def add_held_and_waiting(utils: WorkerUtils) -> tuple[list[Job], list[Job]]:
    """Two jobs Node will hold (one in a named queue) and four it must leave alone."""
    held = [
        await utils.add_job(
            "hold", {"n": 0}, spec=JobSpec(queue_name="held-queue", job_key="held-0")
        ),
        await utils.add_job("hold", {"n": 1}, spec=JobSpec(job_key="held-1")),
    ]
    waiting = [
        await utils.add_job("record", {"n": n}, spec=JobSpec(run_at=FUTURE, job_key=f"waiting-{n}"))
        for n in range(4)
    ]
    return held, waiting


class TestPythonActsOnJobsNodeHolds:
    async def test_complete_fail_reschedule_remove(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        async with await WorkerUtils.connect(
            interop_url, driver=driver_name, schema=schema
        ) as utils:
            held, waiting = await add_held_and_waiting(utils)
            held_ids = [job.id for job in held]
            async with node_worker(interop_url, schema, concurrency=2):
                await eventually(lambda: started(db, 2), what="Node to hold both jobs")
                before = by_id(db, schema)
                node_id = before[held_ids[0]]["locked_by"]
                assert node_id and before[held_ids[1]]["locked_by"] == node_id
                assert [q["locked_by"] for q in queues(db, schema)] == [node_id]

                completed = await utils.complete_jobs([*held_ids, waiting[0].id])
                failed = await utils.permanently_fail_jobs([*held_ids, waiting[1].id], "enough")
                rescheduled = await utils.reschedule_jobs(
                    [*held_ids, waiting[2].id],
                    run_at=LATER,
                    priority=9,
                    attempts=3,
                    max_attempts=10,
                )
                removed_running = await utils.remove_job("held-1")
                removed_waiting = await utils.remove_job("waiting-3")

                # Only the unlocked jobs were touched ...
                assert [job.id for job in completed] == [waiting[0].id]
                assert [job.id for job in failed] == [waiting[1].id]
                assert (failed[0].attempts, failed[0].last_error) == (25, "enough")
                assert [job.id for job in rescheduled] == [waiting[2].id]
                assert (rescheduled[0].run_at, rescheduled[0].priority) == (LATER, 9)
                assert (rescheduled[0].attempts, rescheduled[0].max_attempts) == (3, 10)
                assert removed_waiting is not None and removed_waiting.id == waiting[3].id
                # ... and the running job that lost its key will not be retried.
                assert removed_running is not None and removed_running.id == held_ids[1]
                assert removed_running.key is None
                assert removed_running.attempts == removed_running.max_attempts
                after = by_id(db, schema)
                assert sorted(after) == sorted([*held_ids, waiting[1].id, waiting[2].id])
                for job_id in held_ids:
                    assert after[job_id]["locked_by"] == node_id
                    assert after[job_id]["last_error"] is None
                assert after[held_ids[0]]["attempts"] == 1
                assert after[held_ids[0]]["run_at"] == before[held_ids[0]]["run_at"]
                assert after[held_ids[0]]["priority"] == 0

                # Node then finishes both as usual: one fails, the disarmed one succeeds.
                release(db, held_ids[0], fail=True)
                release(db, held_ids[1])
                await eventually(
                    lambda: (
                        len(results(db, outcome="failed")) == 1
                        and len(results(db, outcome="ran")) == 1
                    ),
                    what="Node to finish the held jobs",
                )
                await eventually(
                    lambda: not by_id(db, schema)[held_ids[0]]["locked_at"],
                    what="Node to release the failed job",
                )
        final = by_id(db, schema)
        assert sorted(final) == sorted([held_ids[0], waiting[1].id, waiting[2].id])
        assert final[held_ids[0]]["attempts"] == 1
        assert final[held_ids[0]]["last_error"] == "hold: released with failure"
        assert_nothing_locked(db, schema)

    async def test_replacing_a_running_job_by_key(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        """add_job with the key of a job Node is running queues a new job; the old one ends."""
        async with await WorkerUtils.connect(
            interop_url, driver=driver_name, schema=schema
        ) as utils:
            running = await utils.add_job("hold", {"v": 1}, spec=JobSpec(job_key="k"))
            async with node_worker(interop_url, schema, concurrency=1):
                await eventually(lambda: started(db, 1), what="Node to hold the job")
                replacement = await utils.add_job("record", {"v": 2}, spec=JobSpec(job_key="k"))
                assert replacement.id != running.id
                old = by_id(db, schema)[running.id]
                assert old["key"] is None and old["attempts"] == old["max_attempts"]
                release(db, running.id)
                await eventually(
                    lambda: len(results(db, outcome="ran")) == 2, what="both jobs to run"
                )
        ran = results(db, outcome="ran")
        assert [(row.job_id, row.payload) for row in ran] == [
            (running.id, {"v": 1}),
            (replacement.id, {"v": 2}),
        ]
        assert jobs(db, schema) == []

    def test_force_unlock_workers_after_a_crash(
        self, interop_url: str, schema: str, db: psycopg.Connection[Any]
    ) -> None:
        """A Node worker dies holding jobs; Python unlocks them; another worker runs them."""
        utils = SyncWorkerUtils(db, schema=schema)
        held = [
            utils.add_job("hold", {"n": 0}, spec=JobSpec(queue_name="crash-queue")),
            utils.add_job("hold", {"n": 1}),
        ]
        bystander = utils.add_job(
            "record", {"n": 2}, spec=JobSpec(queue_name="other", run_at=FUTURE)
        )
        crashed = NodeWorker(interop_url, schema, concurrency=2)
        crashed.start()
        try:
            wait_for(lambda: started(db, 2), what="Node to hold both jobs")
        finally:
            crashed.kill()
        dead_id = by_id(db, schema)[held[0].id]["locked_by"]
        assert dead_id

        # Locked jobs are out of reach of the other functions ...
        assert utils.complete_jobs([job.id for job in held]) == []
        # ... force_unlock_workers for some other worker id changes nothing ...
        utils.force_unlock_workers(["pool-not-this-one"])
        assert all(
            row["locked_by"] == dead_id for row in jobs(db, schema) if row["id"] != bystander.id
        )
        # ... and for the dead worker releases its jobs and its queue.
        utils.force_unlock_workers([dead_id])
        assert_nothing_locked(db, schema)
        after = by_id(db, schema)
        assert [after[job.id]["attempts"] for job in held] == [1, 1]

        for job in held:
            release(db, job.id)
        with NodeWorker(interop_url, schema, concurrency=2):
            wait_for(lambda: len(results(db, outcome="ran")) == 2, what="the jobs to run again")
        reruns = results(db, outcome="ran")
        assert sorted(row.job_id for row in reruns) == sorted(job.id for job in held)
        assert {row.attempts for row in reruns} == {2}
        assert [row["id"] for row in jobs(db, schema)] == [bystander.id]
        assert_nothing_locked(db, schema)


async def from_node(url: str, schema: str, ops: list[dict[str, Any]]) -> list[Any]:
    return await anyio.to_thread.run_sync(functools.partial(node_utils, url, schema, ops))


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return sorted(int(row["id"]) for row in rows)


class TestNodeActsOnJobsPythonHolds:
    async def test_complete_fail_reschedule_remove(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        async with await WorkerUtils.connect(
            interop_url, driver=driver_name, schema=schema
        ) as utils:
            held, waiting = await add_held_and_waiting(utils)
        held_ids = [job.id for job in held]
        worker = python_worker(interop_url, schema, driver_name, concurrency=2)
        async with worker:
            await eventually(lambda: started(db, 2), what="our worker to hold both jobs")
            before = by_id(db, schema)
            assert [before[job_id]["locked_by"] for job_id in held_ids] == [worker.worker_id] * 2
            assert [q["locked_by"] for q in queues(db, schema)] == [worker.worker_id]

            completed, failed, rescheduled, removed_running, removed_waiting = await from_node(
                interop_url,
                schema,
                [
                    {"op": "completeJobs", "ids": [*map(str, held_ids), str(waiting[0].id)]},
                    {
                        "op": "permanentlyFailJobs",
                        "ids": [*map(str, held_ids), str(waiting[1].id)],
                        "reason": "enough",
                    },
                    {
                        "op": "rescheduleJobs",
                        "ids": [*map(str, held_ids), str(waiting[2].id)],
                        "options": {
                            "runAt": LATER.isoformat(),
                            "priority": 9,
                            "attempts": 3,
                            "maxAttempts": 10,
                        },
                    },
                    {"op": "removeJob", "jobKey": "held-1"},
                    {"op": "removeJob", "jobKey": "waiting-3"},
                ],
            )

            assert ids(completed) == [waiting[0].id]
            assert ids(failed) == [waiting[1].id]
            assert (failed[0]["attempts"], failed[0]["last_error"]) == (25, "enough")
            assert ids(rescheduled) == [waiting[2].id]
            assert (rescheduled[0]["priority"], rescheduled[0]["attempts"]) == (9, 3)
            assert int(removed_waiting["id"]) == waiting[3].id
            assert int(removed_running["id"]) == held_ids[1]
            assert removed_running["key"] is None
            assert removed_running["attempts"] == removed_running["max_attempts"]
            after = by_id(db, schema)
            assert sorted(after) == sorted([*held_ids, waiting[1].id, waiting[2].id])
            assert after[waiting[2].id]["run_at"] == LATER
            for job_id in held_ids:
                assert after[job_id]["locked_by"] == worker.worker_id
            assert (after[held_ids[0]]["attempts"], after[held_ids[0]]["priority"]) == (1, 0)

            release(db, held_ids[0], fail=True)
            release(db, held_ids[1])
            await eventually(
                lambda: (
                    len(results(db, outcome="failed")) == 1 and len(results(db, outcome="ran")) == 1
                ),
                what="our worker to finish the held jobs",
            )
            await eventually(
                lambda: not by_id(db, schema)[held_ids[0]]["locked_at"],
                what="our worker to release the failed job",
            )
        final = by_id(db, schema)
        assert sorted(final) == sorted([held_ids[0], waiting[1].id, waiting[2].id])
        assert final[held_ids[0]]["attempts"] == 1
        assert final[held_ids[0]]["last_error"] == "hold: released with failure"
        assert_nothing_locked(db, schema)

    @pytest.mark.parametrize("backend", ["asyncio", "trio"])
    def test_force_unlock_workers_after_a_crash(
        self, interop_url: str, schema: str, db: psycopg.Connection[Any], backend: str
    ) -> None:
        """Our worker dies holding jobs; Node unlocks them; a Node worker runs them."""
        utils = SyncWorkerUtils(db, schema=schema)
        held = [
            utils.add_job("hold", {"n": 0}, spec=JobSpec(queue_name="crash-queue")),
            utils.add_job("hold", {"n": 1}),
        ]
        crashed = PythonWorkerProcess(interop_url, schema, concurrency=2, backend=backend)
        crashed.start()
        try:
            wait_for(lambda: started(db, 2), what="our worker to hold both jobs")
        finally:
            crashed.kill()
        assert crashed.ready is not None
        dead_id = crashed.ready["workerId"]
        assert {row["locked_by"] for row in jobs(db, schema)} == {dead_id}
        assert [q["locked_by"] for q in queues(db, schema)] == [dead_id]

        held_ids = [str(job.id) for job in held]
        not_done, _, _ = node_utils(
            interop_url,
            schema,
            [
                {"op": "completeJobs", "ids": held_ids},
                {"op": "forceUnlockWorkers", "workerIds": ["graphile_worker_not_this_one"]},
                {"op": "sql", "text": "select 1"},
            ],
        )
        assert not_done == []
        assert {row["locked_by"] for row in jobs(db, schema)} == {dead_id}
        node_utils(interop_url, schema, [{"op": "forceUnlockWorkers", "workerIds": [dead_id]}])
        assert_nothing_locked(db, schema)

        for job in held:
            release(db, job.id)
        with NodeWorker(interop_url, schema, concurrency=2):
            wait_for(lambda: len(results(db, outcome="ran")) == 2, what="the jobs to run again")
        reruns = results(db, outcome="ran")
        assert {row.side for row in reruns} == {"node"}
        assert sorted(row.job_id for row in reruns) == sorted(job.id for job in held)
        assert {row.attempts for row in reruns} == {2}
        assert jobs(db, schema) == []
        assert_nothing_locked(db, schema)
