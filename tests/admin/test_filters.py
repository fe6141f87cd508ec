"""The jobs page's filters select the right jobs, and its "Older" link pages without gaps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest

from graphile_worker import WorkerUtils

from .conftest import open_admin

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver

    from ._html import Element

pytestmark = pytest.mark.anyio


def listed(page: Element) -> list[int]:
    return [int(row.attr("data-job-id")) for row in page.testids("job-row")]


def names(seeded: dict[str, int], ids: list[int]) -> set[str]:
    by_id = {job_id: name for name, job_id in seeded.items()}
    return {by_id[job_id] for job_id in ids}


async def test_filters_and_paging(
    driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    await check_filters(driver, seeded, sync_connection)
    # The seeded jobs stay: paging by task must step over them.
    await check_paging(driver)


async def check_filters(
    driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    sync_connection.execute(
        "update graphile_worker._private_jobs set created_at = now() - interval '2 days'"
        " where id = %s",
        (seeded["retrying_ready"],),
    )
    sync_connection.execute(
        "update graphile_worker._private_jobs set created_at = now() - interval '3 days'"
        " where id = %s",
        (seeded["failed_at_max"],),
    )
    cutoff = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    expectations: list[tuple[str, set[str]]] = [
        ("state=failed", {"failed_at_max", "failed_over_max"}),
        (
            "state=locked&state=failed",
            {"locked", "locked_last_attempt", "failed_at_max", "failed_over_max"},
        ),
        ("state=retrying", {"retrying_ready", "retrying_scheduled", "failed_then_retrying"}),
        ("state=scheduled", {"scheduled", "retrying_scheduled"}),
        ("task=beta", {"locked", "locked_last_attempt", "failed_at_max"}),
        ("queue=q1", {"locked", "failed_at_max", "retrying_ready"}),
        ("queue=q1&task=gamma", {"retrying_ready"}),
        ("key=over", {"failed_over_max"}),
        ("flag=urgent", {"ready"}),
        ("flag=urgent&flag=eu", {"ready"}),
        ("flag=urgent&flag=missing", set()),
        ("older_than=1d", {"retrying_ready", "failed_at_max"}),
        ("older_than=1d&newer_than=60h", {"retrying_ready"}),
        ("older_than=24h&state=failed", {"failed_at_max"}),
        (f"newer_than={cutoff.replace('+', '%2B')}&task=beta", {"locked", "locked_last_attempt"}),
        ("task=no_such_task", set()),
        # Empty fields are what a submitted filter form sends for "any".
        (
            "task=&queue=&key=&older_than=&newer_than=&state=failed",
            {"failed_at_max", "failed_over_max"},
        ),
    ]
    async with open_admin(driver) as admin:
        for query, expected in expectations:
            page = await admin.page(f"/jobs?{query}")
            assert names(seeded, listed(page)) == expected, query
        # The form shows the filters in force, so applying it again keeps them.
        page = await admin.page("/jobs?state=failed&state=locked&task=beta&older_than=1d")
    form = page.find("form", id="filters")
    assert form is not None
    checked = {
        box.attr("value")
        for box in form.find_all("input", name="state")
        if box.get("checked") is not None
    }
    assert checked == {"failed", "locked"}
    task = form.find("input", name="task")
    assert task is not None
    assert task.get("value") == "beta"
    older = form.find("input", name="older_than")
    assert older is not None
    assert older.get("value") == "1d"


async def check_paging(driver: DatabaseDriver) -> None:
    """The "Older" link walks 23 jobs of one task in pages of 5, while more are added."""
    utils = WorkerUtils(driver)
    original = [job.id for job in await utils.add_jobs([("page", {"n": n}) for n in range(23)])]
    await utils.add_jobs([("other", {}) for _ in range(3)])
    seen: list[int] = []
    async with open_admin(driver) as admin:
        url = "http://testserver/jobs?task=page&limit=5"
        pages = 0
        while True:
            page = await admin.page(url)
            pages += 1
            ids = listed(page)
            seen += ids
            # Newer jobs arriving between pages belong before the first page, not in a later one.
            await utils.add_jobs([("page", {"late": True})])
            if not page.has("next-page"):
                break
            assert len(ids) == 5
            link = page.testid("next-page")
            anchor = link if link.tag == "a" else link.find("a")
            assert anchor is not None
            url = urljoin(url, anchor.attr("href"))
            query = parse_qs(urlsplit(url).query)
            # The link keeps the filter and the page size, and continues below the last row.
            assert query["task"] == ["page"]
            assert query["limit"] == ["5"]
            assert query["after"] == [str(ids[-1])]
    assert seen == sorted(original, reverse=True)
    assert pages == 5


async def test_default_page_size_is_fifty(runtime_driver: DatabaseDriver) -> None:
    utils = WorkerUtils(runtime_driver)
    await utils.add_jobs([("many", {"n": n}) for n in range(51)])
    async with open_admin(runtime_driver) as admin:
        first = await admin.page("/jobs")
        assert len(listed(first)) == 50
        assert first.has("next-page")
        widest = await admin.page("/jobs?limit=500")
    assert len(listed(widest)) == 51
    assert not widest.has("next-page")
