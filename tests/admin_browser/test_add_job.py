"""Adding a job through the form, with its JSON checked in the page as it is typed."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from graphile_worker import SyncWorkerUtils

from ._support import AdminServer, Screenshots, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def test_add_a_job_with_its_json_checked_live(
    page: Page, admin: AdminServer, utils: SyncWorkerUtils, screenshot: Screenshots
) -> None:
    page.goto(admin())
    page.get_by_test_id("nav-add").click()
    form = page.locator("form#add-job")
    payload_box = form.locator('[name="payload"]')
    expect(payload_box).to_have_value("{}")
    message = page.get_by_test_id("payload-error")
    submit = page.get_by_test_id("add-submit")
    add_page = page.url

    form.locator('[name="task"]').fill("send_email")
    payload_box.fill('{"to": "ada@example.com",')
    expect(message).to_be_visible()
    expect(message).not_to_have_text("")
    screenshot(page, "bad-json")
    # Submitting is blocked in the page: the button is disabled, or a click (or Enter in a
    # field) leaves this very document where it is instead of posting the form.
    page.evaluate("window.__sameDocument = true")
    posts: list[str] = []
    page.on(
        "request", lambda request: posts.append(request.url) if request.method == "POST" else None
    )
    if submit.is_enabled():
        submit.click()
    form.locator('[name="task"]').press("Enter")
    expect(message).to_be_visible()
    assert page.url == add_page
    assert page.evaluate("window.__sameDocument") is True, "the form was submitted"
    assert posts == [], "the form was posted"
    assert utils.stats().total.total == 0, "nothing was added"

    payload = {"to": "ada@example.com", "lines": ["Hello", "Zoë"]}
    payload_box.fill(json.dumps(payload))
    expect(message).to_be_hidden()
    expect(submit).to_be_enabled()
    form.locator('[name="queue"]').fill("emails")
    form.locator('[name="max_attempts"]').fill("3")
    form.locator('[name="priority"]').fill("2")
    form.locator('[name="flags"]').fill("slow, urgent")
    screenshot(page, "good-json")
    submit.click()

    expect(page).to_have_url(re.compile(r"/jobs/\d+(\?|$)"))
    found = re.search(r"/jobs/(\d+)", page.url)
    assert found is not None
    job_id = int(found[1])
    expect(page.get_by_test_id("flash")).to_be_visible()
    expect(page.get_by_test_id("job-task")).to_have_text("send_email")
    expect(page.get_by_test_id("job-state")).to_have_text("ready")
    expect(page.get_by_test_id("job-attempts")).to_have_text("0/3")
    assert page.get_by_test_id("job-payload").text_content() == json.dumps(
        payload, indent=2, ensure_ascii=False
    )
    screenshot(page, "added")
    job = utils.get_job(job_id)
    assert job is not None
    assert (job.task_identifier, job.payload, job.queue_name) == ("send_email", payload, "emails")
    assert (job.max_attempts, job.priority, set(job.flags)) == (3, 2, {"slow", "urgent"})
