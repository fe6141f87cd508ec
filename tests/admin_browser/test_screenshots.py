"""The overview and a job's page over a queue that looks like a real one.

Always kept in the test's ``tmp_path``. With ``GRAPHILE_WORKER_SCREENSHOTS=<dir>`` set, the
two pictures are also written as ``<dir>/admin-overview.png`` and ``<dir>/admin-job.png``;
that is how docs/images/ is made::

    GRAPHILE_WORKER_SCREENSHOTS=docs/images PYTHONPATH=src \\
        .nox/tests/bin/python -m pytest tests/admin_browser/test_screenshots.py

For those, the test first keeps the overview open for a while as jobs come and go, so the
throughput chart has something to draw.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from graphile_worker import Job, JobSpec, SyncWorkerUtils

from ._support import SCREENSHOTS_ENV, AdminServer, Screenshots, expect, lock_jobs

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

ACTIVITY_SECONDS = 150
"""How long the overview watches jobs come and go before the documentation picture: a
few minutes, so that the per-minute chart has several bars."""
CRM_ERROR = """\
httpx.ConnectTimeout: timed out connecting to crm.example.com:443
  File "app/tasks/crm.py", line 48, in sync_crm_contact
    response = await client.post(f"{CRM_URL}/contacts/{contact_id}", json=body)"""


def _realistic_queue(utils: SyncWorkerUtils, database_url: str) -> Job:
    """A handful of jobs of a shop's back office; returns the failed one to show."""
    now = datetime.now(timezone.utc)
    for user_id in range(1042, 1054):
        utils.add_job("send_welcome_email", {"user_id": user_id, "template": "welcome-v3"})
    invoices = [
        utils.add_job(
            "generate_invoice_pdf",
            {"order_id": f"ORD-2024-{number:05d}", "currency": "EUR"},
            spec=JobSpec(queue_name="billing"),
        )
        for number in (8812, 8813, 8814)
    ]
    lock_jobs(database_url, [invoices[0].id], "worker-3f9c2a")
    for user_id in (311, 478):
        utils.add_job(
            "resize_avatar",
            {"user_id": user_id, "sizes": [64, 256]},
            spec=JobSpec(run_at=now + timedelta(minutes=10)),
        )
    utils.add_job(
        "nightly_sales_report",
        {"date": (now + timedelta(days=1)).date().isoformat()},
        spec=JobSpec(run_at=now + timedelta(hours=9), job_key="nightly_sales_report"),
    )
    contacts = [
        utils.add_job(
            "sync_crm_contact",
            {
                "contact_id": f"c_{contact}",
                "email": f"{name}@example.com",
                "fields": {"plan": "pro", "seats": seats, "country": country},
            },
            spec=JobSpec(queue_name="crm", max_attempts=10),
        )
        for contact, name, seats, country in (
            ("8f2a91", "grace.hopper", 12, "US"),
            ("77b0c3", "zoë.müller", 3, "DE"),
            ("1d4e5f", "kenji.tanaka", 40, "JP"),
        )
    ]
    utils.permanently_fail_jobs([job.id for job in contacts[:2]], CRM_ERROR)
    utils.reschedule_jobs([contacts[1].id], run_at=now + timedelta(minutes=5), attempts=3)
    # The failed job has been failing for a while, as it would have in a real queue.
    with contextlib.closing(psycopg.connect(database_url, autocommit=True)) as connection:
        connection.execute(
            "update graphile_worker._private_jobs set created_at = now() - interval '47 min', "
            "run_at = now() - interval '3 min', updated_at = now() - interval '3 min' "
            "where id = %s",
            (contacts[0].id,),
        )
    return contacts[0]


def _watch_jobs_come_and_go(page: Page, utils: SyncWorkerUtils) -> None:
    """Keep the overview open (its live refresh samples throughput) while jobs are added
    at a rate that rises and falls, and each second's jobs finish the next second, so the
    chart has a few minutes of bars to draw."""
    started = time.monotonic()
    pending: list[Job] = []
    second = 0
    while time.monotonic() - started < ACTIVITY_SECONDS:
        second += 1
        utils.complete_jobs([job.id for job in pending])
        count = 4 + round(3 * math.sin(second / 20))
        pending = [
            utils.add_job("send_welcome_email", {"user_id": 2000 + second * 10 + n})
            for n in range(count)
        ]
        time.sleep(1)
    utils.complete_jobs([job.id for job in pending])
    # One more reading after the last jobs finished.
    time.sleep(6)


def test_overview_and_job_pages_look_like_a_real_queue(
    page: Page,
    start_admin: Callable[..., AdminServer],
    utils: SyncWorkerUtils,
    database_url: str,
    screenshot: Screenshots,
) -> None:
    documentation = os.environ.get(SCREENSHOTS_ENV)
    admin = start_admin(refresh_seconds=1)
    page.goto(admin())
    if documentation:
        _watch_jobs_come_and_go(page, utils)
    shown = _realistic_queue(utils, database_url)
    page.reload()
    expect(page.get_by_test_id("count-failed")).to_have_text("1")
    expect(page.get_by_test_id("count-locked")).to_have_text("1")
    if documentation:
        expect(page.locator('[data-testid="throughput-chart"] rect.bar').first).to_be_attached()
    overview = screenshot(page, "overview")

    page.goto(admin(f"jobs/{shown.id}"))
    expect(page.get_by_test_id("job-state")).to_have_text("failed")
    expect(page.get_by_test_id("job-last-error")).to_contain_text("httpx.ConnectTimeout")
    job = screenshot(page, "job")

    if documentation:
        directory = Path(documentation)
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(overview, directory / "admin-overview.png")
        shutil.copyfile(job, directory / "admin-job.png")
