"""``jobs ...``, ``stats``, ``queues`` and ``force-unlock`` against a real database.

JSON documents are checked key by key against the shapes the README documents, so a
renamed or dropped key fails here before it breaks someone's script.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import Result

from ..worker.test_recovery import DEAD, stage_dead_worker
from .conftest import CliCall, assert_one_line_error

if TYPE_CHECKING:
    import psycopg

JOB_KEYS = {
    "id", "task_identifier", "queue_name", "state", "payload", "priority", "run_at",
    "attempts", "max_attempts", "last_error", "key", "flags", "locked_at", "locked_by",
    "created_at", "updated_at", "revision",
}  # fmt: skip
COUNT_KEYS = {
    "total", "ready", "scheduled", "locked", "retrying", "failed", "oldest_ready_at",
    "oldest_ready_age_seconds",
}  # fmt: skip
CHANGE_KEYS = {"action", "touched", "skipped", "jobs"}
SKIPPED_KEYS = {"id", "reason", "locked_by"}
QUEUE_KEYS = {"name", "locked_by", "locked_at", "lock_age_seconds", "jobs"}
STATS_KEYS = {"as_of", "total", "by_task", "by_queue"}


def _add(
    connection: psycopg.Connection[Any],
    task: str = "work",
    payload: str = "{}",
    *,
    queue: str | None = None,
    run_at: str | None = None,
    key: str | None = None,
    flags: list[str] | None = None,
) -> int:
    row = connection.execute(
        "select (graphile_worker.add_job(%s, %s::json, queue_name => %s, "
        "run_at => %s::timestamptz, job_key => %s, flags => %s)).id",
        (task, payload, queue, run_at, key, flags),
    ).fetchone()
    assert row is not None
    job_id: int = row[0]
    return job_id


def _lock(connection: psycopg.Connection[Any], job_id: int, worker: str = "someone") -> None:
    connection.execute(
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = %s where id = %s",
        (worker, job_id),
    )


def _fail_once(connection: psycopg.Connection[Any], job_id: int, error: str) -> None:
    connection.execute(
        "update graphile_worker._private_jobs set attempts = 1, last_error = %s where id = %s",
        (error, job_id),
    )


def assert_one_line_error_status(result: Result, fragment: str) -> None:
    """One ``Error:`` line naming the problem, no traceback (the status is checked by ``cli``)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert fragment in lines[0], result.stderr


def _document(result: Result) -> dict[str, Any]:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    document: dict[str, Any] = json.loads(lines[0])
    return document


def _is_iso(value: object) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None


def assert_usage_error(result: Result, *fragments: str) -> None:
    """Bad input on the command line: exit status 2 and one ``Error:`` line."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr


class TestList:
    @pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
    def test_table_and_pages(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any], driver: str
    ) -> None:
        first = _add(sync_connection, "email", queue="mail")
        second = _add(sync_connection, "resize", run_at="2999-01-01T00:00:00Z")
        third = _add(sync_connection, "email")
        _fail_once(sync_connection, third, "boom: " + "x" * 100 + "\nsecond line")
        args = ("jobs", "list", "-c", database_url, "--driver", driver)
        lines = cli(*args, "--limit", "2").stdout.splitlines()
        assert lines[0].split() == [
            "ID", "TASK", "QUEUE", "STATE", "ATTEMPTS", "RUN", "AT", "LAST", "ERROR"
        ]  # fmt: skip
        assert lines[1].split()[:5] == [str(third), "email", "-", "ready", "1/25"]
        assert "boom: xxx" in lines[1] and lines[1].endswith("...")
        assert "second line" not in lines[1]
        assert lines[2].split()[:5] == [str(second), "resize", "-", "scheduled", "0/25"]
        assert " in " in lines[2]
        assert lines[3] == f"more: --after {second}"
        rest = cli(*args, "--limit", "2", "--after", str(second)).stdout.splitlines()
        assert rest[1].split()[:4] == [str(first), "email", "mail", "ready"]
        assert len(rest) == 2

    def test_filters_and_json_shape(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        flagged = _add(sync_connection, "email", '{"to": "a@b"}', key="k1", flags=["vip"])
        _add(sync_connection, "email")
        locked = _add(sync_connection, "resize")
        _lock(sync_connection, locked)
        document = _document(
            cli("jobs", "list", "--json", "--flag", "vip", "--task", "email", "-c", database_url)
        )
        assert set(document) == {"jobs", "next_after"}
        assert document["next_after"] is None
        (job,) = document["jobs"]
        assert set(job) == JOB_KEYS
        assert job["id"] == flagged and job["payload"] == {"to": "a@b"}
        assert job["flags"] == ["vip"] and job["key"] == "k1" and job["state"] == "ready"
        assert all(_is_iso(job[name]) for name in ("run_at", "created_at", "updated_at"))
        assert job["locked_at"] is None
        by_state = _document(cli("jobs", "list", "--json", "--state", "LOCKED", "-c", database_url))
        assert [job["id"] for job in by_state["jobs"]] == [locked]
        assert by_state["jobs"][0]["state"] == "locked"
        assert by_state["jobs"][0]["locked_by"] == "someone"
        older = _document(cli("jobs", "list", "--json", "--older-than", "1h", "-c", database_url))
        assert older["jobs"] == []
        newer = _document(cli("jobs", "list", "--json", "--newer-than", "1h", "-c", database_url))
        assert len(newer["jobs"]) == 3
        assert cli("jobs", "list", "--key", "nope", "-c", database_url).stdout == "No jobs match.\n"

    @pytest.mark.parametrize("bad", ["5", "5x", "m", "-5m", "1h 2"])
    def test_bad_duration(self, cli: CliCall, bad: str) -> None:
        # Refused before any connection: the URL is never used.
        result = cli(
            "jobs", "list", "--older-than", bad, "-c", "postgresql://x@127.0.0.1:1/", expect=2
        )
        assert_usage_error(result, "--older-than", repr(bad), "30s")

    def test_bad_state(self, cli: CliCall) -> None:
        result = cli(
            "jobs", "list", "--state", "stuck", "-c", "postgresql://x@127.0.0.1:1/", expect=2
        )
        assert_usage_error(result, "'stuck'", "ready, scheduled, locked, retrying, failed")


class TestShow:
    def test_table_and_json(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        job_id = _add(sync_connection, "email", '{"to": "a@b", "n": [1, 2]}', queue="mail")
        _fail_once(sync_connection, job_id, "Error: boom\n  at line 1\n  at line 2")
        lines = cli("jobs", "show", str(job_id), "-c", database_url).stdout.splitlines()
        assert lines[0] == f"Job {job_id}"
        assert "  task:       email" in lines
        assert "  queue:      mail" in lines
        assert "  attempts:   1/25" in lines
        assert "  locked_at:  -" in lines
        assert any(line.startswith("  created_at: 20") for line in lines)
        payload = lines[lines.index("Payload") + 1 : lines.index("Last error")]
        assert json.loads("\n".join(payload)) == {"to": "a@b", "n": [1, 2]}
        assert len(payload) > 1  # pretty-printed
        assert lines[lines.index("Last error") + 1 :] == [
            "  Error: boom", "    at line 1", "    at line 2"
        ]  # fmt: skip
        document = _document(cli("jobs", "show", str(job_id), "--json", "-c", database_url))
        assert set(document) == {"job"}
        assert set(document["job"]) == JOB_KEYS
        assert document["job"]["last_error"] == "Error: boom\n  at line 1\n  at line 2"
        assert document["job"]["attempts"] == 1 and document["job"]["max_attempts"] == 25

    def test_unknown_id(self, cli: CliCall, database_url: str) -> None:
        result = cli("jobs", "show", "424242", "-c", database_url, expect=1)
        assert_one_line_error(result, "no job 424242", "completed")


class TestChanges:
    def test_retry_resets_attempts_and_skips_locked(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        failed = _add(sync_connection, run_at="2999-01-01T00:00:00Z")
        sync_connection.execute(
            "update graphile_worker._private_jobs set attempts = 25, last_error = 'x' "
            "where id = %s",
            (failed,),
        )
        locked = _add(sync_connection)
        _lock(sync_connection, locked, "w-1")
        lines = cli(
            "jobs", "retry", str(failed), str(locked), "999999", "-c", database_url
        ).stdout.splitlines()
        assert lines == [
            f"Retrying 1 job(s): {failed}",
            (
                f"Skipped job {locked}: locked by w-1; jobs a worker holds are never changed "
                "(wait for it, or force-unlock a dead worker)."
            ),
            "Skipped job 999999: not found (completed or removed).",
        ]
        row = sync_connection.execute(
            "select attempts, run_at <= now() from graphile_worker._private_jobs where id = %s",
            (failed,),
        ).fetchone()
        assert row == (0, True)

    def test_retry_every_failed_job_of_a_task_with_yes(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        wanted = [_add(sync_connection, "mail") for _ in range(3)]
        other_task = _add(sync_connection, "sms")
        still_trying = _add(sync_connection, "mail")
        sync_connection.execute(
            "update graphile_worker._private_jobs set attempts = max_attempts, last_error = 'x' "
            "where id = any(%s)",
            (wanted + [other_task],),
        )
        _fail_once(sync_connection, still_trying, "y")
        document = _document(
            cli(
                "jobs", "retry", "--failed", "--task", "mail", "--yes", "--json",
                "-c", database_url,
            )
        )  # fmt: skip
        assert sorted(document["touched"]) == sorted(wanted)
        rows = dict(
            sync_connection.execute(
                "select id, attempts from graphile_worker._private_jobs"
            ).fetchall()
        )
        assert all(rows[job_id] == 0 for job_id in wanted)
        assert rows[other_task] == 25 and rows[still_trying] == 1

    def test_a_filter_needs_yes_when_no_one_can_be_asked(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        job_id = _add(sync_connection)
        result = cli("jobs", "cancel", "--task", "work", "-c", database_url, expect=2)
        assert_one_line_error_status(result, "needs --yes")
        row = sync_connection.execute(
            "select attempts from graphile_worker._private_jobs where id = %s", (job_id,)
        ).fetchone()
        assert row == (0,)

    def test_a_person_confirms_a_filtered_change(
        self,
        cli: CliCall,
        database_url: str,
        sync_connection: psycopg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from graphile_worker.cli import _jobs

        monkeypatch.setattr(_jobs, "_interactive", lambda: True)
        ids = [_add(sync_connection, "report") for _ in range(2)]
        refused = cli(
            "jobs", "complete", "--task", "report", "-c", database_url, input="n\n", expect=1
        )
        assert "Complete 2 job(s)? [y/N]" in refused.stderr and "Aborted" in refused.stderr
        assert (
            len(sync_connection.execute("select 1 from graphile_worker._private_jobs").fetchall())
            == 2
        )
        done = cli("jobs", "complete", "--task", "report", "-c", database_url, input="y\n")
        assert done.stdout.startswith("Completed 2 job(s)")
        assert (
            sync_connection.execute("select 1 from graphile_worker._private_jobs").fetchall() == []
        )
        assert ids

    def test_ids_and_filters_do_not_mix(self, cli: CliCall, database_url: str) -> None:
        mixed = cli("jobs", "retry", "1", "--state", "failed", "-c", database_url, expect=2)
        assert_one_line_error_status(mixed, "not both")
        neither = cli("jobs", "retry", "-c", database_url, expect=2)
        assert_one_line_error_status(neither, "give the job IDs")

    def test_cancel_json(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        job_id = _add(sync_connection)
        locked = _add(sync_connection)
        _lock(sync_connection, locked, "w-2")
        document = _document(
            cli(
                "jobs",
                "cancel",
                str(job_id),
                str(locked),
                "--reason",
                "obsolete",
                "--json",
                "-c",
                database_url,
            )
        )
        assert set(document) == CHANGE_KEYS
        assert document["action"] == "cancel" and document["touched"] == [job_id]
        assert document["skipped"] == [{"id": locked, "reason": "locked", "locked_by": "w-2"}]
        assert set(document["skipped"][0]) == SKIPPED_KEYS
        (job,) = document["jobs"]
        assert set(job) == JOB_KEYS
        assert job["state"] == "failed" and job["last_error"] == "obsolete"

    def test_complete(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        job_id = _add(sync_connection)
        assert cli("jobs", "complete", str(job_id), "-c", database_url).stdout == (
            f"Completed 1 job(s): {job_id}\n"
        )
        count = "select count(*) from graphile_worker._private_jobs"
        assert sync_connection.execute(count).fetchone() == (0,)
        again = _document(cli("jobs", "complete", str(job_id), "--json", "-c", database_url))
        assert again["touched"] == [] and again["skipped"][0]["reason"] == "not_found"

    def test_reschedule(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        job_id = _add(sync_connection)
        cli(
            "jobs", "reschedule", str(job_id), "--in", "2h", "--priority", "3",
            "--max-attempts", "4", "-c", database_url,
        )  # fmt: skip
        row = sync_connection.execute(
            "select run_at - now() > interval '1 hour', priority, max_attempts "
            "from graphile_worker._private_jobs where id = %s",
            (job_id,),
        ).fetchone()
        assert row == (True, 3, 4)
        document = _document(
            cli(
                "jobs",
                "reschedule",
                str(job_id),
                "--run-at",
                "2030-01-02T03:04:05",
                "--json",
                "-c",
                database_url,
            )
        )
        run_at = datetime.fromisoformat(document["jobs"][0]["run_at"])
        assert run_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [
            (("--in", "soon"), "--in 'soon'"),
            (("--run-at", "tomorrow"), "ISO 8601"),
            (("--run-at", "2030-01-01", "--in", "1h"), "not both"),
            ((), "nothing to change"),
        ],
    )
    def test_reschedule_bad_input(self, cli: CliCall, args: tuple[str, ...], fragment: str) -> None:
        result = cli(
            "jobs", "reschedule", "1", *args, "-c", "postgresql://x@127.0.0.1:1/", expect=2
        )
        assert_usage_error(result, fragment)

    def test_remove(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        waiting = _add(sync_connection, key="k-wait")
        running = _add(sync_connection, key="k-run")
        _lock(sync_connection, running, "w-3")
        assert cli("jobs", "remove", "--key", "k-wait", "-c", database_url).stdout == (
            f"Removed job {waiting} (work).\n"
        )
        document = _document(cli("jobs", "remove", "--key", "k-run", "--json", "-c", database_url))
        assert set(document) == {"removed", "job"}
        assert document["removed"] is False and document["job"]["id"] == running
        assert document["job"]["key"] is None
        result = cli("jobs", "remove", "--key", "k-wait", "-c", database_url, expect=1)
        assert_one_line_error(result, "no job with key 'k-wait'")


class TestStatsAndQueues:
    def test_stats(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        assert cli("stats", "-c", database_url).stdout.startswith("Jobs as of ")
        _add(sync_connection, "email", queue="mail", run_at="2000-01-01T00:00:00Z")
        _add(sync_connection, "email", run_at="2999-01-01T00:00:00Z")
        _lock(sync_connection, _add(sync_connection, "resize"))
        lines = cli("stats", "-c", database_url).stdout.splitlines()
        assert "3 (ready 1, scheduled 1, locked 1, failed 0; 0 retrying)" in lines[0]
        tasks = lines.index("") + 1
        assert lines[tasks].split()[:7] == [
            "TASK", "TOTAL", "READY", "SCHEDULED", "LOCKED", "RETRYING", "FAILED"
        ]  # fmt: skip
        assert lines[tasks + 1].split()[:7] == ["email", "2", "1", "1", "0", "0", "0"]
        assert lines[tasks + 1].split()[7].endswith("d")  # waiting since 2000
        assert lines[tasks + 2].split() == ["resize", "1", "0", "0", "1", "0", "0", "-"]
        assert any(line.split()[:3] == ["mail", "1", "1"] for line in lines)
        document = _document(cli("stats", "--json", "-c", database_url))
        assert set(document) == STATS_KEYS and _is_iso(document["as_of"])
        assert set(document["total"]) == COUNT_KEYS
        assert set(document["by_task"]) == {"email", "resize"}
        assert set(document["by_queue"]) == {"mail"}
        email = document["by_task"]["email"]
        assert set(email) == COUNT_KEYS
        assert (email["total"], email["ready"], email["scheduled"]) == (2, 1, 1)
        assert email["oldest_ready_age_seconds"] > timedelta(days=365).total_seconds()
        assert _is_iso(email["oldest_ready_at"])

    def test_stats_watch_prints_snapshots(self, cli: CliCall, database_url: str) -> None:
        output = cli("stats", "--watch", "0.5", "--count", "2", "-c", database_url).stdout
        assert output.count("Jobs as of ") == 2
        assert "\x1b[" not in output  # not a terminal: no redrawing
        snapshots = cli(
            "stats", "--json", "--watch", "0.5", "--count", "2", "-c", database_url
        ).stdout.splitlines()
        assert len(snapshots) == 2
        assert all(set(json.loads(line)) == STATS_KEYS for line in snapshots)

    def test_queues(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        assert cli("queues", "-c", database_url).stdout == "No named queues.\n"
        assert _document(cli("queues", "--json", "-c", database_url)) == {
            "as_of": None,
            "queues": [],
        }
        _add(sync_connection, queue="mail")
        _add(sync_connection, queue="mail")
        sync_connection.execute(
            "update graphile_worker._private_job_queues set locked_at = now() - interval '2h', "
            "locked_by = 'w-9' where queue_name = 'mail'"
        )
        lines = cli("queues", "-c", database_url).stdout.splitlines()
        assert lines[0].split()[:5] == ["QUEUE", "LOCKED", "BY", "LOCK", "AGE"]
        assert lines[1].split()[:5] == ["mail", "w-9", "2.0h", "2", "2"]
        document = _document(cli("queues", "--json", "-c", database_url))
        assert set(document) == {"as_of", "queues"} and _is_iso(document["as_of"])
        (queue,) = document["queues"]
        assert set(queue) == QUEUE_KEYS and set(queue["jobs"]) == COUNT_KEYS
        assert queue["name"] == "mail" and queue["locked_by"] == "w-9"
        assert 7100 < queue["lock_age_seconds"] < 7300
        assert queue["jobs"]["ready"] == 2


class TestForceUnlock:
    def test_unlocks_a_dead_worker(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        job_id = _add(sync_connection)
        _lock(sync_connection, job_id, "node-worker")
        lines = cli("force-unlock", "node-worker", "nobody", "-c", database_url).stdout.splitlines()
        assert lines[0].startswith("Worker node-worker: released 1 job(s) and 0 queue(s)")
        assert lines[1] == "Worker nobody: held nothing."
        row = sync_connection.execute(
            "select locked_by from graphile_worker._private_jobs where id = %s", (job_id,)
        ).fetchone()
        assert row == (None,)
        document = _document(cli("force-unlock", "node-worker", "--json", "-c", database_url))
        assert document == {
            "workers": [
                {
                    "worker_id": "node-worker",
                    "released_jobs": 0,
                    "released_queues": 0,
                    "oldest_lock_at": None,
                }
            ]
        }

    def test_refuses_a_live_worker(
        self, cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
    ) -> None:
        job_id = _add(sync_connection)
        stage_dead_worker(sync_connection, [job_id], silent_for=0)
        result = cli("force-unlock", DEAD, "-c", database_url, expect=1)
        assert_one_line_error(result, "fresh heartbeat", "--force")
        forced = _document(cli("force-unlock", DEAD, "--force", "--json", "-c", database_url))
        assert forced["workers"][0]["released_jobs"] == 1
