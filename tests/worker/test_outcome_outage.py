"""Outcomes outlive an outage: retried with back-off, no claims meanwhile, given up loudly.

An outage is made real: the test database stops accepting connections (``ALTER DATABASE
... ALLOW_CONNECTIONS false``, run from the server's admin database) and every backend on
it but the test's own reading connection is terminated, so the worker's statements fail
the way they do while a server restarts. A failure that only hits outcome writes (so that
claiming still works, and not claiming is a choice) comes from a statement trigger that
refuses deletes with a serialisation failure until the test lifts it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
import pytest
from psycopg import sql

from graphile_worker.errors import ConfigurationError, ConnectionLostError, QueryError
from graphile_worker.task import task
from graphile_worker.worker import Worker, WorkerOptions, _batcher
from graphile_worker.worker._batcher import (
    FINAL_RETRY_WINDOW,
    RETRY_FIRST_DELAY,
    retry_delay,
    worth_retrying,
)
from graphile_worker.worker._fetch import JobSource

from .conftest import eventually, job_row, job_rows, options

if TYPE_CHECKING:
    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.embedded import Cluster
    from graphile_worker.spec import Job

OLD_RETRY_SECONDS = 9.0
"""How long an outcome written without batching used to be retried before it was lost."""

LONG_OUTAGE = OLD_RETRY_SECONDS + 1.0


@contextmanager
def outage(cluster: Cluster, keep: psycopg.Connection[Any]) -> Iterator[None]:
    """The test database refuses new sessions and loses its others (all but ``keep``)."""
    database = keep.info.dbname
    allow = sql.SQL("alter database {} with allow_connections {}")
    with psycopg.connect(cluster.admin_url, autocommit=True) as admin:
        admin.execute(allow.format(sql.Identifier(database), sql.SQL("false")))
        try:
            admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where datname = %s and pid <> %s",
                [database, keep.info.backend_pid],
            )
            yield
        finally:
            admin.execute(allow.format(sql.Identifier(database), sql.SQL("true")))


def add_job(connection: psycopg.Connection[Any], n: int, *, fail: bool = False) -> int:
    """Queue a ``finish`` job over the test's own connection; returns its id."""
    payload = psycopg.types.json.Json({"n": n, "fail": fail})
    row = connection.execute(
        "select (graphile_worker.add_job('finish', %s::json)).id", [payload]
    ).fetchone()
    assert row is not None
    return int(row[0])


class Finishing:
    """The ``finish`` task: its jobs run until :attr:`release` is set, then succeed, or fail
    when their payload says so. Runs are counted per ``n``."""

    def __init__(self) -> None:
        self.runs: dict[int, int] = {}
        self.release = anyio.Event()

        @task("finish")
        async def finish(payload: dict[str, Any]) -> None:
            n = payload["n"]
            self.runs[n] = self.runs.get(n, 0) + 1
            await self.release.wait()
            if payload["fail"]:
                raise RuntimeError(f"failure {n}")

        self.tasks: list[object] = [finish]


REFUSE_DELETES = """
create table public.test_refusal (refuse boolean not null);
insert into public.test_refusal values (true);
create sequence public.test_delete_attempts;
create function public.test_refuse_delete() returns trigger language plpgsql as $$
begin
  perform nextval('public.test_delete_attempts');  -- not rolled back with the statement
  if (select refuse from public.test_refusal) then
    raise exception 'refused on purpose' using errcode = '40001';
  end if;
  return null;
end $$;
create trigger test_refuse_delete before delete on graphile_worker._private_jobs
  for each statement execute function public.test_refuse_delete();
"""


def delete_attempts(connection: psycopg.Connection[Any]) -> int:
    row = connection.execute(
        "select case when is_called then last_value else 0 end from public.test_delete_attempts"
    ).fetchone()
    assert row is not None
    return int(row[0])


def locked_by(connection: psycopg.Connection[Any], job_id: int) -> str | None:
    row = job_row(connection, job_id)
    return None if row is None else row["locked_by"]


def give_up_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "Giving up" in record.getMessage()]


class InFlightClaim:
    """Holds the claim sent after the first job was taken until :attr:`open` is set.

    The database is real; only the moment the statement leaves is chosen, as a slow
    connection or a busy machine would choose it.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.waiting = anyio.Event()
        self.open = anyio.Event()
        taken = False
        claim = JobSource.claim

        async def held_claim(source: JobSource, limit: int, **kwargs: Any) -> list[Job]:
            nonlocal taken
            if taken and not self.open.is_set():
                self.waiting.set()
                await self.open.wait()
            claimed = await claim(source, limit, **kwargs)
            taken = taken or bool(claimed)
            return claimed

        monkeypatch.setattr(JobSource, "claim", held_claim)


def settled(connection: psycopg.Connection[Any], succeeded: int, failed: int) -> bool:
    """The success is deleted; the failure is recorded (and unlocked)."""
    row = job_row(connection, failed)
    return (
        job_row(connection, succeeded) is None
        and row is not None
        and row["last_error"] == "failure 2"
        and row["locked_by"] is None
    )


class TestOutage:
    pytestmark = pytest.mark.anyio

    async def test_outcomes_owed_through_an_outage_longer_than_the_old_retries_are_written(
        self,
        driver: DatabaseDriver,
        sync_connection: psycopg.Connection[Any],
        pg_cluster: Cluster,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        jobs = Finishing()
        # A success without batching and a failure with it: both ways of writing.
        worker = Worker(
            options(
                driver,
                jobs.tasks,
                concurrency=2,
                fail_job_batch_delay=0.0,
                outcome_retry_max_delay=1.0,  # back soon after the database is
            )
        )
        caplog.set_level(logging.WARNING, logger="graphile_worker.worker")
        async with worker:
            succeeded = add_job(sync_connection, 1)
            failed = add_job(sync_connection, 2, fail=True)
            await eventually(lambda: len(jobs.runs) == 2)
            with outage(pg_cluster, sync_connection):
                jobs.release.set()
                await anyio.sleep(LONG_OUTAGE)
                rows = job_rows(sync_connection)
                assert [row["locked_by"] for row in rows] == [worker.worker_id] * 2
            await eventually(lambda: settled(sync_connection, succeeded, failed), within=15)
        assert jobs.runs == {1: 1, 2: 1}
        assert "Could not record the outcome of job" in caplog.text
        assert give_up_lines(caplog) == []

    async def test_outcomes_owed_through_a_short_outage_are_written(
        self,
        driver: DatabaseDriver,
        sync_connection: psycopg.Connection[Any],
        pg_cluster: Cluster,
    ) -> None:
        jobs = Finishing()
        # The other arrangement: a batched success and a failure without batching.
        worker = Worker(
            options(
                driver,
                jobs.tasks,
                concurrency=2,
                complete_job_batch_delay=0.05,
                outcome_retry_max_delay=0.5,
            )
        )
        async with worker:
            succeeded = add_job(sync_connection, 1)
            failed = add_job(sync_connection, 2, fail=True)
            await eventually(lambda: len(jobs.runs) == 2)
            with outage(pg_cluster, sync_connection):
                jobs.release.set()
                await anyio.sleep(2.0)
            await eventually(lambda: settled(sync_connection, succeeded, failed), within=15)
        assert jobs.runs == {1: 1, 2: 1}

    async def test_no_job_is_claimed_while_an_unbatched_outcome_is_owed(
        self, driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
    ) -> None:
        sync_connection.execute(REFUSE_DELETES)
        jobs = Finishing()
        jobs.release.set()
        # One slot: no claim can be in flight when the write fails (with more slots, one
        # sent before it may be answered after; the next test holds what that brings).
        worker = Worker(options(driver, jobs.tasks, concurrency=1, outcome_retry_max_delay=0.1))
        async with worker:
            first = add_job(sync_connection, 1)
            await eventually(lambda: delete_attempts(sync_connection) >= 2)
            second = add_job(sync_connection, 2)
            # The slot is free, and the notification came; but an outcome is owed, and the
            # worker keeps trying to write it rather than take on more.
            tried = delete_attempts(sync_connection)
            await eventually(lambda: delete_attempts(sync_connection) >= tried + 3)
            row = job_row(sync_connection, second)
            assert row is not None and row["locked_by"] is None
            assert jobs.runs == {1: 1}
            sync_connection.execute("update public.test_refusal set refuse = false")
            await eventually(lambda: job_rows(sync_connection) == [])
        assert job_row(sync_connection, first) is None
        assert jobs.runs == {1: 1, 2: 1}

    @pytest.mark.parametrize("then", ["written", "stopped"])
    async def test_jobs_claimed_by_a_claim_in_flight_when_trouble_began_wait_unstarted(
        self,
        driver: DatabaseDriver,
        sync_connection: psycopg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch,
        then: str,
    ) -> None:
        sync_connection.execute(REFUSE_DELETES)
        monkeypatch.setattr(_batcher, "FINAL_RETRY_WINDOW", 0.5)
        jobs = Finishing()
        gate = InFlightClaim(monkeypatch)
        worker = Worker(options(driver, jobs.tasks, concurrency=2, outcome_retry_max_delay=0.1))
        async with worker:
            first = add_job(sync_connection, 1)
            await eventually(lambda: jobs.runs == {1: 1})
            # The claim for the free slot is sent; it is answered only after the first
            # job's outcome has failed to be written and a second job has come.
            await eventually(gate.waiting.is_set)
            jobs.release.set()
            await eventually(lambda: delete_attempts(sync_connection) >= 2)
            second = add_job(sync_connection, 2)
            gate.open.set()
            await eventually(lambda: locked_by(sync_connection, second) == worker.worker_id)
            tried = delete_attempts(sync_connection)
            await eventually(lambda: delete_attempts(sync_connection) >= tried + 3)
            assert jobs.runs == {1: 1}
            if then == "written":
                sync_connection.execute("update public.test_refusal set refuse = false")
                await eventually(lambda: job_rows(sync_connection) == [])
        if then == "written":
            assert jobs.runs == {1: 1, 2: 1}
            return
        # Stopped while still owing: the held job goes back as it came, its attempt refunded.
        assert jobs.runs == {1: 1}
        row = job_row(sync_connection, second)
        assert row is not None and row["locked_by"] is None and row["attempts"] == 0
        row = job_row(sync_connection, first)
        assert row is not None and row["locked_by"] == worker.worker_id

    @pytest.mark.parametrize("batch_delay", [None, 0.0], ids=["unbatched", "batched"])
    async def test_an_outcome_is_given_up_loudly_when_its_window_closes(
        self,
        driver: DatabaseDriver,
        sync_connection: psycopg.Connection[Any],
        caplog: pytest.LogCaptureFixture,
        batch_delay: float | None,
    ) -> None:
        sync_connection.execute(REFUSE_DELETES)
        jobs = Finishing()
        jobs.release.set()
        worker = Worker(
            options(
                driver,
                jobs.tasks,
                complete_job_batch_delay=batch_delay,
                outcome_retry_window=0.5,
                outcome_retry_max_delay=0.1,
            )
        )
        caplog.set_level(logging.WARNING, logger="graphile_worker.worker")
        async with worker:
            first = add_job(sync_connection, 1)
            await eventually(lambda: give_up_lines(caplog) != [])
            # Nothing is owed any more: the worker takes jobs again.
            add_job(sync_connection, 2)
            await eventually(lambda: 2 in jobs.runs)
        [line, *_] = give_up_lines(caplog)
        assert line.startswith(f"Could not complete job(s) {first} after ")
        assert "refused on purpose" in line
        row = job_row(sync_connection, first)
        assert row is not None and row["locked_by"] == worker.worker_id
        assert jobs.runs == {1: 1, 2: 1}

    @pytest.mark.parametrize("batch_delay", [None, 0.0], ids=["unbatched", "batched"])
    async def test_a_stop_during_an_outage_ends_after_a_bounded_last_round(
        self,
        driver: DatabaseDriver,
        sync_connection: psycopg.Connection[Any],
        pg_cluster: Cluster,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
        batch_delay: float | None,
    ) -> None:
        monkeypatch.setattr(_batcher, "FINAL_RETRY_WINDOW", 1.0)  # ten seconds in use
        jobs = Finishing()
        # The window while running is the default ten minutes: only the stop ends it.
        worker = Worker(options(driver, jobs.tasks, complete_job_batch_delay=batch_delay))
        caplog.set_level(logging.WARNING, logger="graphile_worker.worker")
        with anyio.fail_after(20), ExitStack() as during:
            async with worker:
                job = add_job(sync_connection, 1)
                await eventually(lambda: len(jobs.runs) == 1)
                during.enter_context(outage(pg_cluster, sync_connection))
                jobs.release.set()
                await eventually(lambda: "Could not" in caplog.text)
            # The worker has stopped; the database still refuses (until the ExitStack ends).
            [line] = give_up_lines(caplog)
        assert line.startswith(f"Could not complete job(s) {job} after ")
        row = job_row(sync_connection, job)
        assert row is not None and row["locked_by"] == worker.worker_id


class TestRetrySchedule:
    def test_the_default_window_is_minutes(self) -> None:
        built = WorkerOptions(tasks=[_noop])
        assert built.outcome_retry_window >= 5 * 60
        assert built.outcome_retry_window > OLD_RETRY_SECONDS * 30
        assert built.outcome_retry_window > FINAL_RETRY_WINDOW

    def test_delays_double_up_to_the_cap(self) -> None:
        delays = [
            retry_delay(attempt, 0.0, window=600.0, max_delay=10.0, jitter=0.0)
            for attempt in range(1, 10)
        ]
        assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
        assert delays[0] == RETRY_FIRST_DELAY

    def test_jitter_takes_up_to_half_of_a_delay_away(self) -> None:
        assert retry_delay(8, 0.0, window=600.0, max_delay=10.0, jitter=1.0) == 5.0
        assert retry_delay(8, 0.0, window=600.0, max_delay=10.0, jitter=0.5) == 7.5

    def test_the_last_wait_ends_as_the_window_closes(self) -> None:
        assert retry_delay(30, 599.75, window=600.0, max_delay=10.0, jitter=0.0) == 0.25
        assert retry_delay(30, 600.0, window=600.0, max_delay=10.0, jitter=0.0) is None
        assert retry_delay(1, 0.0, window=0.0, max_delay=10.0, jitter=0.0) is None

    def test_a_schedule_fills_its_window(self) -> None:
        rng = random.Random(7)
        elapsed, attempts = 0.0, 1
        while (
            delay := retry_delay(
                attempts, elapsed, window=600.0, max_delay=10.0, jitter=rng.random()
            )
        ) is not None:
            assert 0 < delay <= 10.0
            elapsed += delay
            attempts += 1
        assert elapsed == pytest.approx(600.0)
        assert 60 < attempts < 130  # every five to ten seconds once the cap is reached

    @pytest.mark.parametrize(
        ("error", "retried"),
        [
            (ConnectionLostError("server closed the connection"), True),
            (QueryError("deadlock detected", sqlstate="40P01"), True),
            (QueryError("canceling statement due to statement timeout", sqlstate="57014"), True),
            (QueryError("could not obtain lock", sqlstate="55P03"), True),
            (QueryError("database is not accepting connections", sqlstate="55000"), True),
            (QueryError("could not extend file: No space left", sqlstate="53100"), True),
            (
                QueryError("cannot execute DELETE in a read-only transaction", sqlstate="25006"),
                True,
            ),
            (QueryError("refused on purpose", sqlstate="P0001"), False),
            (QueryError("relation does not exist", sqlstate="42P01"), False),
            (QueryError("no sqlstate"), False),
        ],
    )
    def test_which_failures_are_worth_retrying(self, error: QueryError, retried: bool) -> None:
        assert worth_retrying(error) is retried

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("outcome_retry_window", -1),
            ("outcome_retry_window", float("inf")),
            ("outcome_retry_max_delay", 0),
            ("outcome_retry_max_delay", "10"),
        ],
    )
    def test_bad_settings_are_refused(self, name: str, value: object) -> None:
        with pytest.raises(ConfigurationError, match=name):
            WorkerOptions(tasks=[_noop], **{name: value})  # type: ignore[arg-type]

    def test_a_window_of_zero_gives_up_after_one_attempt(self) -> None:
        assert WorkerOptions(tasks=[_noop], outcome_retry_window=0).outcome_retry_window == 0.0


@task("noop")
async def _noop(payload: object) -> None:
    """A task for options that are built, never run."""
