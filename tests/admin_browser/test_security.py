"""What the admin refuses: POSTs in read-only mode, POSTs without a CSRF token, markup in data."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from graphile_worker import JobSpec, SyncWorkerUtils

from ._support import USERNAME, AdminServer, Screenshots, csrf_token, expect, lock_jobs

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

CSRF_SECRET = "browser-test-csrf-secret"
ACTIONS = (
    "bulk-retry",
    "bulk-cancel",
    "bulk-delete",
    "action-retry",
    "action-cancel",
    "action-delete",
    "force-unlock",
    "sweep",
    "nav-add",
)
"""Every control that changes something; read-only mode shows none of them."""
SCRIPT = "<script>window.__xss = 1</script>"
IMAGE = '<img src=x onerror="window.__xss=1">'


def _expected_token(secret: str, principal: str) -> str:
    return hmac.new(secret.encode(), principal.encode(), hashlib.sha256).hexdigest()


def test_read_only_hides_every_action_and_refuses_posts_anyway(
    page: Page,
    start_admin: Callable[..., AdminServer],
    utils: SyncWorkerUtils,
    database_url: str,
    screenshot: Screenshots,
) -> None:
    admin = start_admin(read_only=True, csrf_secret=CSRF_SECRET)
    failed = utils.add_job("send_email", {"to": "ada@example.com"})
    utils.permanently_fail_jobs([failed.id], "SMTP 451")
    held = utils.add_job("resize_image", {"image": 1})
    lock_jobs(database_url, [held.id], "node-worker-1")

    for path in ("", "jobs", f"jobs/{failed.id}", f"jobs/{held.id}", "queues", "workers", "cron"):
        response = page.goto(admin(path))
        assert response is not None and response.status == 200, path
        expect(page.get_by_test_id("read-only")).to_be_visible()
        for action in ACTIONS:
            expect(page.get_by_test_id(action), f"{action} on /{path}").to_have_count(0)
        expect(page.locator('form[method="post" i]'), f"a form on /{path}").to_have_count(0)
        screenshot(page, path.replace("/", "-") or "overview")
    add_page = page.goto(admin("add"))
    assert add_page is not None and add_page.status in {403, 404}, "the add page is not there"

    # A valid token (the spec's HMAC of the user name), so only read-only mode refuses.
    token = _expected_token(CSRF_SECRET, USERNAME)
    page.goto(admin("jobs"))
    assert csrf_token(page) == token
    refused = {
        f"jobs/{failed.id}/retry": {},
        f"jobs/{failed.id}/cancel": {},
        f"jobs/{failed.id}/delete": {},
        f"jobs/{held.id}/delete": {},
        "jobs/bulk": {"action": "delete", "confirm": "2"},
        "workers/force-unlock": {"worker_id": "node-worker-1", "confirm": "1"},
        "workers/sweep": {},
        "add": {"task": "send_email", "payload": "{}"},
    }
    for path, form in refused.items():
        answer = page.request.post(admin(path), form={"csrf_token": token, **form}, max_redirects=0)
        assert answer.status == 403, f"POST /{path}: {answer.status}"
        assert "read-only" in answer.text(), f"POST /{path}: {answer.text()[:300]}"

    stored = utils.get_job(failed.id)
    assert stored is not None and stored.attempts == stored.max_attempts, "still failed"
    stored = utils.get_job(held.id)
    assert stored is not None and stored.locked_by == "node-worker-1", "still locked"
    assert utils.stats().total.total == 2, "nothing added, nothing deleted"


def test_a_post_without_a_valid_csrf_token_is_refused(
    page: Page, admin: AdminServer, utils: SyncWorkerUtils, screenshot: Screenshots
) -> None:
    job = utils.add_job("send_email", {"to": "ada@example.com"})
    utils.permanently_fail_jobs([job.id], "SMTP 451")
    page.goto(admin(f"jobs/{job.id}"))
    token = csrf_token(page)
    retry = admin(f"jobs/{job.id}/retry")

    # (form fields, headers) of each refused POST.
    attempts: dict[str, tuple[dict[str, str | float | bool], dict[str, str]]] = {
        "no token": ({}, {}),
        "a wrong token": ({"csrf_token": "0" * len(token)}, {}),
        "an empty header": ({}, {"X-CSRF-Token": ""}),
        "a cross-site request": ({"csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}),
    }
    for attempt, (form, headers) in attempts.items():
        response = page.request.post(retry, form=form, headers=headers, max_redirects=0)
        assert response.status == 403, f"{attempt}: {response.status}"
        if attempt != "a cross-site request":
            assert "CSRF token missing or invalid" in response.text(), attempt
    stored = utils.get_job(job.id)
    assert stored is not None and stored.attempts == stored.max_attempts, "refused: unchanged"

    # The same request with the page's token (here as the header scripts use) goes through.
    response = page.request.post(retry, headers={"X-CSRF-Token": token}, max_redirects=0)
    assert response.status == 303, response.status
    stored = utils.get_job(job.id)
    assert stored is not None and stored.attempts == 0, "retried"
    page.goto(admin(f"jobs/{job.id}"))
    expect(page.get_by_test_id("job-state")).to_have_text("ready")
    screenshot(page, "after-retry")


def test_markup_in_job_data_is_shown_as_text(
    page: Page, admin: AdminServer, utils: SyncWorkerUtils, screenshot: Screenshots
) -> None:
    payload = {"html": SCRIPT, "image": IMAGE, SCRIPT: [IMAGE]}
    error = f"ValueError: bad input {SCRIPT}\n{IMAGE}"
    job = utils.add_job("render_template", payload, spec=JobSpec(job_key=IMAGE))
    utils.permanently_fail_jobs([job.id], error)
    evil_task = utils.add_job(IMAGE, {}, spec=JobSpec(queue_name=SCRIPT))

    visits = [
        "",
        "jobs",
        f"jobs/{job.id}",
        f"jobs/{evil_task.id}",
        f"jobs?task={quote(IMAGE)}",
        f"jobs?older_than={quote(SCRIPT)}",
        f"jobs/{quote(SCRIPT)}",
        "queues",
        "workers",
    ]
    for number, path in enumerate(visits):
        page.goto(admin(path))
        assert page.evaluate("typeof window.__xss") == "undefined", path
        # Escaped markup never becomes elements, so nothing here leans on the CSP alone.
        scripts = page.locator("script:not([src])")
        expect(scripts, f"inline script on /{path}").to_have_count(0)
        expect(page.locator("[onerror]"), f"onerror attribute on /{path}").to_have_count(0)
        screenshot(page, f"visit-{number}")

    page.goto(admin(f"jobs/{job.id}"))
    pretty = json.dumps(payload, indent=2, ensure_ascii=False)
    assert page.get_by_test_id("job-payload").text_content() == pretty
    assert page.get_by_test_id("job-last-error").text_content() == error
    page.goto(admin(f"jobs/{evil_task.id}"))
    expect(page.get_by_test_id("job-task")).to_have_text(IMAGE)
    page.goto(admin(f"jobs?task={quote(IMAGE)}"))
    expect(page.locator('form#filters [name="task"]')).to_have_value(IMAGE)
    page.goto(admin(""))
    expect(page.locator("main#content")).to_contain_text(SCRIPT)
    assert page.evaluate("typeof window.__xss") == "undefined"
