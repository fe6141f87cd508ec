"""Batched completion and failure: many outcomes in one statement, nothing lost on stop, on
cancellation or on a lost connection, hooks and counts as without batching.

Statements are counted by the database itself: statement-level triggers with transition
tables record how many jobs each ``DELETE`` removed and how many failed attempts each
``UPDATE`` recorded.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from graphile_worker import LocalQueueOptions
from graphile_worker.errors import ConfigurationError
from graphile_worker.hooks import JobComplete, JobFail, JobPermanentlyFail, Observer
from graphile_worker.spec import JobSpec
from graphile_worker.task import task
from graphile_worker.worker import RunOnceSummary, Worker, WorkerOptions

from .conftest import eventually, job_row, job_rows, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio

STATEMENT_COUNTERS = """
create table public.test_statements (kind text not null, jobs int not null);

create function public.test_count_deletes() returns trigger language plpgsql as $$
begin
  insert into public.test_statements
    select 'complete', count(*) from old_rows having count(*) > 0;
  return null;
end $$;

create function public.test_count_failures() returns trigger language plpgsql as $$
begin
  insert into public.test_statements
    select 'fail', count(*) from new_rows
    where new_rows.locked_by is null and new_rows.last_error is not null
    having count(*) > 0;
  return null;
end $$;

create trigger test_count_deletes after delete on graphile_worker._private_jobs
  referencing old table as old_rows for each statement
  execute function public.test_count_deletes();

create trigger test_count_failures after update on graphile_worker._private_jobs
  referencing new table as new_rows for each statement
  execute function public.test_count_failures();
"""


@pytest.fixture
def statements(sync_connection: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Install the statement counters; read them with :func:`recorded`."""
    sync_connection.execute(STATEMENT_COUNTERS)
    return sync_connection


def recorded(connection: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    rows = connection.execute("select kind, jobs from public.test_statements").fetchall()
    return [(kind, jobs) for kind, jobs in rows]


class Outcomes(Observer):
    def __init__(self) -> None:
        self.completed: list[int] = []
        self.failed: list[JobFail] = []
        self.permanently_failed: list[int] = []

    def on_job_complete(self, event: JobComplete) -> None:
        self.completed.append(event.job.id)

    def on_job_fail(self, event: JobFail) -> None:
        self.failed.append(event)

    def on_job_permanently_fail(self, event: JobPermanentlyFail) -> None:
        self.permanently_failed.append(event.job.id)


class Together:
    """Tasks whose ``count`` jobs wait until ``expected`` of them have started, so that
    they finish at about the same moment (``succeed``, or ``fail`` with an error)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.started = 0
        self.all_started = anyio.Event()
        self.runs: dict[int, int] = {}

        async def arrive(payload: dict[str, int]) -> None:
            self.runs[payload["n"]] = self.runs.get(payload["n"], 0) + 1
            self.started += 1
            if self.started >= self.expected:
                self.all_started.set()
            await self.all_started.wait()

        @task("succeed")
        async def succeed(payload: dict[str, int]) -> None:
            await arrive(payload)

        @task("fail")
        async def fail(payload: dict[str, int]) -> None:
            await arrive(payload)
            raise RuntimeError(f"failure {payload['n']}")

        self.tasks: list[object] = [succeed, fail]


async def test_successes_finishing_together_are_deleted_in_one_statement(
    driver: DatabaseDriver, utils: WorkerUtils, statements: psycopg.Connection[Any]
) -> None:
    together = Together(5)
    outcomes = Outcomes()
    jobs = await utils.add_jobs([("succeed", {"n": n}) for n in range(5)])
    summary = await Worker(
        options(
            driver,
            together.tasks,
            concurrency=5,
            complete_job_batch_delay=0.2,
            hooks=[outcomes],
        )
    ).run_once()
    assert recorded(statements) == [("complete", 5)]
    assert summary == RunOnceSummary(completed=5)
    assert sorted(outcomes.completed) == sorted(job.id for job in jobs)
    assert job_rows(statements) == []


async def test_without_batching_each_success_is_its_own_statement(
    driver: DatabaseDriver, utils: WorkerUtils, statements: psycopg.Connection[Any]
) -> None:
    together = Together(3)
    await utils.add_jobs([("succeed", {"n": n}) for n in range(3)])
    summary = await Worker(options(driver, together.tasks, concurrency=3)).run_once()
    assert recorded(statements) == [("complete", 1)] * 3
    assert summary == RunOnceSummary(completed=3)


async def test_failures_finishing_together_are_recorded_in_one_statement(
    driver: DatabaseDriver, utils: WorkerUtils, statements: psycopg.Connection[Any]
) -> None:
    together = Together(3)
    outcomes = Outcomes()
    retried = [await utils.add_job("fail", {"n": n}) for n in range(2)]
    final = await utils.add_job("fail", {"n": 2}, spec=JobSpec(max_attempts=1))
    summary = await Worker(
        options(
            driver,
            together.tasks,
            concurrency=3,
            fail_job_batch_delay=0.2,
            hooks=[outcomes],
        )
    ).run_once()
    assert recorded(statements) == [("fail", 3)]
    assert summary == RunOnceSummary(failed=3, permanently_failed=1)
    for n, job in enumerate([*retried, final]):
        row = job_row(statements, job.id)
        assert row is not None
        assert row["attempts"] == 1
        assert row["last_error"] == f"failure {n}"
        assert row["locked_by"] is None
    next_run_at = {event.job.id: event.next_run_at for event in outcomes.failed}
    for job in retried:
        row = job_row(statements, job.id)
        assert row is not None and next_run_at[job.id] == row["run_at"]
    assert next_run_at[final.id] is None
    assert outcomes.permanently_failed == [final.id]


async def test_outcomes_waiting_in_a_batch_are_written_when_the_worker_stops(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    together = Together(1)
    outcomes = Outcomes()
    worker = Worker(
        options(
            driver,
            together.tasks,
            concurrency=4,
            complete_job_batch_delay=60.0,
            fail_job_batch_delay=60.0,
            hooks=[outcomes],
        )
    )
    with anyio.fail_after(10):
        async with worker:
            await utils.add_jobs([("succeed", {"n": n}) for n in range(3)])
            await utils.add_job("fail", {"n": 3})
            await eventually(lambda: len(together.runs) == 4)
            # Finished, but their outcomes wait for a batch a minute away.
            assert len(job_rows(sync_connection)) == 4
    rows = job_rows(sync_connection)
    assert [(row["attempts"], row["last_error"], row["locked_by"]) for row in rows] == [
        (1, "failure 3", None)
    ]
    assert len(outcomes.completed) == 3
    assert len(outcomes.failed) == 1
    assert together.runs == dict.fromkeys(range(4), 1)


async def test_outcomes_waiting_in_a_batch_are_written_when_the_run_is_cancelled(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    together = Together(1)
    worker = Worker(options(driver, together.tasks, concurrency=2, complete_job_batch_delay=60.0))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await utils.add_jobs([("succeed", {"n": n}) for n in range(2)])
            # Both handlers have returned and their outcomes wait in the batch (a handler
            # that has only started would be cancelled and released instead).
            await eventually(lambda: waiting_outcomes(worker) == 2)
            group.cancel_scope.cancel()
    assert job_rows(sync_connection) == []


def waiting_outcomes(worker: Worker) -> int:
    """Outcomes the running worker holds in memory, not yet written."""
    run = worker._run
    return 0 if run is None else run._outcomes.unrecorded


async def test_run_once_waits_for_a_batch_that_unlocks_a_named_queue(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    together = Together(1)
    for n in range(4):
        await utils.add_job("succeed", {"n": n}, spec=JobSpec(queue_name="serial"))
    summary = await Worker(
        options(driver, together.tasks, concurrency=4, complete_job_batch_delay=0.05)
    ).run_once()
    assert summary == RunOnceSummary(completed=4)
    assert job_rows(sync_connection) == []


async def test_a_batch_is_retried_after_the_worker_loses_its_connections(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    together = Together(1)
    outcomes = Outcomes()
    worker = Worker(
        options(
            driver, together.tasks, concurrency=2, complete_job_batch_delay=0.5, hooks=[outcomes]
        )
    )
    with anyio.fail_after(20):
        async with worker:
            job = await utils.add_job("succeed", {"n": 1})
            await eventually(lambda: len(together.runs) == 1)
            # Every connection but ours dies before the batch is written.
            sync_connection.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where datname = current_database() and pid <> pg_backend_pid()"
            )
            await eventually(lambda: job_row(sync_connection, job.id) is None, within=15)
    assert outcomes.completed == [job.id]
    assert together.runs == {1: 1}


def refuse_deletes(connection: psycopg.Connection[Any], *, times: int, sqlstate: str) -> None:
    """Make the first ``times`` statements deleting jobs fail with ``sqlstate``.

    A sequence counts the attempts: unlike a table, it is not rolled back with them.
    """
    connection.execute(
        f"""
        create sequence public.test_delete_attempts;
        create function public.test_refuse_delete() returns trigger language plpgsql as $$
        begin
          if nextval('public.test_delete_attempts') <= {times} then
            raise exception 'refused on purpose' using errcode = '{sqlstate}';
          end if;
          return null;
        end $$;
        create trigger test_refuse_delete before delete on graphile_worker._private_jobs
          for each statement execute function public.test_refuse_delete();
        """
    )


async def test_a_batch_refused_for_a_passing_reason_is_retried_until_written(
    driver: DatabaseDriver, utils: WorkerUtils, statements: psycopg.Connection[Any]
) -> None:
    together = Together(1)
    outcomes = Outcomes()
    refuse_deletes(statements, times=2, sqlstate="40001")  # serialization_failure
    job = await utils.add_job("succeed", {"n": 1})
    summary = await Worker(
        options(driver, together.tasks, complete_job_batch_delay=0, hooks=[outcomes])
    ).run_once()
    assert summary == RunOnceSummary(completed=1)
    assert recorded(statements) == [("complete", 1)]
    assert statements.execute("select last_value from public.test_delete_attempts").fetchone() == (
        3,
    )
    assert outcomes.completed == [job.id]
    assert together.runs == {1: 1}


async def test_no_job_is_claimed_while_a_batch_is_being_retried(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    together = Together(1)
    # Refused 4 times: the retries take 0.1 + 0.2 + 0.5 + 1 seconds.
    refuse_deletes(sync_connection, times=4, sqlstate="40001")
    worker = Worker(options(driver, together.tasks, complete_job_batch_delay=0))
    with caplog.at_level(logging.WARNING, logger="graphile_worker.worker"), anyio.fail_after(15):
        async with worker:
            first = await utils.add_job("succeed", {"n": 1})
            await eventually(lambda: "Could not complete a batch" in caplog.text)
            second = await utils.add_job("succeed", {"n": 2})
            await anyio.sleep(0.3)
            # The outcome of the first cannot be written yet: the second waits, unclaimed.
            row = job_row(sync_connection, second.id)
            assert row is not None and row["locked_by"] is None
            await eventually(lambda: job_rows(sync_connection) == [], within=10)
    assert job_row(sync_connection, first.id) is None
    assert together.runs == {1: 1, 2: 1}


async def test_a_batch_refused_for_good_is_logged_with_its_jobs(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    together = Together(2)
    outcomes = Outcomes()
    refuse_deletes(sync_connection, times=1000, sqlstate="P0001")  # raise_exception
    jobs = await utils.add_jobs([("succeed", {"n": n}) for n in range(2)])
    worker = Worker(
        options(
            driver,
            together.tasks,
            concurrency=2,
            complete_job_batch_delay=0.2,
            hooks=[outcomes],
        )
    )
    with caplog.at_level(logging.ERROR, logger="graphile_worker.worker"):
        summary = await worker.run_once()
    assert summary == RunOnceSummary()
    assert outcomes.completed == []
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    named = errors[0].partition(" after ")[0].removeprefix("Could not complete job(s) ")
    assert sorted(named.split(", ")) == sorted(str(job.id) for job in jobs)
    assert "refused on purpose" in errors[0]
    # Still locked by this worker: the stale-lock reset will free them, as the log says.
    assert [row["locked_by"] for row in job_rows(sync_connection)] == [worker.worker_id] * 2


async def test_every_job_runs_once_with_a_local_queue_and_batches_of_the_moment(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    runs: dict[int, int] = {}

    @task("mixed")
    async def mixed(payload: dict[str, int]) -> None:
        runs[payload["n"]] = runs.get(payload["n"], 0) + 1
        if payload["n"] % 10 == 0:
            raise RuntimeError("every tenth fails")

    await utils.add_jobs([("mixed", {"n": n}, JobSpec(max_attempts=1)) for n in range(300)])
    summary = await Worker(
        options(
            driver,
            [mixed],
            concurrency=8,
            local_queue=LocalQueueOptions(size=50),
            complete_job_batch_delay=0,
            fail_job_batch_delay=0,
        )
    ).run_once()
    assert summary == RunOnceSummary(completed=270, failed=30, permanently_failed=30)
    assert runs == dict.fromkeys(range(300), 1)
    rows = job_rows(sync_connection)
    assert len(rows) == 30
    assert all(row["locked_by"] is None and row["attempts"] == 1 for row in rows)


class TestOptions:
    @pytest.mark.parametrize("name", ["complete_job_batch_delay", "fail_job_batch_delay"])
    @pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "0", True])
    def test_a_batch_delay_must_be_none_or_seconds(self, name: str, value: object) -> None:
        with pytest.raises(ConfigurationError, match=name):
            WorkerOptions(tasks=Together(1).tasks, **{name: value})  # type: ignore[arg-type]

    def test_a_batch_delay_of_zero_is_allowed(self) -> None:
        built = WorkerOptions(
            tasks=Together(1).tasks, complete_job_batch_delay=0, fail_job_batch_delay=0
        )
        assert built.complete_job_batch_delay == 0.0
        assert built.fail_job_batch_delay == 0.0
