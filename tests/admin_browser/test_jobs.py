"""The jobs list and a job's page: filters, paging, details, retry and bulk cancel."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from graphile_worker import JobSpec, SyncWorkerUtils

from ._support import (
    AdminServer,
    Screenshots,
    WorkerProcess,
    expect,
    job_row_ids,
    lock_jobs,
    wait_until,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def test_filter_by_state_and_task_then_page_through(
    page: Page, admin: AdminServer, utils: SyncWorkerUtils, screenshot: Screenshots
) -> None:
    failed_emails = [utils.add_job("send_email", {"n": n}) for n in range(7)]
    utils.permanently_fail_jobs([job.id for job in failed_emails], "SMTP 451")
    for n in range(3):
        utils.add_job("send_email", {"ready": n})
    failed_reports = [utils.add_job("generate_report", {"n": n}) for n in range(4)]
    utils.permanently_fail_jobs([job.id for job in failed_reports], "no data")

    page.goto(admin("jobs"))
    expect(page.get_by_test_id("job-row")).to_have_count(14)
    filters = page.locator("form#filters")
    filters.locator('input[name="state"][value="failed"]').check()
    filters.locator('[name="task"]').fill("send_email")
    filters.locator('[name="limit"]').fill("3")
    screenshot(page, "filters-filled")
    filters.get_by_test_id("apply-filters").click()
    expect(page).to_have_url(re.compile(r"state=failed"))
    expect(page).to_have_url(re.compile(r"task=send_email"))

    seen: list[int] = []
    for page_number, expected_rows in enumerate((3, 3, 1), start=1):
        rows = page.get_by_test_id("job-row")
        expect(rows).to_have_count(expected_rows)
        for state in rows.evaluate_all("rows => rows.map(row => row.dataset.state)"):
            assert state == "failed"
        seen += job_row_ids(page)
        screenshot(page, f"filtered-page-{page_number}")
        # The filter survives paging: the form still shows it.
        expect(filters.locator('input[name="state"][value="failed"]')).to_be_checked()
        expect(filters.locator('[name="task"]')).to_have_value("send_email")
        if expected_rows == 3:
            page.get_by_test_id("next-page").click()
    expect(page.get_by_test_id("next-page")).to_have_count(0)
    assert seen == sorted((job.id for job in failed_emails), reverse=True), "newest first"


def test_a_jobs_page_shows_its_payload_and_last_error(
    page: Page, admin: AdminServer, utils: SyncWorkerUtils, screenshot: Screenshots
) -> None:
    payload = {
        "to": "zoë@example.com",
        "subject": "Your order 東京-42 has shipped",
        "items": [{"sku": "A-1", "quantity": 2}],
        "gift": None,
    }
    job = utils.add_job(
        "send_email",
        payload,
        spec=JobSpec(queue_name="emails", max_attempts=5, priority=3, job_key="order-42"),
    )
    error = "smtplib.SMTPServerDisconnected: Connection unexpectedly closed\n  at line 2"
    utils.permanently_fail_jobs([job.id], error)
    utils.add_job("send_email", {"other": True})

    page.goto(admin("jobs"))
    page.locator(f'[data-testid="job-row"][data-job-id="{job.id}"] td').first.locator("a").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{job.id}$"))
    expect(page.get_by_test_id("job-state")).to_have_text("failed")
    expect(page.get_by_test_id("job-task")).to_have_text("send_email")
    expect(page.get_by_test_id("job-attempts")).to_have_text("5/5")
    pretty = json.dumps(payload, indent=2, ensure_ascii=False)
    assert page.get_by_test_id("job-payload").text_content() == pretty
    assert page.get_by_test_id("job-last-error").text_content() == error
    content = page.locator("main#content")
    for shown in ("emails", "order-42"):
        expect(content).to_contain_text(shown)
    for action in ("retry", "delete"):
        expect(page.get_by_test_id(f"action-{action}")).to_be_visible()
    screenshot(page, "job")


def test_retry_a_failed_job_and_watch_the_worker_run_it(
    page: Page,
    admin: AdminServer,
    utils: SyncWorkerUtils,
    start_worker: Callable[[str], WorkerProcess],
    tmp_path: Path,
    screenshot: Screenshots,
) -> None:
    marker = tmp_path / "ran.txt"
    job = utils.add_job("succeed", {"marker": str(marker)})
    utils.permanently_fail_jobs([job.id], "RuntimeError: upstream was down")
    # The worker runs on trio here (on asyncio in the live-refresh test): a failed job is
    # left alone until someone retries it.
    worker = start_worker("trio")

    page.goto(admin(f"jobs/{job.id}"))
    expect(page.get_by_test_id("job-state")).to_have_text("failed")
    screenshot(page, "failed")
    page.get_by_test_id("action-retry").click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    screenshot(page, "retried")
    try:
        wait_until(marker.exists, "the worker to run the retried job", timeout=30)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{worker.describe()}") from error
    assert marker.read_text() == f"{job.id}\n", "the job ran exactly once"
    wait_until(lambda: utils.get_job(job.id) is None, "the finished job to be deleted")

    page.get_by_test_id("nav-jobs").click()
    expect(page.locator(f'[data-testid="job-row"][data-job-id="{job.id}"]')).to_have_count(0)
    response = page.goto(admin(f"jobs/{job.id}"))
    assert response is not None and response.status == 404
    screenshot(page, "gone")


def test_bulk_cancel_names_the_count_before_acting(
    page: Page,
    admin: AdminServer,
    utils: SyncWorkerUtils,
    database_url: str,
    screenshot: Screenshots,
) -> None:
    newsletters = [utils.add_job("send_newsletter", {"n": n}) for n in range(6)]
    busy = newsletters[0]
    lock_jobs(database_url, [busy.id], "worker-elsewhere")
    others = [utils.add_job("generate_report", {"n": n}) for n in range(3)]

    page.goto(admin("jobs"))
    filters = page.locator("form#filters")
    filters.locator('[name="task"]').fill("send_newsletter")
    filters.get_by_test_id("apply-filters").click()
    expect(page.get_by_test_id("job-row")).to_have_count(6)
    page.get_by_test_id("bulk-cancel").click()

    expect(page.get_by_test_id("confirm-count")).to_have_text("6")
    expect(page.locator("main#content")).to_contain_text("send_newsletter")
    screenshot(page, "confirm")
    unchanged = [utils.get_job(job.id) for job in newsletters]
    assert all(job is not None and job.attempts == 0 for job in unchanged), "nothing yet"
    page.get_by_test_id("confirm").click()

    flash = page.get_by_test_id("flash")
    expect(flash).to_contain_text("5")
    expect(flash).to_contain_text(re.compile(r"skipped 1", re.IGNORECASE))
    screenshot(page, "cancelled")
    for job in newsletters[1:]:
        stored = utils.get_job(job.id)
        assert stored is not None and stored.attempts == stored.max_attempts, stored
    stored_busy = utils.get_job(busy.id)
    assert stored_busy is not None and stored_busy.attempts == 0, "a locked job is left alone"
    for job in others:
        stored = utils.get_job(job.id)
        assert stored is not None and stored.attempts == 0, "only the filtered jobs"
