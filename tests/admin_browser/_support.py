"""What the browser tests share: the admin served over HTTP, a worker process, page checks.

The admin app runs under a real uvicorn server in a thread of the test process, bound to a
free port on 127.0.0.1; the worker is ``graphile-worker run`` in a subprocess, so the jobs
the browser watches are claimed, run and failed exactly as in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from ..chaos.harness import subprocess_environment

if TYPE_CHECKING:
    from playwright.sync_api import (
        BrowserContext,
        ConsoleMessage,
        Page,
        Response,
        ViewportSize,
        WebError,
        expect,
    )
    from starlette.applications import Starlette
else:

    def expect(*args: Any, **kwargs: Any) -> Any:
        """Playwright's ``expect``, imported only once a test is past the Playwright check."""
        from playwright.sync_api import expect as playwright_expect

        return playwright_expect(*args, **kwargs)


__all__ = [
    "ACTION_TIMEOUT_MS",
    "CHROMIUM",
    "PASSWORD",
    "SCREENSHOTS_ENV",
    "TASKS_FILE",
    "USERNAME",
    "VIEWPORT",
    "AdminServer",
    "PageProblems",
    "Screenshots",
    "WorkerProcess",
    "csrf_token",
    "expect",
    "job_row_ids",
    "lock_jobs",
    "missing_tool",
    "wait_until",
]

CHROMIUM = Path("/usr/bin/chromium")
"""The distribution's Chromium: Playwright's own browser downloads are not used."""
USERNAME = "admin"
PASSWORD = "correct horse battery staple"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
TASKS_FILE = Path(__file__).with_name("browser_tasks.py")
ACTION_TIMEOUT_MS = 10_000
"""How long a Playwright action or assertion waits before failing the test."""
SCREENSHOTS_ENV = "GRAPHILE_WORKER_SCREENSHOTS"
"""Directory to write the documentation screenshots (admin-overview.png, admin-job.png) to."""


def missing_tool(reason: str) -> NoReturn:
    """Skip with ``reason``; fail instead in CI, where a skip would hide lost coverage."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 15) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` once ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class AdminServer:
    """The admin app served by uvicorn on a free port of 127.0.0.1, in a daemon thread."""

    def __init__(self, app: Starlette) -> None:
        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        # log_config=None leaves the process's logging alone, so uvicorn's error log (an
        # exception in the app) reaches pytest's log capture and shows with a failure.
        config = uvicorn.Config(
            app, lifespan="on", log_config=None, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"admin-server-{port}",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()
        wait_until(
            lambda: self._server.started or not self._thread.is_alive(),
            "the admin server to start",
        )
        if not self._server.started:
            raise AssertionError("the admin server stopped while starting; see the log above")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()
        assert not self._thread.is_alive(), "the admin server did not stop within 15 s"

    def __call__(self, path: str = "") -> str:
        """The absolute URL of ``path`` (relative to the app's root)."""
        return self.url + path.lstrip("/")


class WorkerProcess:
    """``graphile-worker run`` with :data:`TASKS_FILE` over one database, output to files."""

    def __init__(self, database_url: str, directory: Path, runtime: str) -> None:
        name = f"worker-{runtime}-{uuid.uuid4().hex[:6]}"
        self.stderr_path = directory / f"{name}.stderr"
        self.runtime = runtime
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "graphile_worker.cli", "run",
                    "--connection", database_url,
                    "--tasks", str(TASKS_FILE),
                    "--runtime", runtime,
                    # Retried jobs are not announced with NOTIFY: poll often so a retry
                    # from the admin runs at once.
                    "--poll-interval", "100",
                    "--shutdown-grace-period", "500",
                ],
                stdout=stderr,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=subprocess_environment({}),
                cwd=directory,
            )  # fmt: skip

    def describe(self) -> str:
        status = self.process.poll()
        state = "running" if status is None else f"exited with status {status}"
        output = self.stderr_path.read_text(errors="replace")
        return f"worker on {self.runtime} {state}; its output:\n{output}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class PageProblems:
    """What a person would notice is broken: script errors, server errors, refused scripts.

    Records every uncaught page error, every console error (a script or style the
    Content-Security-Policy refused shows up there), and every 5xx response, for the whole
    browser context. Console lines about 4xx responses are expected where a test provokes
    them (401, 403, 404) and are left out.
    """

    def __init__(self, context: BrowserContext) -> None:
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.server_errors: list[str] = []
        context.on("weberror", self._on_page_error)
        context.on("console", self._on_console)
        context.on("response", self._on_response)

    def _on_page_error(self, error: WebError) -> None:
        self.page_errors.append(str(error.error))

    def _on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        client_error = "the server responded with a status of 4" in text
        if message.type == "error" and not client_error:
            self.console_errors.append(text)

    def _on_response(self, response: Response) -> None:
        if response.status >= 500:
            self.server_errors.append(f"{response.status} {response.request.method} {response.url}")

    def check(self) -> None:
        problems = [
            *(f"page error: {error}" for error in self.page_errors),
            *(f"console error: {error}" for error in self.console_errors),
            *(f"server error: {error}" for error in self.server_errors),
        ]
        # A live refresh repeats the same failure every period: say each one once.
        counted = Counter(problems)
        lines = [f"{text} (x{count})" if count > 1 else text for text, count in counted.items()]
        assert not lines, "the browser saw problems:\n" + "\n".join(lines)


class Screenshots:
    """Numbered screenshots of every page a test visits, in the test's ``tmp_path``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._taken = 0

    def __call__(self, page: Page, name: str) -> Path:
        self._taken += 1
        path = self.directory / f"{self._taken:02d}-{name}.png"
        page.screenshot(path=path)
        return path


def csrf_token(page: Page) -> str:
    """The CSRF token the current page carries for its scripts."""
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token, "the page has no <meta name='csrf-token'>"
    return token


def job_row_ids(page: Page) -> list[int]:
    """The ids of the job rows shown on a jobs page, top to bottom."""
    ids = page.locator('[data-testid="job-row"]').evaluate_all(
        "rows => rows.map(row => row.dataset.jobId)"
    )
    return [int(value) for value in ids]


def lock_jobs(database_url: str, ids: list[int], worker_id: str) -> None:
    """Mark jobs as locked by ``worker_id``, as a worker (Node's, say) does when it claims
    them; the admin must show them locked and refuse to change them."""
    import psycopg

    with contextlib.closing(psycopg.connect(database_url, autocommit=True)) as connection:
        connection.execute(
            "update graphile_worker._private_jobs set locked_at = now(), locked_by = %s "
            "where id = any(%s)",
            (worker_id, ids),
        )
