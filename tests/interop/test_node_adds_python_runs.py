"""Jobs added from Node graphile-worker (every API) are run by our worker exactly as specified.

Node adds through ``addJob`` (every ``TaskSpec`` field and key mode), ``quickAddJob``,
``addJobs`` and its pg client calling the SQL functions; then our worker's ``run_once``
(every runtime and driver) runs the suite's Python tasks (``python_tasks.py``), which
record the job as our worker sees it. Each test checks that against what Node sent, and
that our worker honours what each field means: run_at, priority, flags, max attempts, job
keys, array payloads, unknown tasks.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import psycopg
import pytest

from .conftest import DEFAULT_SCHEMA
from .node import node_utils, run_node_once
from .python_tasks import run_python_once
from .tables import Seen, jobs, results

pytestmark = [pytest.mark.anyio, pytest.mark.node]

PAST = "2021-03-04T05:06:07.891Z"
"""Node sends dates with millisecond precision; our worker must read exactly this."""
PAST_TIME = datetime(2021, 3, 4, 5, 6, 7, 891000, tzinfo=timezone.utc)
MILLISECOND = timedelta(milliseconds=1)
FUTURE = (datetime.now(timezone.utc) + timedelta(days=3650)).isoformat()


async def from_node(url: str, schema: str, ops: list[dict[str, Any]]) -> list[Any]:
    """:func:`node_utils` without blocking the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(node_utils, url, schema, ops))


def add(identifier: str, payload: Any = None, **spec: Any) -> dict[str, Any]:
    """A Node ``addJob`` op."""
    return {"op": "addJob", "identifier": identifier, "payload": payload, "spec": spec}


def node_id(job: dict[str, Any]) -> int:
    return int(job["id"])


def seen_by_python(db: psycopg.Connection[Any], outcome: str | None = None) -> dict[int, Seen]:
    return {row.job_id: row for row in results(db, side="python", outcome=outcome)}


class TestEveryField:
    async def test_add_job_quick_add_job_add_jobs_and_sql(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        full, quick, bare, batch, sql_rows = await from_node(
            interop_url,
            schema,
            [
                add(
                    "record",
                    {"text": "node ✓", "list": [1, 2.5, None, True], "nested": {"a": {}}},
                    queueName="node-queue",
                    runAt=PAST,
                    priority=-7,
                    maxAttempts=3,
                    jobKey="node-key",
                    jobKeyMode="replace",
                    flags=["alpha", "beta"],
                ),
                {
                    "op": "quickAddJob",
                    "identifier": "record",
                    "payload": {"quick": True},
                    "spec": {"priority": 4, "flags": ["gamma"]},
                },
                add("record"),
                {
                    "op": "addJobs",
                    "specs": [
                        {
                            "identifier": "record",
                            "payload": {"i": 0},
                            "queueName": "batch-queue",
                            "runAt": PAST,
                            "priority": 32767,
                            "maxAttempts": 1,
                            "jobKey": "batch-key",
                            "flags": ["delta"],
                        },
                        {"identifier": "record", "payload": [1, 2, 3]},
                    ],
                },
                {
                    "op": "sql",
                    "text": "select * from {schema}.add_job('record', '{\"sql\": 1}'::json, "
                    "queue_name => 'sql-queue', priority => -1, job_key => 'sql-key')",
                },
            ],
        )
        added = [full, quick, bare, *batch, *sql_rows]

        summary = await run_python_once(interop_url, schema, driver_name)

        assert (summary.completed, summary.failed) == (len(added), 0)
        seen = seen_by_python(db)
        assert sorted(seen) == sorted(node_id(job) for job in added)
        for job in added:
            mine = seen[node_id(job)]
            assert mine.outcome == "ran"
            assert mine.payload == job["payload"]
            assert (mine.priority, mine.max_attempts, mine.key) == (
                job["priority"],
                job["max_attempts"],
                job["key"],
            )
            assert mine.flags == job["flags"]
            # Node's reply truncates the database's microseconds; what it sent is exact.
            node_run_at = datetime.fromisoformat(job["run_at"].replace("Z", "+00:00"))
            assert timedelta(0) <= mine.run_at - node_run_at < MILLISECOND
            assert (mine.attempts, mine.last_error) == (1, None)
        node_full = seen[node_id(full)]
        assert node_full.queue_name == "node-queue"
        assert node_full.run_at == PAST_TIME
        assert (node_full.priority, node_full.max_attempts, node_full.key) == (-7, 3, "node-key")
        assert node_full.flags == {"alpha": True, "beta": True}
        assert node_full.payload == {
            "text": "node ✓",
            "list": [1, 2.5, None, True],
            "nested": {"a": {}},
        }
        assert seen[node_id(quick)].flags == {"gamma": True}
        node_bare = seen[node_id(bare)]
        assert (node_bare.payload, node_bare.queue_name, node_bare.flags) == ({}, None, None)
        assert (node_bare.priority, node_bare.max_attempts) == (0, 25)
        assert seen[node_id(batch[0])].queue_name == "batch-queue"
        assert seen[node_id(batch[0])].priority == 32767
        assert seen[node_id(batch[1])].payload == [1, 2, 3]
        assert seen[node_id(sql_rows[0])].queue_name == "sql-queue"
        assert jobs(db, schema) == []
        if schema != DEFAULT_SCHEMA:
            assert jobs(db, DEFAULT_SCHEMA) == []

    async def test_typed_payloads_are_decoded(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        good, bad = await from_node(
            interop_url,
            schema,
            [
                add("typed_record", {"text": "from node", "amount": 2.5}),
                add("typed_record", {"text": "from node", "unexpected": True}),
            ],
        )

        summary = await run_python_once(interop_url, schema, driver_name)

        assert (summary.completed, summary.failed, summary.permanently_failed) == (1, 1, 1)
        decoded = seen_by_python(db)[node_id(good)].job["decoded"]
        assert decoded == {"type": "TypedRecord", "text": "from node", "amount": 2.5}
        (left,) = jobs(db, schema)
        assert left["id"] == node_id(bad)
        # Failed for good at once, as Node reads it too: attempts reached max_attempts.
        assert left["attempts"] == left["max_attempts"] == 25
        # A clear message, readable by anyone looking at the job (Node's tools included).
        assert "typed_record" in left["last_error"]
        assert "unexpected" in left["last_error"]


class TestSemantics:
    """Our worker honours what each field Node set means."""

    async def test_run_at_priority_and_flags(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        priorities = [3, -1, 10, 0, -20, 7]
        added = await from_node(
            interop_url,
            schema,
            [
                *(add("record", {"p": p}, priority=p, runAt=PAST) for p in priorities),
                add("record", {"p": "later"}, runAt=FUTURE),
                add("record", {"p": "forbidden"}, flags=["no", "other"], priority=-100),
                add("record", {"p": "allowed"}, flags=["other"], priority=100),
            ],
        )
        later, forbidden = added[-3], added[-2]

        await run_python_once(
            interop_url, schema, driver_name, concurrency=1, forbidden_flags=["no"]
        )

        order = [row.payload["p"] for row in results(db, side="python")]
        assert order == [*sorted(priorities), "allowed"]
        assert sorted(job["id"] for job in jobs(db, schema)) == sorted(
            [node_id(later), node_id(forbidden)]
        )

    async def test_max_attempts(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        (job,) = await from_node(
            interop_url, schema, [add("fail", {"message": "nope"}, maxAttempts=2)]
        )
        for _ in range(3):
            await run_python_once(interop_url, schema, driver_name)
            # Skip the back-off so that the next run may try again if it is allowed to.
            await from_node(
                interop_url,
                schema,
                [{"op": "rescheduleJobs", "ids": [job["id"]], "options": {"runAt": PAST}}],
            )
        attempts = results(db, outcome="failed")
        assert [row.attempts for row in attempts] == [1, 2]
        (left,) = jobs(db, schema)
        assert (left["attempts"], left["max_attempts"], left["last_error"]) == (2, 2, "nope")

    @pytest.mark.parametrize(
        ("mode", "expected_payload", "expected_run_at"),
        [
            ("replace", {"v": 2}, "2021-03-04T05:06:09.891Z"),
            ("preserve_run_at", {"v": 2}, PAST),
            ("unsafe_dedupe", {"v": 1}, PAST),
        ],
        ids=["replace", "preserve_run_at", "unsafe_dedupe"],
    )
    async def test_job_key_modes(
        self,
        interop_url: str,
        schema: str,
        driver_name: str,
        db: psycopg.Connection[Any],
        mode: str,
        expected_payload: dict[str, int],
        expected_run_at: str,
    ) -> None:
        await from_node(
            interop_url,
            schema,
            [
                add("record", {"v": 1}, jobKey="k", runAt=PAST),
                add("record", {"v": 2}, jobKey="k", jobKeyMode=mode, runAt=expected_run_at),
            ],
        )
        if mode == "unsafe_dedupe":
            # The second call's run_at is ignored too: prove it by sending another one.
            await from_node(
                interop_url,
                schema,
                [add("record", {"v": 3}, jobKey="k", jobKeyMode=mode, runAt=FUTURE)],
            )

        await run_python_once(interop_url, schema, driver_name)

        (seen,) = results(db)
        assert seen.payload == expected_payload
        assert seen.run_at == datetime.fromisoformat(expected_run_at.replace("Z", "+00:00"))

    async def test_array_payloads_merged_by_node(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        await from_node(
            interop_url,
            schema,
            [
                add("batch", [{"n": 1}], jobKey="merge", runAt=FUTURE),
                add("batch", [{"n": 2}, {"n": 3}], jobKey="merge", runAt=PAST),
            ],
        )

        summary = await run_python_once(interop_url, schema, driver_name)

        assert summary.completed == 1
        (seen,) = results(db)
        assert seen.payload == [{"n": 1}, {"n": 2}, {"n": 3}]

    async def test_unknown_tasks_are_left_alone_by_both(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        node_only, python_only = await from_node(
            interop_url,
            schema,
            [add("only_node_knows"), add("typed_record", {"text": "x", "amount": 1})],
        )

        summary = await run_python_once(interop_url, schema, driver_name)
        await anyio.to_thread.run_sync(run_node_once, interop_url, schema)

        assert summary.total == 1
        left = jobs(db, schema)
        assert [(job["id"], job["attempts"]) for job in left] == [(node_id(node_only), 0)]
        assert [row.job_id for row in results(db)] == [node_id(python_only)]
