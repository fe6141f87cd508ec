"""``graphile-worker admin``: the real command in its own process, reached over HTTP.

Each served test starts ``python -m graphile_worker.cli admin --port 0`` against its own
database, waits for the ready line on stderr (which names the port the system chose and,
for a generated password, the password), talks to it with httpx, and stops it with a signal,
expecting a clean exit. Refusals that happen before anything starts run in-process, except
the one for ``--auth none`` on a public address, which is checked on the real process too.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

import graphile_worker
from graphile_worker.cli._admin import is_loopback

from .conftest import UNREACHABLE_URL, CliCall, assert_one_line_error, run_subprocess

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals are sent the POSIX way")

SOURCE_ROOT = str(Path(graphile_worker.__file__).resolve().parents[1])
"""Where this test imports graphile_worker from: the subprocess must run the same code."""

READY = re.compile(r"^graphile-worker admin on (?P<url>http://\S+/) \(auth: (?P<auth>.*)\)")
GENERATED = re.compile(r"generated password: (?P<password>[A-Za-z0-9_-]+)")
START_TIMEOUT = 30.0

ENVIRONMENT_NAMES = (
    "DATABASE_URL",
    "GRAPHILE_WORKER_SCHEMA",
    "GRAPHILE_WORKER_LOG_LEVEL",
    "GRAPHILE_WORKER_ADMIN_PASSWORD",
    "GRAPHILE_WORKER_ADMIN_USERNAME",
    "GRAPHILE_WORKER_ADMIN_TOKEN",
    "GRAPHILE_WORKER_ADMIN_SECRET",
)


@pytest.fixture(autouse=True)
def _no_admin_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs see the test's environment: keep a developer's admin settings out."""
    for name in ENVIRONMENT_NAMES:
        monkeypatch.delenv(name, raising=False)


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without the variables the command reads, plus ``extra``.

    PYTHONPATH is made absolute and put first, so that the subprocess, whose working
    directory is elsewhere, imports the same graphile_worker as this test.
    """
    environment = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_NAMES}
    inherited = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = os.pathsep.join(
        [
            SOURCE_ROOT,
            *([os.path.abspath(p) for p in inherited.split(os.pathsep)] if inherited else []),
        ]
    )
    environment.update(extra)
    return environment


class Admin:
    """One running ``graphile-worker admin`` subprocess; its stderr goes to a file."""

    def __init__(self, directory: Path, args: tuple[str, ...], env: Mapping[str, str]) -> None:
        self.stderr_path = directory / "admin-stderr.txt"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "graphile_worker.cli", "admin", "--port", "0", *args],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=_environment(env),
                cwd=directory,
            )
        self.ready = self._wait_for_ready_line()
        self.url = self.ready["url"]

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def _wait_for_ready_line(self) -> re.Match[str]:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for line in self.stderr.splitlines():
                found = READY.match(line)
                if found is not None:
                    return found
            assert self.process.poll() is None, f"admin exited early:\n{self.stderr}"
            assert time.monotonic() < deadline, f"no ready line:\n{self.stderr}"
            time.sleep(0.05)

    def stop(self, signal_number: int = signal.SIGTERM) -> int:
        """Send ``signal_number`` and wait for the exit status."""
        self.process.send_signal(signal_number)
        return self.process.wait(timeout=20)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def served(tmp_path: Path, *args: str, env: Mapping[str, str] | None = None) -> Iterator[Admin]:
    """Run the admin until the block ends, then stop it with SIGTERM and expect status 0."""
    admin = Admin(tmp_path, args, env or {})
    try:
        yield admin
        status = admin.stop()
        assert status == 0, admin.stderr
        assert "Traceback" not in admin.stderr
    finally:
        admin.kill()


def _add_job(database_url: str, task: str, payload: str = "{}") -> int:
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "select (graphile_worker.add_job(%s, %s::json)).id", (task, payload)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _csrf_token(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


class TestBasicAuth:
    def test_generated_password_is_printed_once_and_works(
        self, database_url: str, tmp_path: Path
    ) -> None:
        job_id = _add_job(database_url, "send_email", '{"to": "ada@example.com"}')
        with served(tmp_path, "-c", database_url) as admin:
            found = GENERATED.search(admin.ready["auth"])
            assert found is not None, admin.ready.group(0)
            password = found["password"]
            assert "user 'admin'" in admin.ready["auth"]
            with httpx.Client(base_url=admin.url, auth=("admin", password)) as client:
                overview = client.get("/")
                assert overview.status_code == 200
                assert 'data-testid="count-total"' in overview.text
                detail = client.get(f"/jobs/{job_id}")
                assert detail.status_code == 200
                assert "send_email" in detail.text
                assert "ada@example.com" in detail.text
            wrong = httpx.get(admin.url, auth=("admin", password + "x"))
            assert wrong.status_code == 401
            assert wrong.headers["www-authenticate"].startswith("Basic")
            assert httpx.get(admin.url).status_code == 401
        assert admin.stderr.count(password) == 1

    def test_password_and_username_from_the_environment(
        self, database_url: str, tmp_path: Path
    ) -> None:
        secret = "correct horse battery staple"
        env = {"GRAPHILE_WORKER_ADMIN_PASSWORD": secret, "GRAPHILE_WORKER_ADMIN_USERNAME": "ops"}
        with served(tmp_path, "-c", database_url, env=env) as admin:
            assert "user 'ops'" in admin.ready["auth"]
            assert "password from $GRAPHILE_WORKER_ADMIN_PASSWORD" in admin.ready["auth"]
            assert httpx.get(admin.url, auth=("ops", secret)).status_code == 200
            assert httpx.get(admin.url, auth=("admin", secret)).status_code == 401
        assert secret not in admin.stderr


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg", "psycopg-threaded", "psycopg-anyio"])
def test_every_driver_serves_the_pages(database_url: str, tmp_path: Path, driver: str) -> None:
    job_id = _add_job(database_url, "resize")
    env = {"GRAPHILE_WORKER_ADMIN_TOKEN": "t0ken-for-tests"}
    with served(
        tmp_path, "-c", database_url, "--driver", driver, "--auth", "bearer", env=env
    ) as admin:
        headers = {"Authorization": "Bearer t0ken-for-tests"}
        with httpx.Client(base_url=admin.url, headers=headers) as client:
            for path in ("/", "/jobs", f"/jobs/{job_id}", "/queues", "/workers", "/cron", "/add"):
                assert client.get(path).status_code == 200, path
            rows = client.get("/jobs").text
            assert f'data-job-id="{job_id}"' in rows


class TestTokenAuth:
    def test_bearer_token_from_the_environment(self, database_url: str, tmp_path: Path) -> None:
        env = {"GRAPHILE_WORKER_ADMIN_TOKEN": "s3cret-token"}
        with served(tmp_path, "-c", database_url, "--auth", "bearer", env=env) as admin:
            assert admin.ready["auth"] == "bearer, token from $GRAPHILE_WORKER_ADMIN_TOKEN"
            good = httpx.get(admin.url, headers={"Authorization": "Bearer s3cret-token"})
            assert good.status_code == 200
            wrong = httpx.get(admin.url, headers={"Authorization": "Bearer s3cret-tokem"})
            assert wrong.status_code == 401
            assert wrong.headers["www-authenticate"].startswith("Bearer")
            assert httpx.get(admin.url).status_code == 401
        assert "s3cret-token" not in admin.stderr

    def test_header_token_with_a_custom_header_name(
        self, database_url: str, tmp_path: Path
    ) -> None:
        env = {"GRAPHILE_WORKER_ADMIN_TOKEN": "h3ader-token"}
        args = ("-c", database_url, "--auth", "header", "--header-name", "X-Ops-Key")
        with served(tmp_path, *args, env=env) as admin:
            assert "header X-Ops-Key" in admin.ready["auth"]
            assert httpx.get(admin.url, headers={"X-Ops-Key": "h3ader-token"}).status_code == 200
            assert httpx.get(admin.url, headers={"X-Ops-Key": "nope"}).status_code == 401
            default_name = {"X-Admin-Token": "h3ader-token"}
            assert httpx.get(admin.url, headers=default_name).status_code == 401

    def test_no_auth_on_loopback_with_the_default_crontab(
        self, database_url: str, tmp_path: Path
    ) -> None:
        (tmp_path / "crontab").write_text("0 4 * * * nightly_report ?id=nightly\n")
        with served(tmp_path, "-c", database_url, "--auth", "none") as admin:
            assert admin.ready["auth"] == "none, clients on this machine only"
            assert httpx.get(admin.url).status_code == 200
            cron = httpx.get(admin.url + "cron")
            assert cron.status_code == 200
            assert 'data-testid="cron-row" data-identifier="nightly"' in cron.text


def test_read_only_refuses_every_change(database_url: str, tmp_path: Path) -> None:
    job_id = _add_job(database_url, "nightly_report")
    env = {"GRAPHILE_WORKER_ADMIN_TOKEN": "read-only-token"}
    args = ("-c", database_url, "--auth", "bearer", "--read-only")
    with served(tmp_path, *args, env=env) as admin:
        assert admin.ready["auth"].endswith("; read-only")
        headers = {"Authorization": "Bearer read-only-token"}
        with httpx.Client(base_url=admin.url, headers=headers) as client:
            page = client.get(f"/jobs/{job_id}")
            assert page.status_code == 200
            assert 'data-testid="read-only"' in page.text
            assert 'data-testid="action-delete"' not in page.text
            token = _csrf_token(page.text)
            refused = client.post(f"/jobs/{job_id}/delete", data={"csrf_token": token})
            assert refused.status_code == 403
            assert "read-only" in refused.text
            added = client.post(
                "/add", data={"csrf_token": token, "task": "sneaky", "payload": "{}"}
            )
            assert added.status_code == 403
    with psycopg.connect(database_url) as connection:
        tasks = connection.execute("select task_identifier from graphile_worker.jobs").fetchall()
    assert tasks == [("nightly_report",)]


def test_root_path_prefixes_the_links(database_url: str, tmp_path: Path) -> None:
    """Behind a proxy that strips /ops/jobs, the app's own links still carry the prefix."""
    args = ("-c", database_url, "--auth", "none", "--root-path", "/ops/jobs")
    with served(tmp_path, *args) as admin:
        assert "links use the prefix /ops/jobs" in admin.ready.string
        page = httpx.get(admin.url + "jobs")
        assert page.status_code == 200
        assert 'href="/ops/jobs/' in page.text


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_it_cleanly(database_url: str, tmp_path: Path, signal_number: int) -> None:
    admin = Admin(tmp_path, ("-c", database_url, "--auth", "none"), {})
    try:
        # A keep-alive connection from a browser must not hold the stop up.
        with httpx.Client() as client:
            assert client.get(admin.url).status_code == 200
            assert admin.stop(signal_number) == 0, admin.stderr
        assert "Traceback" not in admin.stderr
        with pytest.raises(httpx.ConnectError):
            httpx.get(admin.url)
    finally:
        admin.kill()


class TestRefusals:
    def test_no_auth_on_a_public_address_is_refused_before_starting(self) -> None:
        # The database is unreachable: the refusal must come before any connection.
        completed = run_subprocess(
            "admin", "--auth", "none", "--host", "0.0.0.0", "-c", UNREACHABLE_URL,
            env={"PYTHONPATH": _environment({})["PYTHONPATH"]},
        )  # fmt: skip
        assert completed.returncode == 2, completed.stderr
        assert "Traceback" not in completed.stderr
        (line,) = completed.stderr.strip().splitlines()
        assert line.startswith("Error: --auth none on --host 0.0.0.0 ")
        assert "127.0.0.1" in line and "--auth basic" in line

    @pytest.mark.parametrize("host", ["::", "192.0.2.10", "admin.example.com"])
    def test_no_auth_on_any_other_non_loopback_host(self, cli: CliCall, host: str) -> None:
        result = cli("admin", "--auth", "none", "--host", host, "-c", UNREACHABLE_URL, expect=2)
        assert f"--auth none on --host {host} " in result.stderr

    @pytest.mark.parametrize("mode", ["bearer", "header"])
    def test_token_modes_need_the_token_variable(self, cli: CliCall, mode: str) -> None:
        result = cli("admin", "--auth", mode, "-c", UNREACHABLE_URL, expect=2)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(
            f"Error: --auth {mode} needs the token in $GRAPHILE_WORKER_ADMIN_TOKEN"
        )

    def test_an_empty_secret_is_refused(self, cli: CliCall) -> None:
        env = {"GRAPHILE_WORKER_ADMIN_PASSWORD": ""}
        result = cli("admin", "-c", UNREACHABLE_URL, env=env, expect=2)
        assert "$GRAPHILE_WORKER_ADMIN_PASSWORD is set but empty" in result.stderr

    def test_options_of_another_auth_mode_are_refused(self, cli: CliCall) -> None:
        env = {"GRAPHILE_WORKER_ADMIN_TOKEN": "x-token"}
        result = cli("admin", "--auth", "bearer", "--username", "ops", env=env, expect=2)
        assert "--username only applies to --auth basic" in result.stderr
        result = cli("admin", "--header-name", "X-Key", expect=2)
        assert "--header-name only applies to --auth header" in result.stderr

    def test_without_the_admin_extra_names_the_install_command(
        self, cli: CliCall, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now fails
        result = cli("admin", "-c", UNREACHABLE_URL, expect=1)
        assert_one_line_error(result, "uvicorn", "pip install 'graphile-worker[admin]'")

    def test_bad_root_path(self, cli: CliCall) -> None:
        result = cli("admin", "--root-path", "admin/", "-c", UNREACHABLE_URL, expect=2)
        assert "--root-path 'admin/' must start with /" in result.stderr

    def test_bad_crontab_line_is_reported_before_connecting(
        self, cli: CliCall, tmp_path: Path
    ) -> None:
        crontab = tmp_path / "crontab"
        crontab.write_text("61 * * * * report\n")
        result = cli("admin", "--crontab", str(crontab), "-c", UNREACHABLE_URL, expect=1)
        assert "PostgreSQL at" not in result.stderr
        assert "Error:" in result.stderr

    def test_unreachable_database_is_one_line(self, cli: CliCall) -> None:
        result = cli("admin", "-c", UNREACHABLE_URL, expect=1)
        assert_one_line_error(result, "PostgreSQL at 127.0.0.1:1 (database 'nowhere')")
        assert "secret" not in result.stderr

    def test_database_without_the_schema_names_the_fix(
        self, cli: CliCall, empty_database_url: str
    ) -> None:
        result = cli("admin", "-c", empty_database_url, expect=1)
        assert_one_line_error(
            result, "is not installed or not up to date", "graphile-worker migrate"
        )

    def test_a_short_csrf_secret_is_one_line(self, cli: CliCall, database_url: str) -> None:
        env = {"GRAPHILE_WORKER_ADMIN_SECRET": "too-short"}
        result = cli("admin", "-c", database_url, "--port", "0", env=env, expect=1)
        assert_one_line_error(result, "CSRF secret", "at least 16 characters")

    def test_a_busy_port_is_one_line(self, cli: CliCall, database_url: str) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = str(taken.getsockname()[1])
            result = cli("admin", "-c", database_url, "--port", port, expect=1)
        assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "choose another --port")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_help_names_the_options(cli: CliCall) -> None:
    output = cli("admin", "--help").stdout
    assert output.startswith("Usage: graphile-worker admin [OPTIONS]")
    for option in (
        "-c, --connection URL", "--host ADDRESS", "--port", "--auth [basic|bearer|header|none]",
        "--username NAME", "--header-name NAME", "--read-only", "--crontab FILE",
        "--root-path PREFIX", "GRAPHILE_WORKER_ADMIN_PASSWORD", "GRAPHILE_WORKER_ADMIN_TOKEN",
    ):  # fmt: skip
        assert option in output
