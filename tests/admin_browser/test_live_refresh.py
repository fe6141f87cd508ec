"""The jobs page follows a real worker through the live refresh, without a reload."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from graphile_worker import JobSpec, SyncWorkerUtils

from ._support import AdminServer, Screenshots, WorkerProcess, expect

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.browser

WORKER_START_TIMEOUT_MS = 30_000
"""The first claim waits for a Python process to start and connect."""


def test_jobs_change_state_as_a_real_worker_runs_them(
    page: Page,
    admin: AdminServer,
    utils: SyncWorkerUtils,
    start_worker: Callable[[str], WorkerProcess],
    tmp_path: Path,
    screenshot: Screenshots,
) -> None:
    release_first, release_second = tmp_path / "release-first", tmp_path / "release-second"
    # One job at a time, in priority order: the first holds the worker until released.
    first = utils.add_job("wait_for_file", {"release": str(release_first)})
    second = utils.add_job(
        "wait_for_file", {"release": str(release_second)}, spec=JobSpec(priority=1)
    )
    doomed = utils.add_job(
        "fail", {"message": "card declined"}, spec=JobSpec(priority=2, max_attempts=1)
    )

    def row(job_id: int) -> Locator:
        return page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')

    page.goto(admin("jobs"))
    for job in (first, second, doomed):
        expect(row(job.id)).to_have_attribute("data-state", "ready")
    page.evaluate("window.__sameDocument = true")
    screenshot(page, "all-ready")

    worker = start_worker("asyncio")
    try:
        expect(row(first.id)).to_have_attribute(
            "data-state", "locked", timeout=WORKER_START_TIMEOUT_MS
        )
        expect(row(second.id)).to_have_attribute("data-state", "ready")
        screenshot(page, "first-locked")

        release_first.touch()
        expect(row(first.id)).to_have_count(0)
        expect(row(second.id)).to_have_attribute("data-state", "locked")
        screenshot(page, "second-locked")

        release_second.touch()
        expect(row(second.id)).to_have_count(0)
        expect(row(doomed.id)).to_have_attribute("data-state", "failed")
        screenshot(page, "third-failed")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{worker.describe()}") from error
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    # Unticking "Live" stops the refresh: a new job stays off the page until it is ticked
    # again. (Focus leaves the box each time: the refresh also pauses while a form field
    # has focus.)
    page.get_by_test_id("live-toggle").uncheck()
    page.evaluate("document.activeElement.blur()")
    added = utils.add_job("fail", {"message": "added while paused"})
    time.sleep(2)  # four refresh periods
    expect(row(added.id)).to_have_count(0)
    page.get_by_test_id("live-toggle").check()
    page.evaluate("document.activeElement.blur()")
    expect(row(added.id)).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
