"""Fixtures for the admin's browser tests: Chromium through Playwright, the admin served by
uvicorn over the test's own database, and real worker processes.

Chromium is the distribution's (/usr/bin/chromium); Playwright never downloads a browser.
Without Chromium or the ``playwright`` package the tests are skipped, or fail when ``CI``
is set, so a CI machine cannot silently lose them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from graphile_worker import SyncWorkerUtils

from ._support import (
    ACTION_TIMEOUT_MS,
    CHROMIUM,
    PASSWORD,
    USERNAME,
    VIEWPORT,
    AdminServer,
    PageProblems,
    Screenshots,
    WorkerProcess,
    missing_tool,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for every browser test.

    Package-scoped rather than session-scoped on purpose: Playwright's sync API leaves its
    own asyncio loop marked as running in the main thread for as long as it is started, so
    the anyio tests elsewhere in the suite could not start theirs. The browser is closed as
    soon as the last test of this directory has run.
    """
    if not os.access(CHROMIUM, os.X_OK):
        missing_tool(
            f"{CHROMIUM} not found (or not executable); install the distribution's "
            f"chromium package (apt-get install chromium) to run the admin's browser tests"
        )
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        missing_tool("the playwright package is not installed; pip install playwright")

    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    playwright = sync_playwright().start()
    try:
        # Chromium's sandbox cannot start as root (containers, CI runners).
        arguments = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=arguments)
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def new_context(
    browser: Browser, start_admin: Callable[..., AdminServer]
) -> Iterator[Callable[..., BrowserContext]]:
    """Open a browser context (``http_credentials`` default to the right ones); every
    context is checked for page, console and server errors, then closed, after the test.

    Asking for ``start_admin`` makes the contexts close before the admin servers stop, so
    a live refresh never meets a server that is gone.
    """
    opened: list[tuple[BrowserContext, PageProblems]] = []

    def open_context(**options: Any) -> BrowserContext:
        options.setdefault("http_credentials", {"username": USERNAME, "password": PASSWORD})
        context = browser.new_context(viewport=VIEWPORT, **options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        opened.append((context, PageProblems(context)))
        return context

    yield open_context
    for context, _ in opened:
        context.close()
    for _, problems in opened:
        problems.check()


@pytest.fixture
def page(new_context: Callable[..., BrowserContext]) -> Page:
    """A page in a fresh context that logs in with the right basic-auth credentials."""
    return new_context().new_page()


@pytest.fixture
def screenshot(tmp_path: Path) -> Screenshots:
    """``screenshot(page, "name")``: keep a picture of each page visited, in ``tmp_path``."""
    directory = tmp_path / "screenshots"
    directory.mkdir()
    return Screenshots(directory)


@pytest.fixture
def start_admin(database_url: str) -> Iterator[Callable[..., AdminServer]]:
    """Serve ``admin_app(database_url, ...)`` with basic auth; ``start_admin(read_only=True)``.

    Live refresh runs every half second unless ``refresh_seconds`` says otherwise, so tests
    that watch a page change do not wait long.
    """
    from graphile_worker.admin import AdminAuth, admin_app

    servers: list[AdminServer] = []

    def start(**options: Any) -> AdminServer:
        options.setdefault("refresh_seconds", 0.5)
        app = admin_app(database_url, auth=AdminAuth.basic(PASSWORD, username=USERNAME), **options)
        server = AdminServer(app)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def admin(start_admin: Callable[..., AdminServer]) -> AdminServer:
    """The admin, with actions enabled; ``admin("jobs")`` is the URL of its jobs page."""
    return start_admin()


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[[str], WorkerProcess]]:
    """``start_worker("trio")``: a ``graphile-worker run`` process on that runtime, running
    the tasks of browser_tasks.py; stopped with SIGTERM after the test."""
    workers: list[WorkerProcess] = []

    def start(runtime: str) -> WorkerProcess:
        worker = WorkerProcess(database_url, tmp_path, runtime)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def utils(database_url: str) -> Iterator[SyncWorkerUtils]:
    """Worker utilities over the test's database, to set up jobs and check what changed."""
    with SyncWorkerUtils.connect(database_url) as opened:
        yield opened
