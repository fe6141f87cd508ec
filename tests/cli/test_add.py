"""``graphile-worker add``: every JobSpec option reaches the database; bad input is refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from graphile_worker.cli._add import parse_run_at
from graphile_worker.errors import InvalidJobSpecError

from .conftest import CliCall, assert_one_line_error

_JOB = """
select job.id, task.identifier, queue.queue_name, job.payload, job.priority, job.run_at,
       job.max_attempts, job.key, job.flags
from graphile_worker._private_jobs as job
join graphile_worker._private_tasks as task on task.id = job.task_id
left join graphile_worker._private_job_queues as queue on queue.id = job.job_queue_id
"""


def _jobs(connection: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return connection.execute(_JOB + " order by job.id").fetchall()


def test_every_option(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    result = cli(
        "add",
        "send_email",
        '{"to": "someone@example.com", "n": [1, 2]}',
        "--queue", "mail",
        "--run-at", "2030-01-31T09:30:00+02:00",
        "--priority", "-5",
        "--max-attempts", "3",
        "--job-key", "welcome-42",
        "--job-key-mode", "preserve_run_at",
        "--flag", "slow",
        "--flag", "smtp",
        "-c", database_url,
    )  # fmt: skip
    [row] = _jobs(sync_connection)
    assert result.stdout == f"{row[0]}\n"
    assert row[1:] == (
        "send_email",
        "mail",
        {"to": "someone@example.com", "n": [1, 2]},
        -5,
        datetime(2030, 1, 31, 7, 30, tzinfo=timezone.utc),
        3,
        "welcome-42",
        {"slow": True, "smtp": True},
    )


def test_defaults_match_node(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    before = datetime.now(timezone.utc)
    cli("add", "plain", "-c", database_url)
    [row] = _jobs(sync_connection)
    # Node: payload {} when none is given, priority 0, 25 attempts, run now.
    assert row[1:5] == ("plain", None, {}, 0)
    assert row[6:] == (25, None, None)
    assert (
        before - timedelta(seconds=5) < row[5] < datetime.now(timezone.utc) + timedelta(seconds=5)
    )


def test_payload_from_stdin(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    cli("add", "piped", "-", "-c", database_url, input='{"from": "stdin"}\n')
    [row] = _jobs(sync_connection)
    assert row[3] == {"from": "stdin"}


def test_unsafe_dedupe_returns_the_existing_job(cli: CliCall, database_url: str) -> None:
    first = cli("add", "t", '{"n": 1}', "--job-key", "k", "-c", database_url).stdout
    second = cli(
        "add", "t", '{"n": 2}', "--job-key", "k", "--job-key-mode", "unsafe_dedupe",
        "-c", database_url,
    ).stdout  # fmt: skip
    assert first == second


def test_custom_schema(cli: CliCall, empty_database_url: str) -> None:
    cli("migrate", "-c", empty_database_url, "-s", "other_jobs")
    job_id = int(cli("add", "t", "-c", empty_database_url, "-s", "other_jobs").stdout)
    with psycopg.connect(empty_database_url) as connection:
        found = connection.execute("select id from other_jobs._private_jobs").fetchall()
    assert found == [(job_id,)]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["not json"], "PAYLOAD is not valid JSON"),
        (["{'single': 'quotes'}"], "PAYLOAD is not valid JSON"),
        (["{}", "--run-at", "2030-01-31T09:30:00"], "has no time zone"),
        (["{}", "--run-at", "tomorrow"], "is not an ISO 8601 date and time"),
        (["{}", "--priority", "40000"], "priority must be between"),
        (["{}", "--max-attempts", "0"], "--max-attempts must be between"),
        (["{}", "--job-key-mode", "replace"], "needs a --job-key"),
    ],
)
def test_bad_input_is_one_line_and_adds_nothing(
    cli: CliCall,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    arguments: list[str],
    fragment: str,
) -> None:
    result = cli("add", "t", *arguments, "-c", database_url, expect=1)
    assert_one_line_error(result, fragment)
    assert _jobs(sync_connection) == []


def test_bad_option_type_is_a_usage_error(cli: CliCall, database_url: str) -> None:
    result = cli("add", "t", "--priority", "high", "-c", database_url, expect=2)
    assert "'high' is not a valid integer" in result.stderr


class TestParseRunAt:
    def test_zulu_and_offsets(self) -> None:
        utc = datetime(2030, 1, 31, 9, 30, tzinfo=timezone.utc)
        assert parse_run_at("2030-01-31T09:30:00Z") == utc
        assert parse_run_at("2030-01-31T09:30:00z") == utc
        assert parse_run_at("2030-01-31T10:30:00+01:00") == utc
        assert parse_run_at(" 2030-01-31 09:30:00.000+00:00 ") == utc

    def test_none_means_now(self) -> None:
        assert parse_run_at(None) is None

    @pytest.mark.parametrize("text", ["2030-01-31", "2030-01-31T09:30", "", "soon"])
    def test_refused(self, text: str) -> None:
        with pytest.raises(InvalidJobSpecError, match="--run-at"):
            parse_run_at(text)
