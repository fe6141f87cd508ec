"""``graphile-worker cron check`` / ``cron list``, and ``run --crontab``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .conftest import UNREACHABLE_URL, CliCall, assert_one_line_error

CRONTAB = textwrap.dedent(
    """\
    # Sent every morning.
    0 4 * * * send_report ?id=nightly_report&fill=1d&queue=reports&priority=3&max=5
    */15 9-17 * * 1-5 sync ?jobKey=the-sync {source: 'crontab'}
    0 0 30 2 * never_runs
    """
)


def test_check_prints_each_entry_with_its_next_runs(cli: CliCall, tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text(CRONTAB)
    result = cli("cron", "check", str(path), "--after", "2030-01-04T16:50:00Z")
    assert result.stdout.splitlines() == [
        f"{path}: 3 entries, all valid",
        "",
        "nightly_report (line 2)",
        # The canonical line, options in one order, as Node reads it.
        "  0 4 * * * send_report ?id=nightly_report&fill=1d&max=5&queue=reports&priority=3",
        "  task send_report; backfill up to 1d; queue reports; priority 3; max attempts 5",
        (
            "  next (UTC): 2030-01-05 04:00, 2030-01-06 04:00, 2030-01-07 04:00, "
            "2030-01-08 04:00, 2030-01-09 04:00"
        ),
        "",
        "sync (line 3)",
        '  */15 9-17 * * 1-5 sync ?jobKey=the-sync {"source":"crontab"}',
        "  task sync; job key 'the-sync' (replace)",
        # 2030-01-04 is a Friday: 17:00 that day, then Monday morning.
        (
            "  next (UTC): 2030-01-04 17:00, 2030-01-04 17:15, 2030-01-04 17:30, "
            "2030-01-04 17:45, 2030-01-07 09:00"
        ),
        "",
        "never_runs (line 4)",
        "  0 0 30 2 * never_runs",
        "  task never_runs",
        "  next (UTC): never",
    ]


def test_check_count_and_default_start(cli: CliCall, tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("* * * * * tick\n")
    lines = cli("cron", "check", str(path), "-n", "2").stdout.splitlines()
    runs = lines[-1].removeprefix("  next (UTC): ").split(", ")
    assert len(runs) == 2
    assert runs[0] > time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.time() - 60))


def test_check_reports_every_bad_line(cli: CliCall, tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("* * * * * fine\n61 * * * * bad_minute\n* * * * * task ?nope=1\n")
    result = cli("cron", "check", str(path), expect=1)
    assert "Traceback" not in result.stderr
    assert f"{path}: 2 problems" in result.stderr
    assert "line 2" in result.stderr
    assert "line 3" in result.stderr
    assert result.stdout == ""


def test_check_an_empty_crontab(cli: CliCall, tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("# nothing yet\n\n")
    result = cli("cron", "check", str(path))
    assert "no entries" in result.stdout


def test_check_a_missing_file_is_a_usage_error(cli: CliCall, tmp_path: Path) -> None:
    result = cli("cron", "check", str(tmp_path / "missing"), expect=2)
    assert "does not exist" in result.stderr


def test_check_needs_a_zone_for_after(cli: CliCall, tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("* * * * * tick\n")
    result = cli("cron", "check", str(path), "--after", "2030-01-01T10:00", expect=2)
    assert "no time zone" in result.stderr


def test_list_shows_known_identifiers_and_last_runs(
    cli: CliCall, database_url: str, sync_connection: psycopg.Connection[Any]
) -> None:
    result = cli("cron", "list", "-c", database_url)
    assert result.stdout == "No cron entries are known in schema 'graphile_worker' yet.\n"
    sync_connection.execute(
        """
        insert into graphile_worker._private_known_crontabs (identifier, known_since, last_execution)
        values ('nightly_report', '2030-01-01 09:59:30.25+00', '2030-01-05 04:00+00'),
               ('new_one', '2030-01-05 12:00:00+00', null)
        """
    )
    result = cli("cron", "list", "-c", database_url)
    assert result.stdout.splitlines() == [
        "IDENTIFIER      LAST RUN          KNOWN SINCE",
        "new_one         never             2030-01-05 12:00:00",
        "nightly_report  2030-01-05 04:00  2030-01-01 09:59:30",
    ]


def test_list_without_a_database_is_one_line(cli: CliCall) -> None:
    result = cli("cron", "list", "-c", UNREACHABLE_URL, expect=1)
    assert_one_line_error(result, "127.0.0.1:1")


def test_run_checks_the_crontab_before_connecting(cli: CliCall, tmp_path: Path) -> None:
    tasks = tmp_path / f"cron_cli_tasks_{uuid.uuid4().hex[:8]}.py"
    tasks.write_text("from graphile_worker.task import task\n\n@task('t')\ndef t(p): pass\n")
    crontab = tmp_path / "my_crontab"
    crontab.write_text("* * * * * tick\n* * * * nope\n")
    result = cli(
        "run", "--tasks", str(tasks), "--crontab", str(crontab), "-c", UNREACHABLE_URL, expect=1
    )
    assert_one_line_error(result, "line 2")


def test_run_reads_crontab_from_the_working_directory(
    cli: CliCall, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = tmp_path / f"cron_cli_tasks_{uuid.uuid4().hex[:8]}.py"
    tasks.write_text("from graphile_worker.task import task\n\n@task('t')\ndef t(p): pass\n")
    (tmp_path / "crontab").write_text("* * * * tick\n")
    monkeypatch.chdir(tmp_path)
    result = cli("run", "--once", "--tasks", str(tasks), "-c", UNREACHABLE_URL, expect=1)
    # Checked before connecting: the error is the crontab's, not the unreachable server's.
    [using, error] = result.stderr.strip().splitlines()
    assert "Using the crontab file" in using
    assert error.startswith("Error: crontab 'crontab' line 1")


def test_run_schedules_from_the_crontab(
    database_url: str, sync_connection: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # A real worker on the real clock, without waiting for a minute to begin: the entry was
    # last scheduled ten minutes ago and may backfill an hour, so the worker schedules the
    # minutes it missed as soon as it starts, and runs them.
    output = tmp_path / "ticks.txt"
    tasks = tmp_path / f"cron_cli_tasks_{uuid.uuid4().hex[:8]}.py"
    tasks.write_text(
        textwrap.dedent(
            f"""
            from graphile_worker.task import task

            @task("cron_tick")
            def tick(payload):
                with open({str(output)!r}, "a") as file:
                    file.write(payload["_cron"]["ts"] + " " + str(payload["_cron"]["backfilled"]) + "\\n")
            """
        )
    )
    crontab = tmp_path / "crontab"
    crontab.write_text("* * * * * cron_tick ?fill=1h\n")
    sync_connection.execute(
        "insert into graphile_worker._private_known_crontabs (identifier, known_since, "
        "last_execution) values ('cron_tick', now() - interval '1 day', "
        "date_trunc('minute', now()) - interval '10 minutes')"
    )
    last = sync_connection.execute(
        "select last_execution from graphile_worker._private_known_crontabs"
    ).fetchone()
    assert last is not None
    missed = [
        (last[0] + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:00.000Z") for n in range(1, 10)
    ]
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    process = subprocess.Popen(
        [sys.executable, "-m", "graphile_worker.cli", "run", "--tasks", str(tasks),
         "--crontab", str(crontab), "-c", database_url, "--poll-interval", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )  # fmt: skip

    def ran() -> list[str]:
        return output.read_text().splitlines() if output.exists() else []

    try:
        deadline = time.monotonic() + 30
        while not set(missed) <= {line.split()[0] for line in ran()}:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"the backfilled jobs did not all run: {ran()}"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    lines = ran()
    assert {f"{minute} True" for minute in missed} <= set(lines)
    assert len({line.split()[0] for line in lines}) == len(lines)  # no minute twice
