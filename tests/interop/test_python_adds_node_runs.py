"""Jobs added from Python (every API) are run by Node graphile-worker exactly as specified.

Python adds through the async utilities (every runtime and driver), the sync utilities, a
SQLAlchemy ``Session``/``AsyncSession`` and plain SQL; then Node's ``runOnce`` runs the
suite's tasks, which record the job as Node sees it (``interop_results``). Each test checks
what Node saw against the spec we sent (queue, run_at, priority, max_attempts, job key,
flags, payload) and what Node did with it (ran it, left it for later, refused it).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import anyio
import psycopg
import pytest

from graphile_worker.spec import Job, JobSpec
from graphile_worker.sqlalchemy import add_job as sqlalchemy_add_job
from graphile_worker.utils import SyncWorkerUtils, WorkerUtils
from tests.alembic.project import sqlalchemy_url

from .conftest import DEFAULT_SCHEMA
from .node import ProcessOutput, node_utils, run_node_once
from .tables import Seen, jobs, quoted, results

pytestmark = [pytest.mark.anyio, pytest.mark.node]

PAST = datetime(2021, 3, 4, 5, 6, 7, 891234, tzinfo=timezone.utc)
"""A run_at in the past with microseconds, which Node reads with millisecond precision."""
FUTURE = datetime.now(timezone.utc) + timedelta(days=3650)
MILLISECOND = timedelta(milliseconds=1)


@dataclasses.dataclass(frozen=True)
class Record:
    """A typed payload for the suite's ``record`` task."""

    IDENTIFIER: ClassVar[str] = "record"
    text: str
    amount: float
    tags: list[str]


async def node_once(url: str, schema: str, **options: Any) -> ProcessOutput:
    """:func:`run_node_once` without blocking the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(run_node_once, url, schema, **options))


@pytest.fixture
def sync_utils(interop_url: str, schema: str) -> Iterator[SyncWorkerUtils]:
    with SyncWorkerUtils.connect(interop_url, schema=schema) as utils:
        yield utils


def assert_seen_as_added(seen: Seen, job: Job) -> None:
    """Node saw every field of ``job`` (as our utilities returned it) unchanged."""
    assert seen.task_identifier == job.task_identifier
    assert seen.queue_name == job.queue_name
    assert seen.payload == job.payload
    assert seen.priority == job.priority
    assert seen.max_attempts == job.max_attempts
    assert seen.key == job.key
    assert seen.flags == (dict.fromkeys(job.flags, True) or None)
    assert abs(seen.run_at - job.run_at) < MILLISECOND
    assert seen.attempts == 1
    assert seen.last_error is None


def assert_node_was_quiet(output: ProcessOutput) -> None:
    assert output.messages("warning", "error") == []
    assert output.other_stderr == []


def assert_default_schema_untouched(db: psycopg.Connection[Any], schema: str) -> None:
    """With a custom schema, nothing may leak into the default one."""
    if schema != DEFAULT_SCHEMA:
        assert jobs(db, DEFAULT_SCHEMA) == []


class TestEveryField:
    async def test_typed_raw_and_batch_jobs(
        self, interop_url: str, schema: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        utils = await WorkerUtils.connect(interop_url, driver=driver_name, schema=schema)
        async with utils:
            typed = await utils.add_job(
                Record(text="typed ✓", amount=1.5, tags=["a", "b"]),
                spec=JobSpec(
                    queue_name="typed-queue",
                    run_at=PAST,
                    priority=-7,
                    max_attempts=3,
                    job_key="typed-key",
                    flags=["alpha", "beta"],
                ),
            )
            raw = await utils.add_job(
                "record",
                {"nested": {"list": [1, 2.5, None, True, "ü"]}, "empty": {}},
                spec=JobSpec(
                    queue_name="raw queue",
                    run_at=PAST + timedelta(seconds=1),
                    priority=32767,
                    max_attempts=32767,
                    job_key="raw-key",
                    job_key_mode="replace",
                    flags=["gamma"],
                ),
            )
            plain = await utils.add_job("record")
            batch = await utils.add_jobs(
                [
                    (
                        "record",
                        {"i": 0},
                        JobSpec(
                            queue_name="batch-queue",
                            run_at=PAST,
                            priority=-32768,
                            max_attempts=1,
                            job_key="batch-key",
                            flags=["delta"],
                        ),
                    ),
                    ("record", [1, 2, 3]),
                    Record(text="batch typed", amount=0, tags=[]),
                ]
            )
        added = [typed, raw, plain, *batch]

        output = await node_once(interop_url, schema)

        assert_node_was_quiet(output)
        seen = {row.job_id: row for row in results(db, side="node")}
        assert sorted(seen) == sorted(job.id for job in added)
        for job in added:
            assert seen[job.id].outcome == "ran"
            assert_seen_as_added(seen[job.id], job)
        # And against the specs themselves, not only against what our utilities returned.
        node_typed = seen[typed.id]
        assert node_typed.payload == {"text": "typed ✓", "amount": 1.5, "tags": ["a", "b"]}
        assert (node_typed.queue_name, node_typed.priority, node_typed.max_attempts) == (
            "typed-queue",
            -7,
            3,
        )
        assert node_typed.key == "typed-key"
        assert node_typed.flags == {"alpha": True, "beta": True}
        assert abs(node_typed.run_at - PAST) < MILLISECOND
        assert seen[raw.id].queue_name == "raw queue"
        assert (seen[raw.id].priority, seen[raw.id].max_attempts) == (32767, 32767)
        node_plain = seen[plain.id]
        assert node_plain.payload == {}
        assert (node_plain.queue_name, node_plain.key, node_plain.flags) == (None, None, None)
        assert (node_plain.priority, node_plain.max_attempts) == (0, 25)
        assert seen[batch[0].id].priority == -32768
        assert seen[batch[1].id].payload == [1, 2, 3]
        assert jobs(db, schema) == []
        assert_default_schema_untouched(db, schema)

    def test_sql_add_job(self, interop_url: str, schema: str, db: psycopg.Connection[Any]) -> None:
        """Jobs added with the SQL functions, from Python, by name and position."""
        name = quoted(schema)
        first = db.execute(
            f"select id from {name}.add_job('record', json_build_object('from', 'sql'), "
            "queue_name => 'sql-queue', run_at => %s, max_attempts => 4, job_key => 'sql-key', "
            "priority => 2, flags => array['f1', 'f2'], job_key_mode => 'preserve_run_at')",
            (PAST,),
        ).fetchone()
        second = db.execute(
            f"select id from {name}.add_jobs(array[row('record', '[\"a\"]'::json, null, null, "
            f"null, null, null, null)::{name}.job_spec])"
        ).fetchone()
        assert first is not None and second is not None

        output = run_node_once(interop_url, schema)

        assert_node_was_quiet(output)
        seen = {row.job_id: row for row in results(db, side="node")}
        assert sorted(seen) == sorted([first[0], second[0]])
        node_first = seen[first[0]]
        assert node_first.payload == {"from": "sql"}
        assert (node_first.queue_name, node_first.key) == ("sql-queue", "sql-key")
        assert (node_first.priority, node_first.max_attempts) == (2, 4)
        assert node_first.flags == {"f1": True, "f2": True}
        assert abs(node_first.run_at - PAST) < MILLISECOND
        assert seen[second[0]].payload == ["a"]
        assert jobs(db, schema) == []

    def test_sqlalchemy_session(
        self, interop_url: str, schema: str, db: psycopg.Connection[Any]
    ) -> None:
        """A job added in a Session reaches Node only if the session commits."""
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        engine = create_engine(sqlalchemy_url(interop_url, "psycopg"))
        try:
            with Session(engine) as session:
                sqlalchemy_add_job(session, "record", {"kept": False}, schema=schema)
                session.rollback()
            with Session(engine) as session, session.begin():
                kept = sqlalchemy_add_job(
                    session,
                    Record(text="in a session", amount=2, tags=[]),
                    spec=JobSpec(queue_name="orm", priority=1, job_key="orm-key"),
                    schema=schema,
                )
        finally:
            engine.dispose()

        output = run_node_once(interop_url, schema)

        assert_node_was_quiet(output)
        seen = results(db, side="node")
        assert [row.job_id for row in seen] == [kept.id]
        assert_seen_as_added(seen[0], kept)
        assert seen[0].payload == {"text": "in a session", "amount": 2, "tags": []}

    @pytest.mark.parametrize("dialect", ["asyncpg", "psycopg"])
    def test_sqlalchemy_async_session(
        self, interop_url: str, schema: str, db: psycopg.Connection[Any], dialect: str
    ) -> None:
        """The same through an AsyncSession (SQLAlchemy's asyncio extension: asyncio only)."""
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        async def add() -> Job:
            engine = create_async_engine(sqlalchemy_url(interop_url, dialect))
            try:
                async with AsyncSession(engine) as session:
                    await sqlalchemy_add_job(session, "record", {"kept": False}, schema=schema)
                    await session.rollback()
                async with AsyncSession(engine) as session, session.begin():
                    return await sqlalchemy_add_job(
                        session,
                        "record",
                        {"kept": True},
                        spec=JobSpec(run_at=PAST, max_attempts=9, flags=["orm"]),
                        schema=schema,
                    )
            finally:
                await engine.dispose()

        kept = anyio.run(add, backend="asyncio")
        output = run_node_once(interop_url, schema)

        assert_node_was_quiet(output)
        seen = results(db, side="node")
        assert [row.job_id for row in seen] == [kept.id]
        assert_seen_as_added(seen[0], kept)
        assert seen[0].payload == {"kept": True}


class TestSemantics:
    """Node honours what each field means, not only its value."""

    def test_future_run_at_waits(
        self,
        interop_url: str,
        schema: str,
        sync_utils: SyncWorkerUtils,
        db: psycopg.Connection[Any],
    ) -> None:
        later = sync_utils.add_job("record", {"when": "later"}, spec=JobSpec(run_at=FUTURE))
        now = sync_utils.add_job("record", {"when": "now"})

        run_node_once(interop_url, schema)

        assert [row.job_id for row in results(db)] == [now.id]
        (left,) = jobs(db, schema)
        assert (left["id"], left["attempts"], left["locked_by"]) == (later.id, 0, None)
        assert abs(left["run_at"] - FUTURE) < timedelta(microseconds=1)

    def test_priority_order(
        self,
        interop_url: str,
        schema: str,
        sync_utils: SyncWorkerUtils,
        db: psycopg.Connection[Any],
    ) -> None:
        priorities = [3, -1, 10, 0, -20, 7]
        sync_utils.add_jobs(
            [("record", {"p": p}, JobSpec(priority=p, run_at=PAST)) for p in priorities]
        )

        run_node_once(interop_url, schema, concurrency=1)

        assert [row.payload["p"] for row in results(db)] == sorted(priorities)

    def test_max_attempts(
        self,
        interop_url: str,
        schema: str,
        sync_utils: SyncWorkerUtils,
        db: psycopg.Connection[Any],
    ) -> None:
        """A job with max_attempts=2 is tried twice by Node, then never again."""
        job = sync_utils.add_job("fail", {"message": "nope"}, spec=JobSpec(max_attempts=2))
        for _ in range(3):
            run_node_once(interop_url, schema)
            # Skip the back-off so the next run may try again if it is allowed to.
            sync_utils.reschedule_jobs([job.id], run_at=PAST)
        attempts = results(db, outcome="failed")
        assert [row.attempts for row in attempts] == [1, 2]
        assert attempts[1].last_error == "nope"
        (left,) = jobs(db, schema)
        assert (left["attempts"], left["max_attempts"], left["last_error"]) == (2, 2, "nope")

    @pytest.mark.parametrize(
        ("mode", "expected_payload", "expected_run_at"),
        [
            ("replace", {"v": 2}, PAST + timedelta(seconds=2)),
            ("preserve_run_at", {"v": 2}, PAST),
            ("unsafe_dedupe", {"v": 1}, PAST),
        ],
        ids=["replace", "preserve_run_at", "unsafe_dedupe"],
    )
    def test_job_key_modes(
        self,
        interop_url: str,
        schema: str,
        sync_utils: SyncWorkerUtils,
        db: psycopg.Connection[Any],
        mode: str,
        expected_payload: dict[str, int],
        expected_run_at: datetime,
    ) -> None:
        sync_utils.add_job("record", {"v": 1}, spec=JobSpec(job_key="k", run_at=PAST))
        sync_utils.add_job(
            "record",
            {"v": 2},
            spec=JobSpec(job_key="k", job_key_mode=mode, run_at=PAST + timedelta(seconds=2)),  # type: ignore[arg-type]
        )

        run_node_once(interop_url, schema)

        (seen,) = results(db)
        assert seen.payload == expected_payload
        assert abs(seen.run_at - expected_run_at) < MILLISECOND
        assert seen.key == "k"

    def test_job_key_across_sides(
        self,
        interop_url: str,
        schema: str,
        sync_utils: SyncWorkerUtils,
        db: psycopg.Connection[Any],
    ) -> None:
        """One job key, replaced in turn by Python, Node and Python: still one job."""
        first = sync_utils.add_job("record", {"by": "python"}, spec=JobSpec(job_key="shared"))
        (from_node,) = node_utils(
            interop_url,
            schema,
            [
                {
                    "op": "addJob",
                    "identifier": "record",
                    "payload": {"by": "node"},
                    "spec": {"jobKey": "shared", "priority": 5, "queueName": "node-queue"},
                }
            ],
        )
        assert int(from_node["id"]) == first.id
        last = sync_utils.add_job(
            "record", {"by": "python again"}, spec=JobSpec(job_key="shared", priority=6)
        )
        assert last.id == first.id

        run_node_once(interop_url, schema)

        (seen,) = results(db)
        assert (seen.job_id, seen.payload, seen.priority) == (first.id, {"by": "python again"}, 6)
        assert seen.queue_name is None  # replace overwrites every field, the queue too

    def test_array_payloads_merge_across_sides(
        self,
        interop_url: str,
        schema: str,
        sync_utils: SyncWorkerUtils,
        db: psycopg.Connection[Any],
    ) -> None:
        sync_utils.add_job("record", [1, 2], spec=JobSpec(job_key="batch", run_at=FUTURE))
        node_utils(
            interop_url,
            schema,
            [
                {
                    "op": "addJob",
                    "identifier": "record",
                    "payload": [3],
                    "spec": {"jobKey": "batch", "runAt": FUTURE},
                }
            ],
        )
        sync_utils.add_jobs([("record", [{"four": 4}], JobSpec(job_key="batch", run_at=PAST))])

        run_node_once(interop_url, schema)

        (seen,) = results(db)
        assert seen.payload == [1, 2, 3, {"four": 4}]

    def test_add_jobs_preserve_run_at(
        self,
        interop_url: str,
        schema: str,
        sync_utils: SyncWorkerUtils,
        db: psycopg.Connection[Any],
    ) -> None:
        sync_utils.add_jobs([("record", {"v": 1}, JobSpec(job_key="a", run_at=PAST))])
        sync_utils.add_jobs(
            [("record", {"v": 2}, JobSpec(job_key="a", run_at=FUTURE))],
            job_key_preserve_run_at=True,
        )

        run_node_once(interop_url, schema)

        (seen,) = results(db)
        assert seen.payload == {"v": 2}
        assert abs(seen.run_at - PAST) < MILLISECOND

    def test_forbidden_flags(
        self,
        interop_url: str,
        schema: str,
        sync_utils: SyncWorkerUtils,
        db: psycopg.Connection[Any],
    ) -> None:
        blocked = sync_utils.add_job(
            "record", {"f": "blocked"}, spec=JobSpec(flags=["no", "other"])
        )
        allowed = sync_utils.add_job("record", {"f": "other"}, spec=JobSpec(flags=["other"]))
        plain = sync_utils.add_job("record", {"f": None})

        run_node_once(interop_url, schema, forbidden_flags=["no"])

        assert sorted(row.job_id for row in results(db)) == sorted([allowed.id, plain.id])
        assert [job["id"] for job in jobs(db, schema)] == [blocked.id]
