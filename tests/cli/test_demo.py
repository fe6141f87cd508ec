"""``graphile-worker demo``: the README's first command, end to end."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from graphile_worker._demo._tasks import JobMix, plan_jobs

from .conftest import UNREACHABLE_URL, CliCall, assert_one_line_error

TASKS = ("demo_greet", "demo_thumbnail", "demo_ledger", "demo_flaky", "demo_reminder")


def _check_summary(output: str, count: int) -> None:
    mix = JobMix.for_total(count)
    assert f"{count} of {count} jobs completed in " in output
    assert f"{mix.flaky} failure(s) retried, none left in the queue" in output
    for task in TASKS:
        assert f"  {task} " in output
    assert "at most 1 at a time, in queued order" in output


def test_with_an_existing_database(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    result = cli("demo", "--connection", database_url, "--count", "20", "-j", "4")
    _check_summary(result.stdout, 20)
    # demo_flaky's planned failures are counted in the summary, not logged as tracebacks.
    assert "SimulatedOutage" not in result.stdout + result.stderr
    assert "Starting a throwaway PostgreSQL" not in result.stdout
    jobs = sync_connection.execute("select count(*) from graphile_worker._private_jobs")
    assert jobs.fetchone() == (0,)


def test_with_a_throwaway_server(cli: CliCall) -> None:
    """No connection at all: the demo starts (and deletes) its own PostgreSQL."""
    result = cli("demo", "--count", "20", env={"DATABASE_URL": "postgresql://ignored:1/x"})
    assert result.stdout.startswith("Starting a throwaway PostgreSQL server")
    assert "version none -> 20" in result.stdout
    _check_summary(result.stdout, 20)
    assert result.stdout.rstrip().splitlines()[-2] == (
        "Stopped and deleted the throwaway PostgreSQL server."
    )


def test_custom_schema_and_driver(cli: CliCall, empty_database_url: str) -> None:
    result = cli(
        "demo", "-c", empty_database_url, "-s", "demo_jobs", "-n", "10",
        "--driver", "psycopg-threaded",
    )  # fmt: skip
    assert "Schema 'demo_jobs': version none -> 20" in result.stdout
    _check_summary(result.stdout, 10)


def test_unreachable_database_is_one_line(cli: CliCall) -> None:
    assert_one_line_error(cli("demo", "-c", UNREACHABLE_URL, expect=1), "127.0.0.1:1")


def test_bad_schema_is_one_line(cli: CliCall, database_url: str) -> None:
    assert_one_line_error(cli("demo", "-c", database_url, "-s", "pg_x", expect=1), "pg_")


@pytest.mark.parametrize("total", [10, 11, 20, 99, 300, 1000, 4321])
def test_job_mix_adds_up(total: int) -> None:
    mix = JobMix.for_total(total)
    assert mix.total == total
    assert min(mix.greet, mix.thumbnail, mix.ledger, mix.flaky, mix.reminder) >= 1
    jobs = plan_jobs(mix, delay=2.0)
    assert len(jobs) == total
    ledger = [job for job in jobs if isinstance(job, tuple) and job[0] == "demo_ledger"]
    assert [job[1] for job in ledger] == [{"sequence": n} for n in range(mix.ledger)]
