"""Command-line polish: ``migrate --check``, ``run --no-migrate``, the hint on an unmigrated
database, ``--log-level`` after the command, exit statuses, ``run --once`` failures and the
crontab warning."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.migrations import (
    EXTENSION_STEPS,
    LATEST_MIGRATION,
    migrate_sync,
    migration_status_sync,
)

from .conftest import CliCall, assert_one_line_error, run_subprocess

ALL_STEPS = ", ".join(step.id for step in EXTENSION_STEPS)


def _migrate(url: str, up_to: int | None = None, schema: str = "graphile_worker") -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        migrate_sync(PsycopgSyncExecutor(connection), schema=schema, up_to=up_to)


def _fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(sql).fetchall()


def _schemas(url: str) -> list[str]:
    rows = _fetch(url, "select nspname from pg_namespace where nspname like 'graphile%'")
    return sorted(row[0] for row in rows)


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    # A module name of its own: a loaded task file's name stays taken for the session.
    path = tmp_path / f"polish_tasks_{uuid.uuid4().hex}.py"
    path.write_text(
        textwrap.dedent(
            """
            from graphile_worker import task

            @task
            async def polish_ok(payload) -> None:
                pass

            @task
            async def polish_fail(payload) -> None:
                raise RuntimeError("deliberate failure")
            """
        )
    )
    return path


# ------------------------------------------------------------------------ migrate --check


def test_check_on_an_empty_database_changes_nothing(cli: CliCall, empty_database_url: str) -> None:
    result = cli("migrate", "--check", "-c", empty_database_url, expect=1)
    assert_one_line_error(
        result,
        f"schema 'graphile_worker' is not installed, this library needs {LATEST_MIGRATION} "
        f"(and extension steps {ALL_STEPS}): run 'graphile-worker migrate'",
    )
    assert _schemas(empty_database_url) == []


def test_check_on_a_partly_migrated_schema(cli: CliCall, empty_database_url: str) -> None:
    _migrate(empty_database_url, up_to=10)
    result = cli("migrate", "--check", "-c", empty_database_url, expect=1)
    assert_one_line_error(
        result, f"schema 'graphile_worker' is at version 10, this library needs {LATEST_MIGRATION}"
    )
    assert max(_fetch(empty_database_url, "select id from graphile_worker.migrations"))[0] == 10


def test_check_on_a_current_schema(cli: CliCall, database_url: str) -> None:
    result = cli("migrate", "--check", "-c", database_url)
    assert result.stdout.strip() == (
        f"Schema 'graphile_worker': version {LATEST_MIGRATION} (up to date)"
    )


def test_check_notices_a_missing_extension_step(cli: CliCall, empty_database_url: str) -> None:
    _migrate(empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        connection.execute("drop table graphile_worker._pyworker_workers")
        connection.execute(
            "delete from graphile_worker._pyworker_migrations where id = '0002_worker_registry'"
        )
    result = cli("migrate", "--check", "-c", empty_database_url, expect=1)
    assert_one_line_error(
        result,
        f"schema 'graphile_worker' is at version {LATEST_MIGRATION}, this library also needs "
        "its extension steps 0002_worker_registry: run 'graphile-worker migrate'",
    )
    assert _fetch(
        empty_database_url, "select to_regclass('graphile_worker._pyworker_workers')"
    ) == [(None,)]
    # A real migrate then brings it back, and the check passes.
    cli("migrate", "-c", empty_database_url)
    cli("migrate", "--check", "-c", empty_database_url)


def test_check_names_a_custom_schema_in_the_fix(cli: CliCall, empty_database_url: str) -> None:
    result = cli("migrate", "--check", "-c", empty_database_url, "-s", "other_jobs", expect=1)
    assert_one_line_error(result, "run 'graphile-worker migrate --schema other_jobs'")


def test_status_function_reports_each_state(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        executor = PsycopgSyncExecutor(connection)
        missing = migration_status_sync(executor)
        assert (missing.current_version, missing.behind, missing.up_to_date) == (None, True, False)
        migrate_sync(executor, up_to=12)
        behind = migration_status_sync(executor)
        assert (behind.current_version, behind.behind) == (12, True)
        assert behind.missing_extensions == tuple(step.id for step in EXTENSION_STEPS)
        migrate_sync(executor)
        current = migration_status_sync(executor)
        assert (current.current_version, current.up_to_date) == (LATEST_MIGRATION, True)
        assert current.missing_extensions == ()


# ------------------------------------------------------------- unmigrated database, --no-migrate


def test_run_no_migrate_refuses_an_empty_database(
    cli: CliCall, empty_database_url: str, tasks_file: Path
) -> None:
    result = cli(
        "run", "--once", "--no-migrate", "--tasks", str(tasks_file), "-c", empty_database_url,
        expect=1,
    )  # fmt: skip
    assert_one_line_error(
        result, "schema 'graphile_worker' is not installed", "graphile-worker migrate"
    )
    assert _schemas(empty_database_url) == []


def test_run_no_migrate_refuses_a_schema_behind(
    cli: CliCall, empty_database_url: str, tasks_file: Path
) -> None:
    _migrate(empty_database_url, up_to=10)
    result = cli(
        "run", "--once", "--no-migrate", "--tasks", str(tasks_file), "-c", empty_database_url,
        expect=1,
    )  # fmt: skip
    assert_one_line_error(result, "is at version 10", "run 'graphile-worker migrate'")
    assert max(_fetch(empty_database_url, "select id from graphile_worker.migrations"))[0] == 10


def test_run_no_migrate_runs_on_a_current_schema(
    cli: CliCall, database_url: str, tasks_file: Path
) -> None:
    cli("add", "polish_ok", "-c", database_url)
    result = cli("run", "--once", "--no-migrate", "--tasks", str(tasks_file), "-c", database_url)
    assert "Ran 1 job(s): 1 completed" in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="--processes is POSIX only")
def test_processes_with_no_migrate_only_check(empty_database_url: str, tasks_file: Path) -> None:
    completed = run_subprocess(
        "run", "--once", "--no-migrate", "--processes", "2", "--tasks", str(tasks_file),
        "-c", empty_database_url,
    )  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    assert "is not installed" in completed.stderr
    assert "run 'graphile-worker migrate'" in completed.stderr
    assert _schemas(empty_database_url) == []


@pytest.mark.parametrize(
    "command",
    [
        ("add", "some_task"),
        ("cleanup",),
        ("workers",),
        ("sweep",),
        ("cron", "list"),
    ],
    ids=lambda command: " ".join(command),
)
def test_commands_on_an_unmigrated_database_say_to_migrate(
    cli: CliCall, empty_database_url: str, command: tuple[str, ...]
) -> None:
    result = cli(*command, "-c", empty_database_url, expect=1)
    assert_one_line_error(result, "schema 'graphile_worker'", "run 'graphile-worker migrate'")
    assert "does not exist" not in result.stderr or "not installed" in result.stderr


def test_unmigrated_hint_names_the_schema(cli: CliCall, database_url: str) -> None:
    result = cli("add", "some_task", "-c", database_url, "-s", "nowhere_jobs", expect=1)
    assert_one_line_error(
        result, "schema 'nowhere_jobs'", "graphile-worker migrate --schema nowhere_jobs"
    )


# ---------------------------------------------------------------------- logging options


def test_first_migration_logs_one_line(cli: CliCall, empty_database_url: str) -> None:
    result = cli("migrate", "--log-level", "info", "-c", empty_database_url)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "INFO" in lines[0]
    assert f"from version none to {LATEST_MIGRATION}" in lines[0]


def test_log_level_after_the_command(cli: CliCall, empty_database_url: str) -> None:
    result = cli("migrate", "-c", empty_database_url, "--log-level", "DEBUG")
    assert "applied graphile-worker migration 000001" in result.stderr
    assert "applied graphile-worker migration 000020" in result.stderr


def test_log_level_after_a_nested_command(cli: CliCall, database_url: str) -> None:
    cli("cron", "list", "--log-level", "debug", "-c", database_url)
    cli("cron", "list", "--log-level", "loud", "-c", database_url, expect=2)


def test_log_level_from_the_environment_still_works(cli: CliCall, empty_database_url: str) -> None:
    result = cli("migrate", "-c", empty_database_url, env={"GRAPHILE_WORKER_LOG_LEVEL": "debug"})
    assert "applied graphile-worker migration 000020" in result.stderr


def test_log_level_after_the_command_beats_the_environment(
    cli: CliCall, empty_database_url: str
) -> None:
    result = cli(
        "migrate", "-c", empty_database_url, "--log-level", "error",
        env={"GRAPHILE_WORKER_LOG_LEVEL": "debug"},
    )  # fmt: skip
    assert result.stderr == ""


def test_debug_after_the_command_shows_the_traceback(cli: CliCall, empty_database_url: str) -> None:
    result = cli("add", "x", "-c", empty_database_url, "--log-level", "debug", expect=1)
    assert "Traceback" in result.stderr


# ---------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    "arguments",
    [
        ("run", "--no-such-flag"),
        ("migrate", "--no-such-flag"),
        ("add",),
        ("add", "task", "--priority", "high"),
        ("cleanup", "--no-such-flag"),
        ("cron", "check"),
        ("workers", "--no-such-flag"),
        ("sweep", "--no-such-flag"),
        ("run", "--fail-on-error"),
        ("run", "--local-queue-ttl", "5"),
        ("no-such-command",),
    ],
    ids=lambda arguments: " ".join(arguments),
)
def test_usage_errors_exit_2(cli: CliCall, arguments: tuple[str, ...]) -> None:
    result = cli(*arguments, expect=2)
    assert "Traceback" not in result.stderr


def test_bad_data_exits_1(cli: CliCall, database_url: str, tmp_path: Path) -> None:
    assert_one_line_error(cli("add", "task", "{not json", "-c", database_url, expect=1), "PAYLOAD")
    crontab = tmp_path / "crontab"
    crontab.write_text("* * * * nonsense\n")
    assert_one_line_error(cli("add", "task", "-c", database_url, "-s", "bad name", expect=1))
    assert_one_line_error(cli("workers", "-c", "postgresql://127.0.0.1:1/x", expect=1))
    assert_one_line_error(
        cli("run", "--once", "--tasks", str(tmp_path / "none.py"), "-c", database_url, expect=1)
    )
    result = cli("cron", "check", str(crontab), expect=1)
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------ run --once status


def test_once_exits_1_when_a_job_failed_permanently(
    cli: CliCall, database_url: str, tasks_file: Path
) -> None:
    cli("add", "polish_fail", "--max-attempts", "1", "-c", database_url)
    cli("add", "polish_ok", "-c", database_url)
    result = cli("run", "--once", "--tasks", str(tasks_file), "-c", database_url, expect=1)
    assert "Ran 2 job(s): 1 completed, 1 failed (1 permanently), 0 interrupted" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "Error: 1 job(s) failed permanently"


def test_once_exits_0_after_a_retryable_failure_unless_asked(
    cli: CliCall, database_url: str, tasks_file: Path
) -> None:
    cli("add", "polish_fail", "-c", database_url)
    result = cli("run", "--once", "--tasks", str(tasks_file), "-c", database_url)
    assert "1 failed (0 permanently)" in result.stdout

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("update graphile_worker._private_jobs set run_at = now()")
    result = cli(
        "run", "--once", "--fail-on-error", "--tasks", str(tasks_file), "-c", database_url,
        expect=1,
    )  # fmt: skip
    assert "1 failed (0 permanently)" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "Error: 1 attempt(s) failed (--fail-on-error)"


def test_fail_on_error_with_only_successes_exits_0(
    cli: CliCall, database_url: str, tasks_file: Path
) -> None:
    cli("add", "polish_ok", "-c", database_url)
    cli("run", "--once", "--fail-on-error", "--tasks", str(tasks_file), "-c", database_url)


# ---------------------------------------------------------------------------- crontab


def test_crontab_naming_an_unknown_task_is_warned_about(
    cli: CliCall, database_url: str, tasks_file: Path, tmp_path: Path
) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text("0 4 * * * polish_ok\n0 5 * * * polsh_ok\n0 6 * * * other_task\n")
    result = cli(
        "run", "--once", "--crontab", str(crontab), "--tasks", str(tasks_file),
        "-c", database_url,
    )  # fmt: skip
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, result.stderr
    assert "'other_task', 'polsh_ok'" in warnings[0]
    assert "'polish_ok'" not in warnings[0]


def test_crontab_of_known_tasks_is_not_warned_about(
    cli: CliCall, database_url: str, tasks_file: Path, tmp_path: Path
) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text("0 4 * * * polish_ok\n")
    result = cli(
        "run", "--once", "--crontab", str(crontab), "--tasks", str(tasks_file),
        "-c", database_url,
    )  # fmt: skip
    assert "WARNING" not in result.stderr


# ------------------------------------------------------------------------ CLI-speak


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--queue", ""), "--queue must not be empty; to have no --queue, leave it out"),
        (("--job-key", ""), "--job-key must not be empty; to have no --job-key, leave it out"),
        (("--priority", "40000"), "--priority must be between -32768 and 32767, not 40000"),
        (("--max-attempts", "0"), "--max-attempts must be between 1 and 32767, not 0"),
        (
            ("--job-key-mode", "preserve_run_at"),
            "--job-key-mode 'preserve_run_at' needs a --job-key",
        ),
        (("--queue", "q" * 129), "--queue must be at most 128 characters"),
    ],
)
def test_add_options_are_named_as_typed(
    cli: CliCall, options: tuple[str, ...], message: str
) -> None:
    # Refused before any connection: the URL is never used.
    result = cli("add", "task", *options, "-c", "postgresql://127.0.0.1:1/x", expect=1)
    assert_one_line_error(result, message)
    assert "None" not in result.stderr
    assert "_" not in result.stderr.replace("preserve_run_at", "")


def test_add_empty_task_speaks_cli(cli: CliCall) -> None:
    assert_one_line_error(cli("add", "", expect=1), "TASK must not be empty")


@pytest.mark.skipif(sys.platform == "win32", reason="--processes is POSIX only")
def test_log_level_after_run_reaches_worker_processes(
    empty_database_url: str, tasks_file: Path
) -> None:
    completed = run_subprocess(
        "run", "--once", "--processes", "2", "--log-level", "debug", "--tasks", str(tasks_file),
        "-c", empty_database_url,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    # The supervisor's migrate process logs each migration at debug level only.
    assert "applied graphile-worker migration 000020" in completed.stderr
