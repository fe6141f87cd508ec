"""A failure recorded by one side reads the same to the other.

One job fails on Node, then on our worker, then on Node, then on our worker again: each
side must see the attempts and ``last_error`` the other recorded, record its own the same
way (the bare message, Node's ``err.message``), push ``run_at`` back by the same
``exp(least(attempts, 10))`` seconds, unlock the queue, and stop once ``max_attempts`` is
reached. Batch jobs that fail in part must keep the same items and message on both sides.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import psycopg
import pytest

from graphile_worker.spec import JobSpec
from graphile_worker.utils import SyncWorkerUtils

from .node import run_node_once
from .python_tasks import run_python_once
from .tables import Seen, jobs, queues, results

pytestmark = [pytest.mark.anyio, pytest.mark.node]

PAST = datetime(2021, 3, 4, 5, 6, 7, 891234, tzinfo=timezone.utc)
MESSAGE = "first line\nsecond line ✓ 'quoted'"
SLACK = timedelta(seconds=2)
"""Time between claiming a job and recording its failure; far below the back-off steps."""


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def node_once(url: str, schema: str) -> None:
    await anyio.to_thread.run_sync(functools.partial(run_node_once, url, schema))


def assert_failure_recorded(
    db: psycopg.Connection[Any], schema: str, attempt: Seen, expected_attempts: int
) -> None:
    """The job as the side that just failed it left it: Node's failJobs semantics."""
    (row,) = jobs(db, schema)
    assert row["attempts"] == expected_attempts
    assert row["last_error"] == MESSAGE
    assert (row["locked_at"], row["locked_by"], row["queue_locked_by"]) == (None, None, None)
    back_off = timedelta(seconds=math.exp(min(expected_attempts, 10)))
    locked_at = parse(attempt.job["locked_at"])
    assert back_off <= row["run_at"] - locked_at < back_off + SLACK
    assert row["is_available"] is (expected_attempts < row["max_attempts"])


class TestFailures:
    async def test_alternating_failures(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        utils = SyncWorkerUtils(db, schema=schema)
        job = utils.add_job(
            "fail",
            {"message": MESSAGE},
            spec=JobSpec(queue_name="failing", max_attempts=4, job_key="failing-key", priority=2),
        )
        sides = ["node", "python", "node", "python"]
        for number, side in enumerate(sides, start=1):
            if side == "node":
                await node_once(interop_url, schema)
            else:
                summary = await run_python_once(interop_url, schema, driver_name)
                assert (summary.failed, summary.permanently_failed) == (1, int(number == 4))
            attempts = results(db, outcome="failed")
            assert [row.side for row in attempts] == sides[:number]
            attempt = attempts[-1]
            # What the side saw: this attempt counted, the other side's error.
            assert attempt.attempts == number
            assert attempt.last_error == (None if number == 1 else MESSAGE)
            assert attempt.payload == {"message": MESSAGE}
            assert (attempt.key, attempt.priority, attempt.max_attempts) == ("failing-key", 2, 4)
            assert attempt.queue_name == "failing"
            assert_failure_recorded(db, schema, attempt, number)
            # Skip the back-off so the next side may run it at once.
            utils.reschedule_jobs([job.id], run_at=PAST)

        # max_attempts reached: neither side runs it again.
        await node_once(interop_url, schema)
        summary = await run_python_once(interop_url, schema, driver_name)
        assert summary.total == 0
        assert len(results(db)) == len(sides)
        assert [queue["locked_by"] for queue in queues(db, schema)] == [None]

    @pytest.mark.parametrize(
        ("items", "left", "message"),
        [
            (
                [{"n": 1}, {"fail": "one"}, {"n": 2}, {"fail": "two ✓"}],
                [{"fail": "one"}, {"fail": "two ✓"}],
                "Batch failures:\none\ntwo ✓",
            ),
            (
                [{"fail": "a"}, {"fail": "b"}],
                [{"fail": "a"}, {"fail": "b"}],
                "Batch failures:\na\nb",
            ),
            ([{"n": 1}, {"n": 2}], None, None),
        ],
        ids=["some-fail", "all-fail", "none-fail"],
    )
    async def test_batch_jobs_fail_alike(
        self,
        interop_url: str,
        schema: str,
        driver_name: str,
        db: psycopg.Connection[Any],
        items: list[dict[str, Any]],
        left: list[dict[str, Any]] | None,
        message: str | None,
    ) -> None:
        """The same batch job, once on each side, leaves the same retry behind."""
        utils = SyncWorkerUtils(db, schema=schema)
        on_node = utils.add_job("batch", items)
        await node_once(interop_url, schema)
        on_python = utils.add_job("batch", items)
        await run_python_once(interop_url, schema, driver_name)

        remaining = {row["id"]: row for row in jobs(db, schema)}
        if left is None:
            assert remaining == {}
            return
        for job in (on_node, on_python):
            row = remaining[job.id]
            assert (row["payload"], row["last_error"], row["attempts"]) == (left, message, 1)
        # And each side retries what the other left: only the failed items again.
        utils.reschedule_jobs([on_node.id], run_at=PAST)
        await run_python_once(interop_url, schema, driver_name)
        utils.reschedule_jobs([on_python.id], run_at=PAST)
        await node_once(interop_url, schema)
        retried = {(row.side, row.job_id): row for row in results(db) if row.attempts == 2}
        assert sorted(retried) == sorted([("python", on_node.id), ("node", on_python.id)])
        assert all(row.payload == left and row.last_error == message for row in retried.values())
        for row in jobs(db, schema):
            assert (row["payload"], row["last_error"], row["attempts"]) == (left, message, 2)
