"""Logging in, the overview's counts, and every page reachable from the navigation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from graphile_worker import JobSpec, SyncWorkerUtils

from ._support import PASSWORD, USERNAME, AdminServer, Screenshots, expect, lock_jobs

if TYPE_CHECKING:
    from playwright.sync_api import APIResponse, BrowserContext, Page, Response

pytestmark = pytest.mark.browser


def _seed_every_state(utils: SyncWorkerUtils, database_url: str) -> None:
    """Jobs in every state: 3 ready, 2 scheduled (one of them retrying), 1 locked, 2 failed."""
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    emails = [utils.add_job("send_email", {"to": f"user{n}@example.com"}) for n in range(4)]
    lock_jobs(database_url, [emails[0].id], "node-worker-1")
    utils.add_job("send_email", {"to": "later@example.com"}, spec=JobSpec(run_at=later))
    retrying = utils.add_job("resize_image", {"image": 7})
    utils.permanently_fail_jobs([retrying.id], "PIL.UnidentifiedImageError: image 7")
    utils.reschedule_jobs([retrying.id], run_at=later, attempts=1)
    reports = [
        utils.add_job("generate_report", {"month": month}, spec=JobSpec(queue_name="reports"))
        for month in ("2024-01", "2024-02")
    ]
    utils.permanently_fail_jobs([job.id for job in reports], "TimeoutError: warehouse")


def test_basic_auth_shows_the_overview_and_every_page(
    page: Page,
    admin: AdminServer,
    utils: SyncWorkerUtils,
    database_url: str,
    screenshot: Screenshots,
) -> None:
    _seed_every_state(utils, database_url)

    response = page.goto(admin())
    assert response is not None and response.status == 200
    counts = {"ready": 3, "scheduled": 2, "locked": 1, "retrying": 1, "failed": 2, "total": 8}
    for state, count in counts.items():
        expect(page.get_by_test_id(f"count-{state}")).to_have_text(str(count))
    tasks = page.get_by_test_id("task-row")
    expect(tasks).to_have_count(3)
    for task in ("send_email", "resize_image", "generate_report"):
        expect(page.locator(f'[data-testid="task-row"][data-task="{task}"]')).to_be_visible()
    expect(page.locator('[data-testid="queue-row"][data-queue="reports"]')).to_be_visible()
    expect(page.get_by_test_id("oldest-ready")).to_be_visible()
    expect(page.locator('svg[data-testid="throughput-chart"]')).to_be_attached()
    expect(page.get_by_test_id("live-toggle")).to_be_visible()
    expect(page.get_by_test_id("read-only")).to_have_count(0)
    screenshot(page, "overview")

    # Every page of the navigation opens, and the worker holding a job shows up, with a
    # button to release its jobs.
    for name in ("jobs", "queues", "workers", "cron", "add", "overview"):
        page.get_by_test_id(f"nav-{name}").click()
        page.wait_for_load_state()
        expect(page.locator("main#content")).to_be_visible()
        screenshot(page, name)
        if name == "jobs":
            expect(page.get_by_test_id("job-row")).to_have_count(8)
            expect(page.get_by_test_id("bulk-retry")).to_be_visible()
        if name == "workers":
            holder = page.locator('[data-testid="worker-row"][data-worker-id="node-worker-1"]')
            expect(holder).to_be_visible()
            expect(holder.get_by_test_id("worker-status")).to_have_text("unregistered")
            expect(holder.get_by_test_id("force-unlock")).to_be_visible()
            expect(page.get_by_test_id("sweep")).to_be_visible()
        if name == "add":
            expect(page.locator("form#add-job")).to_be_visible()
    expect(page.get_by_test_id("count-total")).to_have_text("8")


def test_a_wrong_password_gets_401_and_nothing_else(
    new_context: Callable[..., BrowserContext],
    admin: AdminServer,
    utils: SyncWorkerUtils,
    screenshot: Screenshots,
) -> None:
    from playwright.sync_api import Error

    utils.add_job("secret_task", {"api_key": "sk-do-not-show"})
    paths = ("", "jobs", "jobs/1", "add")

    def assert_refused(response: APIResponse | Response, what: str) -> None:
        assert response.status == 401, f"{what}: {response.status}"
        assert response.headers["www-authenticate"].startswith("Basic"), what
        body = response.text()
        for leak in ("secret_task", "sk-do-not-show", "csrf-token", "data-testid"):
            assert leak not in body, f"{what}: the 401 page shows {leak!r}"

    attempts = {
        "no credentials": None,
        "wrong password": {"username": USERNAME, "password": PASSWORD + "x"},
        "wrong user": {"username": "root", "password": PASSWORD},
    }
    for attempt, credentials in attempts.items():
        context = new_context(http_credentials=credentials)
        page = context.new_page()
        for path in paths:
            # Chromium shows the 401 page, or (without credentials to try) an error page of
            # its own: either way nothing of the admin.
            try:
                response = page.goto(admin(path))
            except Error as error:
                assert "ERR_INVALID_AUTH_CREDENTIALS" in str(error), error
            else:
                assert response is not None
                assert_refused(response, f"{attempt}, page /{path}")
                name = f"{attempt} {path or 'overview'}"
                screenshot(page, name.replace(" ", "-").replace("/", "-"))
            # The server's own answer, without the browser in between.
            assert_refused(context.request.get(admin(path)), f"{attempt}, /{path}")
