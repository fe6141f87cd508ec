"""WorkerUtils and SyncWorkerUtils against a real, migrated database.

Async tests run on every valid (runtime, driver) pair through the ``driver`` fixture; what
they write is read back over a separate sync connection, straight from the schema's
``jobs`` view and ``_private_*`` tables, so the checks do not trust the code under test.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
import pytest
from psycopg.rows import dict_row

from graphile_worker._payload import PreparedJob, prepare_job
from graphile_worker.drivers.base import AsyncExecutor, Params, Row
from graphile_worker.errors import (
    ConfigurationError,
    InvalidJobSpecError,
    InvalidSchemaNameError,
    QueryError,
)
from graphile_worker.spec import CleanupTask, Job, JobKeyMode, JobSpec
from graphile_worker.sql.jobs import order_like_specs
from graphile_worker.utils import SyncWorkerUtils, WorkerUtils
from tests.migrations.node import apply_node_migrations

if TYPE_CHECKING:
    from graphile_worker.drivers import DatabaseDriver

pytestmark = pytest.mark.anyio

LATER = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
EVEN_LATER = LATER + timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class SendEmail:
    IDENTIFIER: ClassVar[str] = "send_email"
    to: str


@dataclasses.dataclass(frozen=True)
class ResizeImage:
    IDENTIFIER: ClassVar[str] = "resize_image"
    url: str
    width: int


# ------------------------------------------------------------------------------- helpers


def jobs_view(
    connection: psycopg.Connection[Any], schema: str = "graphile_worker"
) -> list[dict[str, Any]]:
    """Every job as the schema's ``jobs`` view shows it, with the payload added, by id."""
    quoted = '"' + schema.replace('"', '""') + '"'
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            f"select view.*, private.payload from {quoted}.jobs as view "
            f"join {quoted}._private_jobs as private using (id) order by view.id"
        )
        return cursor.fetchall()


def scalar(connection: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    row = connection.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def lock(connection: psycopg.Connection[Any], job_id: int, worker: str = "worker-1") -> None:
    """Mark a job as being run right now, as a worker's fetch would."""
    connection.execute(
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = %s, "
        "attempts = attempts + 1 where id = %s",
        (worker, job_id),
    )


class CountingExecutor:
    """Passes everything to a real executor, recording each statement sent."""

    def __init__(self, inner: AsyncExecutor) -> None:
        self.inner = inner
        self.statements: list[str] = []

    async def execute(self, sql: str, params: Params | None = None) -> int:
        self.statements.append(sql)
        return await self.inner.execute(sql, params)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        self.statements.append(sql)
        return await self.inner.fetch(sql, params)

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        self.statements.append(sql)
        return await self.inner.fetchrow(sql, params)

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        self.statements.append(sql)
        return await self.inner.fetchval(sql, params)

    async def execute_script(self, sql: str) -> None:
        self.statements.append(sql)
        await self.inner.execute_script(sql)


@pytest.fixture
def utils(driver: DatabaseDriver) -> WorkerUtils:
    return WorkerUtils(driver)


@pytest.fixture
def db(sync_connection: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """A separate autocommit connection for reading back (and for arranging locks)."""
    return sync_connection


# ------------------------------------------------------------------------------- add_job


class TestAddJob:
    async def test_defaults(self, utils: WorkerUtils, db: psycopg.Connection[Any]) -> None:
        job = await utils.add_job("plain_task", {"n": 1})
        (row,) = jobs_view(db)
        assert row["id"] == job.id
        assert row["task_identifier"] == job.task_identifier == "plain_task"
        assert row["payload"] == job.payload == {"n": 1}
        assert row["queue_name"] is job.queue_name is None
        assert (row["priority"], row["max_attempts"], row["attempts"]) == (0, 25, 0)
        assert row["key"] is row["flags"] is None
        assert job.flags == frozenset()
        assert row["run_at"] == job.run_at
        assert scalar(db, "select now() - %s < interval '1 minute'", job.run_at)

    async def test_every_spec_field(self, utils: WorkerUtils, db: psycopg.Connection[Any]) -> None:
        spec = JobSpec(
            queue_name="mail",
            run_at=LATER,
            max_attempts=3,
            job_key="welcome:1",
            priority=-7,
            flags=["slow", "external"],
        )
        job = await utils.add_job("send_email", {"to": "a@example.com"}, spec=spec)
        (row,) = jobs_view(db)
        assert row["queue_name"] == job.queue_name == "mail"
        assert row["run_at"] == job.run_at == LATER
        assert row["max_attempts"] == job.max_attempts == 3
        assert row["key"] == job.key == "welcome:1"
        assert row["priority"] == job.priority == -7
        assert row["flags"] == {"slow": True, "external": True}
        assert job.flags == frozenset({"slow", "external"})
        assert job.job_queue_id is not None and job.task_id is not None

    async def test_none_payload_is_an_empty_object(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        await utils.add_job("no_payload")
        assert jobs_view(db)[0]["payload"] == {}

    async def test_scalar_and_array_payloads(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        for payload in ("a string", 12, [1, {"two": 2}], True):
            assert (await utils.add_job("scalar", payload)).payload == payload
        assert [row["payload"] for row in jobs_view(db)] == ["a string", 12, [1, {"two": 2}], True]

    async def test_typed_payload_names_its_task(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        job = await utils.add_job(SendEmail(to="b@example.com"), spec=JobSpec(priority=2))
        (row,) = jobs_view(db)
        assert row["task_identifier"] == job.task_identifier == "send_email"
        assert row["payload"] == {"to": "b@example.com"}
        assert row["priority"] == 2

    async def test_raw_job_takes_any_identifier(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        job = await utils.add_job("legacy:task", SendEmail(to="c"), spec=JobSpec(max_attempts=1))
        assert (job.task_identifier, job.payload, job.max_attempts) == (
            "legacy:task",
            {"to": "c"},
            1,
        )
        assert jobs_view(db)[0]["task_identifier"] == "legacy:task"

    async def test_returns_existing_task_and_queue_names(self, utils: WorkerUtils) -> None:
        first = await utils.add_job("shared", {}, spec=JobSpec(queue_name="q"))
        second = await utils.add_job("shared", {}, spec=JobSpec(queue_name="q"))
        assert (second.task_identifier, second.queue_name) == ("shared", "q")
        assert (second.task_id, second.job_queue_id) == (first.task_id, first.job_queue_id)

    async def test_typed_payload_with_positional_spec_is_refused(self, utils: WorkerUtils) -> None:
        with pytest.raises(TypeError, match="pass the spec by keyword"):
            await utils.add_job(SendEmail(to="x"), JobSpec())  # type: ignore[call-overload]

    async def test_untyped_object_without_identifier(self, utils: WorkerUtils) -> None:
        with pytest.raises(InvalidJobSpecError, match="without a task identifier"):
            await utils.add_job({"to": "x"})  # type: ignore[call-overload]


class TestJobKeyModes:
    async def test_replace_updates_the_waiting_job(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        first = await utils.add_job(
            "t", {"v": 1}, spec=JobSpec(job_key="k", run_at=LATER, priority=1)
        )
        second = await utils.add_job(
            "t", {"v": 2}, spec=JobSpec(job_key="k", run_at=EVEN_LATER, job_key_mode="replace")
        )
        (row,) = jobs_view(db)
        assert row["id"] == first.id == second.id
        assert (row["payload"], row["run_at"], row["priority"]) == ({"v": 2}, EVEN_LATER, 0)
        assert row["revision"] == second.revision == 1

    async def test_default_mode_is_replace(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        await utils.add_job("t", {"v": 1}, spec=JobSpec(job_key="k", run_at=LATER))
        await utils.add_job("t", {"v": 2}, spec=JobSpec(job_key="k", run_at=EVEN_LATER))
        assert [(row["payload"], row["run_at"]) for row in jobs_view(db)] == [
            ({"v": 2}, EVEN_LATER)
        ]

    async def test_preserve_run_at_keeps_the_time_only(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        await utils.add_job("t", {"v": 1}, spec=JobSpec(job_key="k", run_at=LATER))
        await utils.add_job(
            "t",
            {"v": 2},
            spec=JobSpec(job_key="k", run_at=EVEN_LATER, job_key_mode=JobKeyMode.PRESERVE_RUN_AT),
        )
        assert [(row["payload"], row["run_at"]) for row in jobs_view(db)] == [({"v": 2}, LATER)]

    async def test_unsafe_dedupe_keeps_the_existing_job(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        first = await utils.add_job("t", {"v": 1}, spec=JobSpec(job_key="k", run_at=LATER))
        again = await utils.add_job(
            "t",
            {"v": 2},
            spec=JobSpec(job_key="k", run_at=EVEN_LATER, job_key_mode=JobKeyMode.UNSAFE_DEDUPE),
        )
        assert again.id == first.id
        assert again.payload == {"v": 1}
        assert [(row["payload"], row["run_at"]) for row in jobs_view(db)] == [({"v": 1}, LATER)]

    async def test_unsafe_dedupe_even_while_running(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        first = await utils.add_job("t", {"v": 1}, spec=JobSpec(job_key="k"))
        lock(db, first.id)
        await utils.add_job("t", {"v": 2}, spec=JobSpec(job_key="k", job_key_mode="unsafe_dedupe"))
        assert [row["id"] for row in jobs_view(db)] == [first.id]

    async def test_replace_while_running_queues_a_new_job(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        first = await utils.add_job("t", {"v": 1}, spec=JobSpec(job_key="k"))
        lock(db, first.id)
        second = await utils.add_job("t", {"v": 2}, spec=JobSpec(job_key="k"))
        assert second.id != first.id
        rows = {row["id"]: row for row in jobs_view(db)}
        # The running job lets go of the key and will not be retried.
        assert rows[first.id]["key"] is None
        assert rows[first.id]["attempts"] == rows[first.id]["max_attempts"]
        assert (rows[second.id]["key"], rows[second.id]["payload"]) == ("k", {"v": 2})


# ------------------------------------------------------------------------------ add_jobs


class TestAddJobs:
    async def test_every_spec_field(self, utils: WorkerUtils, db: psycopg.Connection[Any]) -> None:
        jobs = await utils.add_jobs(
            [
                ("plain", {"i": 0}),
                (
                    "full",
                    {"i": 1},
                    JobSpec(
                        queue_name="q1",
                        run_at=LATER,
                        max_attempts=4,
                        job_key="key-1",
                        priority=9,
                        flags={"f1", "f2"},
                    ),
                ),
                SendEmail(to="typed"),
                (ResizeImage(url="u", width=3), JobSpec(queue_name="images", priority=-1)),
            ]
        )
        assert [job.task_identifier for job in jobs] == [
            "plain",
            "full",
            "send_email",
            "resize_image",
        ]
        rows = {row["id"]: row for row in jobs_view(db)}
        assert len(rows) == 4
        plain, full, typed, image = (rows[job.id] for job in jobs)
        assert (plain["payload"], plain["queue_name"], plain["priority"]) == ({"i": 0}, None, 0)
        assert plain["max_attempts"] == 25 and plain["key"] is None and plain["flags"] is None
        assert full["task_identifier"] == "full"
        assert (full["queue_name"], full["run_at"], full["max_attempts"]) == ("q1", LATER, 4)
        assert (full["key"], full["priority"]) == ("key-1", 9)
        assert full["flags"] == {"f1": True, "f2": True}
        assert (typed["task_identifier"], typed["payload"]) == ("send_email", {"to": "typed"})
        assert (image["queue_name"], image["priority"]) == ("images", -1)
        assert image["payload"] == {"url": "u", "width": 3}
        for job in jobs:
            row = rows[job.id]
            assert (job.queue_name, job.run_at, job.key) == (
                row["queue_name"],
                row["run_at"],
                row["key"],
            )

    async def test_one_statement(self, driver: DatabaseDriver, db: psycopg.Connection[Any]) -> None:
        counting = CountingExecutor(driver)
        utils = WorkerUtils(counting)
        await utils.add_job("known", {})
        counting.statements.clear()
        jobs = await utils.add_jobs([("known", {"i": i}) for i in range(50)] + [("new", {})])
        assert len(counting.statements) == 1
        assert "add_jobs" in counting.statements[0]
        assert len(jobs) == 51
        assert scalar(db, "select count(*) from graphile_worker._private_jobs") == 52

    async def test_labels_and_order_when_several_tasks_are_new(
        self, driver: DatabaseDriver, db: psycopg.Connection[Any]
    ) -> None:
        # New tasks are invisible to the statement that creates them, and PostgreSQL often
        # returns these rows in another order than the specs: names and order must still
        # come out right (a second statement looks the names up).
        counting = CountingExecutor(driver)
        entries: list[tuple[str, object, JobSpec | None]] = [
            (f"task_{i % 4}", {"i": i}, JobSpec(queue_name=f"queue_{i % 3}")) for i in range(12)
        ]
        jobs = await WorkerUtils(counting).add_jobs(entries)
        assert len(counting.statements) == 2
        assert [(job.task_identifier, job.payload, job.queue_name) for job in jobs] == [
            (identifier, payload, spec.queue_name if spec else None)
            for identifier, payload, spec in entries
        ]
        stored = {row["id"]: row for row in jobs_view(db)}
        for job in jobs:
            assert stored[job.id]["task_identifier"] == job.task_identifier
            assert stored[job.id]["queue_name"] == job.queue_name
            assert stored[job.id]["payload"] == job.payload

    async def test_replace_and_preserve_run_at_for_the_batch(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        await utils.add_jobs([("t", {"v": 1}, JobSpec(job_key="a", run_at=LATER))])
        await utils.add_jobs([("t", {"v": 2}, JobSpec(job_key="a", run_at=EVEN_LATER))])
        assert [(r["payload"], r["run_at"]) for r in jobs_view(db)] == [({"v": 2}, EVEN_LATER)]
        await utils.add_jobs(
            [("t", {"v": 3}, JobSpec(job_key="a", run_at=LATER))], job_key_preserve_run_at=True
        )
        assert [(r["payload"], r["run_at"]) for r in jobs_view(db)] == [({"v": 3}, EVEN_LATER)]

    async def test_array_payloads_merge_under_one_key(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        await utils.add_jobs([("batch", [1], JobSpec(job_key="b"))])
        (job,) = await utils.add_jobs([("batch", [2, 3], JobSpec(job_key="b"))])
        assert job.payload == [1, 2, 3]
        assert [row["payload"] for row in jobs_view(db)] == [[1, 2, 3]]

    async def test_empty_batch_sends_nothing(self, driver: DatabaseDriver) -> None:
        counting = CountingExecutor(driver)
        assert await WorkerUtils(counting).add_jobs([]) == []
        assert counting.statements == []

    @pytest.mark.parametrize(
        ("entries", "preserve", "message"),
        [
            (
                [("t", {}, JobSpec(job_key="k", job_key_mode="unsafe_dedupe"))],
                False,
                "use add_job for unsafe_dedupe",
            ),
            (
                [("t", {}, JobSpec(job_key="k", job_key_mode="preserve_run_at"))],
                False,
                "job_key_preserve_run_at",
            ),
            ([("t", {}, JobSpec(job_key="k", job_key_mode="replace"))], True, "'replace'"),
            (
                [("t", {}, JobSpec(job_key="k")), ("u", {}, JobSpec(job_key="k"))],
                False,
                "appears more than once",
            ),
            ([("good", {}), ("bad", {"x": float("nan")})], False, "job 1"),
            # The first bad job is named, whatever is wrong with later ones.
            ([("bad", {"x": float("nan")}), ("", {})], False, "job 0: payload"),
            ([SendEmail(to="x"), ("t", {"x": {1j}}), 7], False, "job 1: payload"),
            ([("good", {}), ("", {})], False, "job 1: task identifier must not be empty"),
            ([("good", {}), ("bad", {}, "not a spec")], False, "spec must be a JobSpec"),
            ([("good", {}), {"no": "identifier"}], False, "cannot add"),
        ],
    )
    async def test_invalid_batches_insert_nothing(
        self,
        utils: WorkerUtils,
        db: psycopg.Connection[Any],
        entries: list[Any],
        preserve: bool,
        message: str,
    ) -> None:
        with pytest.raises(InvalidJobSpecError, match=message):
            await utils.add_jobs(entries, job_key_preserve_run_at=preserve)
        assert scalar(db, "select count(*) from graphile_worker._private_jobs") == 0
        assert scalar(db, "select count(*) from graphile_worker._private_tasks") == 0

    async def test_mixed_batch_keeps_order_and_fields(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        shared = {"same": [1, 2]}
        jobs = await utils.add_jobs(
            [
                ("a", None),
                SendEmail(to="1"),
                ("a", shared, JobSpec(priority=3)),
                (ResizeImage(url="u", width=2), None),
                ("b", shared),
                (SendEmail(to="2"), JobSpec(queue_name="mail", flags=["x"])),
                ("a", {"é": "ü"}, None),
            ]
        )
        expected = [
            ("a", {}, 0, None, frozenset()),
            ("send_email", {"to": "1"}, 0, None, frozenset()),
            ("a", shared, 3, None, frozenset()),
            ("resize_image", {"url": "u", "width": 2}, 0, None, frozenset()),
            ("b", shared, 0, None, frozenset()),
            ("send_email", {"to": "2"}, 0, "mail", frozenset({"x"})),
            ("a", {"é": "ü"}, 0, None, frozenset()),
        ]
        assert [
            (job.task_identifier, job.payload, job.priority, job.queue_name, job.flags)
            for job in jobs
        ] == expected
        stored = jobs_view(db)
        assert [row["id"] for row in stored] == [job.id for job in jobs]
        assert [
            (
                row["task_identifier"],
                row["payload"],
                row["priority"],
                row["queue_name"],
                frozenset(row["flags"] or ()),
            )
            for row in stored
        ] == expected

    async def test_a_lone_entry_is_not_a_batch(self, utils: WorkerUtils) -> None:
        with pytest.raises(InvalidJobSpecError, match="list of jobs"):
            await utils.add_jobs(("t", {}))  # type: ignore[arg-type]
        with pytest.raises(InvalidJobSpecError, match="list of jobs"):
            await utils.add_jobs(SendEmail(to="x"))  # type: ignore[arg-type]

    async def test_any_iterable_is_a_batch(self, utils: WorkerUtils) -> None:
        from_tuple = await utils.add_jobs((("a", {}), SendEmail(to="b")))
        from_generator = await utils.add_jobs(("g", {"i": i}) for i in range(2))
        assert [job.task_identifier for job in from_tuple + from_generator] == [
            "a",
            "send_email",
            "g",
            "g",
        ]


class TestInvalidInputSendsNothing:
    @pytest.mark.parametrize(
        ("identifier", "payload"),
        [
            ("", {}),
            ("t" * 129, {}),
            ("t", {"x": float("inf")}),
            ("t", {"when": datetime.now()}),  # naive
            ("t", {1j, 2j}),
        ],
    )
    async def test_add_job(
        self, driver: DatabaseDriver, db: psycopg.Connection[Any], identifier: str, payload: Any
    ) -> None:
        counting = CountingExecutor(driver)
        with pytest.raises(InvalidJobSpecError):
            await WorkerUtils(counting).add_job(identifier, payload)
        assert counting.statements == []
        assert scalar(db, "select count(*) from graphile_worker._private_jobs") == 0

    async def test_other_methods(self, driver: DatabaseDriver) -> None:
        counting = CountingExecutor(driver)
        utils = WorkerUtils(counting)
        with pytest.raises(ConfigurationError, match="job ids must be int"):
            await utils.complete_jobs(["1"])  # type: ignore[list-item]
        with pytest.raises(ConfigurationError, match="job ids must be int"):
            await utils.permanently_fail_jobs([True])
        with pytest.raises(InvalidJobSpecError, match="naive datetime"):
            await utils.reschedule_jobs([1], run_at=datetime(2030, 1, 1))
        with pytest.raises(InvalidJobSpecError, match="attempts must be"):
            await utils.reschedule_jobs([1], attempts=-1)
        with pytest.raises(InvalidJobSpecError, match="max_attempts must be"):
            await utils.reschedule_jobs([1], max_attempts=0)
        with pytest.raises(InvalidJobSpecError, match="priority must be"):
            await utils.reschedule_jobs([1], priority=40000)
        with pytest.raises(ConfigurationError, match="job_key must be a non-empty str"):
            await utils.remove_job("")
        with pytest.raises(ConfigurationError, match="worker ids must be a list"):
            await utils.force_unlock_workers("worker-1")
        with pytest.raises(ConfigurationError, match="unknown cleanup task 'VACUUM'"):
            await utils.cleanup(tasks=["VACUUM"])
        assert counting.statements == []


# ----------------------------------------------------------------------- administration


class TestRemoveJob:
    async def test_removes_a_waiting_job(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        added = await utils.add_job("t", {"a": 1}, spec=JobSpec(job_key="k", queue_name="q"))
        removed = await utils.remove_job("k")
        assert removed is not None
        assert (removed.id, removed.task_identifier, removed.queue_name) == (added.id, "t", "q")
        assert jobs_view(db) == []

    async def test_unknown_key(self, utils: WorkerUtils) -> None:
        await utils.add_job("t", {}, spec=JobSpec(job_key="other"))
        assert await utils.remove_job("missing") is None

    async def test_running_job_loses_its_key_and_retries(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        added = await utils.add_job("t", {}, spec=JobSpec(job_key="k"))
        lock(db, added.id)
        removed = await utils.remove_job("k")
        assert removed is not None and removed.id == added.id
        assert removed.key is None
        (row,) = jobs_view(db)
        assert row["key"] is None
        assert row["attempts"] == row["max_attempts"]


class TestCompleteJobs:
    async def test_deletes_unlocked_jobs_only(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        waiting, running, untouched = [await utils.add_job("t", {"i": i}) for i in range(3)]
        lock(db, running.id)
        completed = await utils.complete_jobs([waiting.id, running.id, 999_999])
        assert [(job.id, job.task_identifier) for job in completed] == [(waiting.id, "t")]
        assert [row["id"] for row in jobs_view(db)] == [running.id, untouched.id]

    async def test_stale_locks_do_not_protect(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        job = await utils.add_job("t", {})
        db.execute(
            "update graphile_worker._private_jobs set locked_at = now() - interval '5 hours', "
            "locked_by = 'dead' where id = %s",
            (job.id,),
        )
        assert [done.id for done in await utils.complete_jobs([job.id])] == [job.id]


class TestPermanentlyFailJobs:
    async def test_uses_up_attempts(self, utils: WorkerUtils, db: psycopg.Connection[Any]) -> None:
        first, second, running = [await utils.add_job("t", {"i": i}) for i in range(3)]
        lock(db, running.id)
        failed = await utils.permanently_fail_jobs([first.id, running.id], "gave up")
        assert [(job.id, job.last_error, job.attempts) for job in failed] == [
            (first.id, "gave up", 25)
        ]
        assert failed[0].is_permanently_failed
        (default_reason,) = await utils.permanently_fail_jobs([second.id])
        assert default_reason.last_error == "Manually marked as failed"
        (empty_reason,) = await utils.permanently_fail_jobs([second.id], "")
        assert empty_reason.last_error == "Manually marked as failed"
        rows = {row["id"]: row for row in jobs_view(db)}
        assert rows[running.id]["last_error"] is None
        assert rows[running.id]["attempts"] == 1


class TestRescheduleJobs:
    async def test_changes_only_what_is_given(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        job = await utils.add_job("t", {}, spec=JobSpec(run_at=LATER, priority=5, max_attempts=7))
        running = await utils.add_job("t", {})
        lock(db, running.id)
        db.execute("update graphile_worker._private_jobs set attempts = 3 where id = %s", (job.id,))

        (moved,) = await utils.reschedule_jobs([job.id, running.id], run_at=EVEN_LATER)
        assert (moved.run_at, moved.priority, moved.attempts, moved.max_attempts) == (
            EVEN_LATER,
            5,
            3,
            7,
        )
        (changed,) = await utils.reschedule_jobs([job.id], priority=0, attempts=0, max_attempts=9)
        assert (changed.run_at, changed.priority, changed.attempts, changed.max_attempts) == (
            EVEN_LATER,
            0,
            0,
            9,
        )
        rows = {row["id"]: row for row in jobs_view(db)}
        assert (rows[job.id]["priority"], rows[job.id]["max_attempts"]) == (0, 9)
        assert rows[running.id]["run_at"] != EVEN_LATER


class TestForceUnlockWorkers:
    async def test_releases_jobs_and_queues_of_the_given_workers(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        dead = await utils.add_job("t", {}, spec=JobSpec(queue_name="q-dead"))
        alive = await utils.add_job("t", {}, spec=JobSpec(queue_name="q-alive"))
        lock(db, dead.id, "dead-worker")
        lock(db, alive.id, "live-worker")
        db.execute(
            "update graphile_worker._private_job_queues set locked_at = now(), "
            "locked_by = case queue_name when 'q-dead' then 'dead-worker' else 'live-worker' end"
        )
        await utils.force_unlock_workers(["dead-worker", "never-seen"])
        rows = {row["id"]: row for row in jobs_view(db)}
        assert rows[dead.id]["locked_by"] is rows[dead.id]["locked_at"] is None
        assert rows[alive.id]["locked_by"] == "live-worker"
        queues = dict(
            db.execute("select queue_name, locked_by from graphile_worker._private_job_queues")
        )
        assert queues == {"q-dead": None, "q-alive": "live-worker"}


class TestCleanup:
    @pytest.fixture
    def arranged(self, db: psycopg.Connection[Any]) -> None:
        """Tasks and queues in every state the cleanup tasks care about."""
        db.execute(
            """
            insert into graphile_worker._private_tasks (identifier)
            values ('used'), ('unused'), ('kept'), ('failed_only');
            insert into graphile_worker._private_job_queues (queue_name, locked_at, locked_by)
            values ('used_q', null, null), ('unused_q', null, null),
                   ('locked_q', now(), 'w'), ('failed_q', null, null);
            insert into graphile_worker._private_jobs
              (task_id, job_queue_id, attempts, max_attempts, locked_at, locked_by)
            select task.id, queue.id, spec.attempts, 5, spec.locked_at, spec.locked_by
            from (values
                ('used', 'used_q', 0, null::timestamptz, null),
                ('used', null, 5, now(), 'w'),
                ('failed_only', 'failed_q', 5, null, null)
              ) as spec(identifier, queue_name, attempts, locked_at, locked_by)
            join graphile_worker._private_tasks as task on task.identifier = spec.identifier
            left join graphile_worker._private_job_queues as queue
              on queue.queue_name = spec.queue_name;
            """
        )

    @staticmethod
    def names(db: psycopg.Connection[Any]) -> tuple[set[str], set[str], int]:
        tasks = {
            row[0] for row in db.execute("select identifier from graphile_worker._private_tasks")
        }
        queues = {
            row[0]
            for row in db.execute("select queue_name from graphile_worker._private_job_queues")
        }
        return tasks, queues, scalar(db, "select count(*) from graphile_worker._private_jobs")

    @pytest.mark.usefixtures("arranged")
    async def test_gc_task_identifiers(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        deleted = await utils.cleanup(
            tasks=[CleanupTask.GC_TASK_IDENTIFIERS], task_identifiers_to_keep=["kept"]
        )
        assert deleted == {CleanupTask.GC_TASK_IDENTIFIERS: 1}
        tasks, queues, jobs = self.names(db)
        assert tasks == {"used", "kept", "failed_only"}
        assert (len(queues), jobs) == (4, 3)

    @pytest.mark.usefixtures("arranged")
    async def test_gc_job_queues(self, utils: WorkerUtils, db: psycopg.Connection[Any]) -> None:
        assert await utils.cleanup(tasks=["GC_JOB_QUEUES"]) == {CleanupTask.GC_JOB_QUEUES: 1}
        tasks, queues, jobs = self.names(db)
        assert queues == {"used_q", "locked_q", "failed_q"}
        assert (len(tasks), jobs) == (4, 3)

    @pytest.mark.usefixtures("arranged")
    async def test_delete_permafailed_jobs(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        assert await utils.cleanup(tasks=["DELETE_PERMAFAILED_JOBS"]) == {
            CleanupTask.DELETE_PERMAFAILED_JOBS: 1
        }
        # The locked job on its last attempt stays; the failed one goes.
        assert (
            scalar(db, "select count(*) from graphile_worker._private_jobs where attempts = 5") == 1
        )
        assert self.names(db)[2] == 2

    @pytest.mark.usefixtures("arranged")
    async def test_all_three_run_jobs_first(
        self, utils: WorkerUtils, db: psycopg.Connection[Any]
    ) -> None:
        deleted = await utils.cleanup(
            tasks=["GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS", "DELETE_PERMAFAILED_JOBS"]
        )
        assert list(deleted) == [
            CleanupTask.DELETE_PERMAFAILED_JOBS,
            CleanupTask.GC_TASK_IDENTIFIERS,
            CleanupTask.GC_JOB_QUEUES,
        ]
        assert self.names(db) == ({"used"}, {"used_q", "locked_q"}, 2)

    @pytest.mark.usefixtures("arranged")
    async def test_node_defaults(self, utils: WorkerUtils, db: psycopg.Connection[Any]) -> None:
        assert list(await utils.cleanup()) == [CleanupTask.GC_JOB_QUEUES]
        assert list(await utils.cleanup(task_identifiers_to_keep=["kept"])) == [
            CleanupTask.GC_TASK_IDENTIFIERS,
            CleanupTask.GC_JOB_QUEUES,
        ]
        assert self.names(db)[0] == {"used", "kept", "failed_only"}


# ----------------------------------------------------------------- schemas and lifecycle


class TestSchemas:
    async def test_custom_schema(self, driver: DatabaseDriver, db: psycopg.Connection[Any]) -> None:
        utils = WorkerUtils(driver, schema="Custom Jobs")
        report = await utils.migrate()
        assert report.schema == "Custom Jobs" and report.current_version == 20
        job = await utils.add_job("t", {"in": "custom"}, spec=JobSpec(queue_name="q"))
        (batch_job,) = await utils.add_jobs([("u", {}, JobSpec(job_key="k"))])
        assert await utils.remove_job("k") == batch_job
        assert [row["payload"] for row in jobs_view(db, "Custom Jobs")] == [{"in": "custom"}]
        assert jobs_view(db) == []
        assert [done.id for done in await utils.complete_jobs([job.id])] == [job.id]

    async def test_migrate_is_idempotent(self, utils: WorkerUtils) -> None:
        report = await utils.migrate()
        assert report.applied == () and report.current_version == 20

    @pytest.mark.parametrize("schema", ["", " padded", "pg_jobs", "x" * 64])
    def test_invalid_schema_names(
        self, schema: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        with pytest.raises(InvalidSchemaNameError):
            SyncWorkerUtils(sync_connection, schema=schema)

    async def test_missing_schema_is_a_query_error(self, driver: DatabaseDriver) -> None:
        with pytest.raises(QueryError) as caught:
            await WorkerUtils(driver, schema="not_migrated").add_job("t", {})
        assert caught.value.sqlstate is not None


class TestLifecycle:
    async def test_connect_owns_its_driver(
        self, database_url: str, driver_name: str, db: psycopg.Connection[Any]
    ) -> None:
        async with await WorkerUtils.connect(database_url, driver=driver_name) as utils:
            await utils.add_job("t", {})
        assert scalar(db, "select count(*) from graphile_worker._private_jobs") == 1
        # A second close is harmless.
        await utils.aclose()

    async def test_borrowed_driver_stays_open(self, driver: DatabaseDriver) -> None:
        async with WorkerUtils(driver) as utils:
            await utils.add_job("t", {})
        assert await driver.fetchval("select count(*) from graphile_worker._private_jobs") == 1

    def test_unsupported_objects(self) -> None:
        with pytest.raises(ConfigurationError, match="WorkerUtils takes"):
            WorkerUtils(object())  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="SyncWorkerUtils takes"):
            SyncWorkerUtils("postgresql://nowhere")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- the sync twin


class TestSyncWorkerUtils:
    @pytest.fixture
    def sync_utils(self, sync_connection: psycopg.Connection[Any]) -> SyncWorkerUtils:
        return SyncWorkerUtils(sync_connection)

    def test_every_method(self, sync_utils: SyncWorkerUtils, database_url: str) -> None:
        with psycopg.connect(database_url, autocommit=True) as db:
            job = sync_utils.add_job(SendEmail(to="s"), spec=JobSpec(job_key="k", flags=["x"]))
            raw = sync_utils.add_job("raw", [1], spec=JobSpec(queue_name="q"))
            batch = sync_utils.add_jobs([("b", {"i": 1}), ResizeImage(url="u", width=1)])
            assert [row["task_identifier"] for row in jobs_view(db)] == [
                "send_email",
                "raw",
                "b",
                "resize_image",
            ]
            assert (job.flags, raw.queue_name) == (frozenset({"x"}), "q")
            assert sync_utils.remove_job("k") is not None
            assert [j.id for j in sync_utils.complete_jobs([raw.id])] == [raw.id]
            (failed,) = sync_utils.permanently_fail_jobs([batch[0].id], "no")
            assert failed.last_error == "no"
            (moved,) = sync_utils.reschedule_jobs([batch[0].id], attempts=0, run_at=LATER)
            assert (moved.attempts, moved.run_at) == (0, LATER)
            lock(db, batch[1].id, "gone")
            sync_utils.force_unlock_workers(["gone"])
            assert jobs_view(db)[1]["locked_by"] is None
            assert sync_utils.cleanup(tasks=["GC_TASK_IDENTIFIERS"]) == {
                CleanupTask.GC_TASK_IDENTIFIERS: 2
            }
            assert sync_utils.migrate().applied == ()

    def test_custom_schema_on_an_autocommit_connection(
        self, sync_connection: psycopg.Connection[Any]
    ) -> None:
        utils = SyncWorkerUtils(sync_connection, schema="sync_custom")
        assert utils.migrate().current_version == 20
        utils.add_job("t", {"n": 1})
        assert [row["payload"] for row in jobs_view(sync_connection, "sync_custom")] == [{"n": 1}]

    def test_inside_a_psycopg_transaction(self, database_url: str) -> None:
        with (
            psycopg.connect(database_url) as connection,
            psycopg.connect(database_url, autocommit=True) as other,
        ):
            utils = SyncWorkerUtils(connection)
            utils.add_job("t", {"n": 1})
            assert scalar(connection, "select count(*) from graphile_worker.jobs") == 1
            assert scalar(other, "select count(*) from graphile_worker.jobs") == 0
            connection.rollback()
            assert scalar(other, "select count(*) from graphile_worker.jobs") == 0
            utils.add_job("t", {"n": 2})
            connection.commit()
            assert [row["payload"] for row in jobs_view(other)] == [{"n": 2}]

    def test_connect(self, database_url: str, sync_connection: psycopg.Connection[Any]) -> None:
        with SyncWorkerUtils.connect(
            database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        ) as utils:
            utils.add_job("t", {})
        assert scalar(sync_connection, "select count(*) from graphile_worker._private_jobs") == 1

    def test_connect_needs_a_url(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        with pytest.raises(ConfigurationError, match="DATABASE_URL"):
            SyncWorkerUtils.connect()


def test_twins_have_the_same_methods() -> None:
    """The async and sync utilities offer the same calls with the same parameters."""

    def public(cls: type) -> dict[str, inspect.Signature]:
        lifecycle = {"connect", "close", "aclose"}
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name not in lifecycle
        }

    async_methods, sync_methods = public(WorkerUtils), public(SyncWorkerUtils)
    assert async_methods.keys() == sync_methods.keys()
    for name, signature in async_methods.items():
        assert list(signature.parameters.values()) == list(
            sync_methods[name].parameters.values()
        ), name
        assert inspect.iscoroutinefunction(getattr(WorkerUtils, name)) or name == "using"


def test_using_picks_the_family(sync_connection: psycopg.Connection[Any]) -> None:
    base = SyncWorkerUtils(sync_connection, schema="elsewhere")
    again = base.using(sync_connection)
    assert isinstance(again, SyncWorkerUtils) and again.schema == "elsewhere"
    with pytest.raises(ConfigurationError, match="cannot run graphile-worker utilities"):
        base.using(42)  # type: ignore[call-overload]


class TestAddJobsWhenThePlannerReorders:
    """Node's add_jobs may return rows in another order than the specs (hash joins do).

    Our own add_jobs inserts in batch order, but a database migrated by Node runs Node's
    function; forcing a hash join over a big tasks table makes it reorder every time, so
    these tests prove the results are still paired with the right specs.
    """

    SCHEMA = "node_jobs"

    @pytest.fixture
    def reordering(
        self, sync_connection: psycopg.Connection[Any], node_graphile_worker: Path
    ) -> SyncWorkerUtils:
        apply_node_migrations(sync_connection, self.SCHEMA, 20, package=node_graphile_worker)
        sync_connection.execute(
            f"""
            insert into {self.SCHEMA}._private_tasks (identifier)
            select 'filler_' || n from generate_series(1, 2000) as n;
            insert into {self.SCHEMA}._private_tasks (identifier)
            values ('t3'), ('t2'), ('t1'), ('t0');
            analyze {self.SCHEMA}._private_tasks;
            set enable_nestloop = off;
            set enable_mergejoin = off;
            """.encode()
        )
        return SyncWorkerUtils(sync_connection, schema=self.SCHEMA)

    def test_raw_rows_really_come_back_reordered(
        self, reordering: SyncWorkerUtils, sync_connection: psycopg.Connection[Any]
    ) -> None:
        specs = json.dumps([{"identifier": f"t{i % 4}", "payload": {"i": i}} for i in range(8)])
        rows = sync_connection.execute(
            f"select payload from {self.SCHEMA}.add_jobs(array("
            f"select json_populate_recordset(null::{self.SCHEMA}.job_spec, %s::json)))".encode(),
            (specs,),
        ).fetchall()
        assert [row[0]["i"] for row in rows] != list(range(8))

    @pytest.mark.parametrize("prefix", ["t", "new"])
    def test_results_follow_the_specs(
        self,
        reordering: SyncWorkerUtils,
        sync_connection: psycopg.Connection[Any],
        prefix: str,
    ) -> None:
        entries: list[tuple[str, object, JobSpec | None]] = [
            (f"{prefix}{i % 4}", {"i": i}, JobSpec(queue_name=f"q{i % 3}")) for i in range(8)
        ]
        jobs = reordering.add_jobs(entries)
        assert [(job.task_identifier, job.payload, job.queue_name) for job in jobs] == [
            (identifier, payload, spec.queue_name if spec else None)
            for identifier, payload, spec in entries
        ]
        stored = {row["id"]: row for row in jobs_view(sync_connection, self.SCHEMA)}
        assert all(stored[job.id]["task_identifier"] == job.task_identifier for job in jobs)
        assert all(stored[job.id]["payload"] == job.payload for job in jobs)


class TestBatchOrdering:
    """``order_like_specs`` on its own: pairing returned rows with specs."""

    @staticmethod
    def row(job_id: int, prepared: PreparedJob, **overrides: Any) -> Job:
        fields: dict[str, Any] = {
            "id": job_id,
            "task_identifier": prepared.identifier,
            "queue_name": prepared.spec.queue_name,
            "payload": json.loads(prepared.payload_json),
            "priority": prepared.spec.priority or 0,
            "run_at": LATER,
            "attempts": 0,
            "max_attempts": prepared.spec.max_attempts or 25,
            "last_error": None,
            "created_at": LATER,
            "updated_at": LATER,
            "key": prepared.spec.job_key,
            "locked_at": None,
            "locked_by": None,
            "revision": 0,
            "flags": frozenset(prepared.spec.flags or ()),
        }
        fields.update(overrides)
        return Job(**fields)

    def test_reversed_rows_are_put_back(self) -> None:
        specs = [prepare_job("t", {"i": i}, JobSpec(priority=i % 2)) for i in range(5)]
        rows = [self.row(10 + i, spec) for i, spec in enumerate(specs)]
        assert order_like_specs(specs, rows[::-1]) == rows

    def test_keyed_jobs_match_by_key_even_when_merged(self) -> None:
        specs = [
            prepare_job("t", [2], JobSpec(job_key="a")),
            prepare_job("t", [3], JobSpec(job_key="b")),
        ]
        merged = self.row(1, specs[0], payload=[1, 2])
        other = self.row(2, specs[1])
        assert order_like_specs(specs, [other, merged]) == [merged, other]

    def test_identical_specs_are_interchangeable(self) -> None:
        specs = [prepare_job("t", {}, None) for _ in range(3)]
        rows = [self.row(i, spec) for i, spec in enumerate(specs)]
        assert {job.id for job in order_like_specs(specs, rows[::-1])} == {0, 1, 2}
