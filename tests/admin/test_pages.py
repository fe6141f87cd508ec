"""Every page of the admin shows what is in the database: counts, rows and details.

The jobs come from the seed of ``tests/test_inspect.py`` (ten jobs: ready, scheduled,
locked by ``worker-a``, failed, retrying), so the expected figures are the ones
``test_stats_counts_by_task_and_queue`` checks against ``stats()`` itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import pytest

from graphile_worker import JobState

from ..test_inspect import EXPECTED_STATES
from ..worker.test_recovery import DEAD, stage_dead_worker
from .conftest import open_admin

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver

    from ._html import Element

pytestmark = pytest.mark.anyio

PAGE_URL = "http://testserver/"


def partition(name: str) -> str:
    """The one state of ready/scheduled/locked/failed a seeded job is in."""
    states = EXPECTED_STATES[name] - {JobState.RETRYING}
    (state,) = states
    return state.value


def link_path(element: Element, page: str = PAGE_URL) -> str:
    """The path an ``<a>`` (or the first one inside ``element``) leads to from ``page``."""
    anchor = element if element.tag == "a" else element.find("a")
    assert anchor is not None, f"no link in {element!r}"
    return urlsplit(urljoin(page, anchor.attr("href"))).path


def register_alive_worker(connection: psycopg.Connection[Any], worker_id: str) -> None:
    connection.execute(
        "insert into graphile_worker._pyworker_workers (worker_id, hostname, pid,"
        " library_version, last_heartbeat_at, heartbeat_interval, stale_after,"
        " long_running_stale_after, recovery_delay) values (%s, 'host', 1, 'test', now(),"
        " '10 seconds', '1 minute', '1 hour', '0 seconds')",
        (worker_id,),
    )


def cells(row: Element) -> dict[str, str]:
    """A table row's cells by their column heading."""
    table = row.parent
    while table is not None and table.tag != "table":
        table = table.parent
    assert table is not None, f"{row!r} is not in a table"
    headings = [heading.text for heading in table.find_all("th")]
    values = [cell.text for cell in row.find_all("td")]
    assert len(headings) == len(values), (headings, values)
    return dict(zip(headings, values, strict=True))


COUNT_COLUMNS = ("Ready", "Scheduled", "Locked", "Retrying", "Failed", "Total")


def counts_of(row: Element) -> tuple[int, ...]:
    by_heading = cells(row)
    return tuple(int(by_heading[column]) for column in COUNT_COLUMNS)


async def test_every_page_shows_the_jobs_in_the_database(
    driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    """Overview, jobs, job detail, queues and workers, read through every driver."""
    # A number too long for the JSON decoders: the row reads, its payload does not decode.
    sync_connection.execute(
        "update graphile_worker._private_jobs set payload ="
        " CAST('{\"n\": ' || repeat('1', 5000) || '}' AS json) where id = %s",
        (seeded["tried_without_error"],),
    )
    async with open_admin(driver) as admin:
        check_overview(await admin.page("/"))
        check_jobs(await admin.page("/jobs"), seeded)
        check_details(
            {name: await admin.page(f"/jobs/{job_id}") for name, job_id in seeded.items()}
        )
        check_queues(await admin.page("/queues"))
        register_alive_worker(sync_connection, "worker-alive")
        stage_dead_worker(sync_connection, [seeded["ready"]])
        check_workers(await admin.page("/workers"))


def check_overview(page: Element) -> None:
    counts = {
        state: page.testid(f"count-{state}").text
        for state in ("ready", "scheduled", "locked", "retrying", "failed", "total")
    }
    assert counts == {
        "ready": "4",
        "scheduled": "2",
        "locked": "2",
        "retrying": "3",
        "failed": "2",
        "total": "10",
    }
    tasks = {row.attr("data-task"): counts_of(row) for row in page.testids("task-row")}
    # ready, scheduled, locked, retrying, failed, total
    assert tasks == {
        "alpha": (2, 1, 0, 0, 0, 3),
        "beta": (0, 0, 2, 0, 1, 3),
        "gamma": (2, 1, 0, 3, 1, 4),
    }
    queues = {row.attr("data-queue"): counts_of(row) for row in page.testids("queue-row")}
    assert queues == {"q1": (1, 0, 1, 1, 1, 3), "q2": (0, 0, 1, 0, 0, 1)}
    # The oldest ready job has been due since 2001: an age of thousands of days.
    oldest = page.testid("oldest-ready").text
    assert re.search(r"\b\d{4,}(\.\d)?d\b", oldest), oldest
    chart = page.testid("throughput-chart")
    assert chart.tag == "svg"
    # One sample so far: nothing to plot yet, and the chart says so.
    assert "collecting" in chart.text.lower()
    for name in ("overview", "jobs", "queues", "workers", "cron", "add"):
        assert page.has(f"nav-{name}"), name
    assert page.find("main", id="content") is not None
    assert page.find("meta", name="csrf-token") is not None
    assert page.has("live-toggle")


def check_jobs(page: Element, seeded: dict[str, int]) -> None:
    rows = page.testids("job-row")
    names = {job_id: name for name, job_id in seeded.items()}
    assert [int(row.attr("data-job-id")) for row in rows] == sorted(seeded.values(), reverse=True)
    for row in rows:
        job_id = int(row.attr("data-job-id"))
        assert row.attr("data-state") == partition(names[job_id]), names[job_id]
        first_cell = row.find("td")
        assert first_cell is not None
        assert link_path(first_cell, "http://testserver/jobs") == f"/jobs/{job_id}"
    assert not page.has("next-page")
    form = page.find("form", id="filters")
    assert form is not None
    assert (form.get("method") or "").lower() == "get"
    assert {box.attr("value") for box in form.find_all("input", name="state")} == {
        state.value for state in JobState
    }
    assert form.find(data_testid="apply-filters") is not None
    for action in ("retry", "cancel", "delete"):
        assert page.has(f"bulk-{action}"), action


def check_details(pages: dict[str, Element]) -> None:
    for name, page in pages.items():
        assert page.testid("job-state").text == partition(name), name

    locked = pages["locked"]
    assert locked.testid("job-task").text == "beta"
    assert locked.testid("job-attempts").text == "1/25"
    content = locked.find("main", id="content")
    assert content is not None
    assert "worker-a" in content.text
    assert "q1" in content.text

    failed = pages["failed_at_max"]
    assert failed.testid("job-attempts").text == "3/3"
    assert failed.testid("job-last-error").text == "boom"
    for action in ("retry", "cancel", "delete"):
        assert failed.has(f"action-{action}"), action

    ready = pages["ready"]
    assert ready.testid("job-task").text == "alpha"
    payload = ready.testid("job-payload")
    assert payload.tag == "pre"
    assert json.loads(payload.raw_text) == {"name": "ready"}
    # Pretty-printed, as the spec asks: one member per line.
    assert "\n" in payload.raw_text.strip()
    ready_content = ready.find("main", id="content")
    assert ready_content is not None
    assert "urgent" in ready_content.text and "eu" in ready_content.text
    assert "over" in pages["failed_over_max"].raw_text

    retrying = pages["failed_then_retrying"]
    assert retrying.testid("job-attempts").text == "25/30"
    assert retrying.testid("job-last-error").text == "gave up"

    # An undecodable payload is shown as its raw text, with a note saying so.
    poison = pages["tried_without_error"]
    assert "1" * 5000 in poison.testid("job-payload").text
    poison_content = poison.find("main", id="content")
    assert poison_content is not None
    assert "decode" in poison_content.text.lower()


def check_queues(page: Element) -> None:
    rows = {row.attr("data-queue"): row for row in page.testids("queue-row")}
    assert set(rows) == {"q1", "q2"}
    assert "worker-a" in rows["q1"].text
    assert "worker-a" not in rows["q2"].text
    assert counts_of(rows["q1"]) == (1, 0, 1, 1, 1, 3)
    assert counts_of(rows["q2"]) == (0, 0, 1, 0, 0, 1)


def check_workers(page: Element) -> None:
    status = {
        row.attr("data-worker-id"): row.find(data_testid="worker-status")
        for row in page.testids("worker-row")
    }
    assert {worker: element.text if element else None for worker, element in status.items()} == {
        "worker-a": "unregistered",
        "worker-alive": "alive",
        DEAD: "stale",
    }
    holders = {
        row.attr("data-worker-id")
        for row in page.testids("worker-row")
        if row.find(data_testid="force-unlock") is not None
    }
    # Every worker holding locks can be force-unlocked; "worker-alive" holds none.
    assert {"worker-a", DEAD} <= holders
    assert page.has("sweep")


async def test_overview_of_an_empty_queue(runtime_driver: DatabaseDriver) -> None:
    async with open_admin(runtime_driver) as admin:
        page = await admin.page("/")
        queues = await admin.page("/queues")
        workers = await admin.page("/workers")
        jobs = await admin.page("/jobs")
    for state in ("ready", "scheduled", "locked", "retrying", "failed", "total"):
        assert page.testid(f"count-{state}").text == "0"
    assert page.testids("task-row") == []
    assert page.testids("queue-row") == []
    assert "no job" in page.testid("oldest-ready").text.lower()
    assert queues.testids("queue-row") == []
    assert workers.testids("worker-row") == []
    assert jobs.testids("job-row") == []
    assert not jobs.has("next-page")


async def test_workers_page_without_a_worker_registry(
    runtime_driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    """A schema migrated by Node has no registry: lock holders still show, no 500."""
    sync_connection.execute("drop table graphile_worker._pyworker_workers")
    async with open_admin(runtime_driver) as admin:
        page = await admin.page("/workers")
    assert [row.attr("data-worker-id") for row in page.testids("worker-row")] == ["worker-a"]


CRONTAB = """\
# Sent every morning.
0 4 * * * send_report ?id=nightly_report&queue=reports
*/15 * * * * sync
"""


async def test_cron_page_lists_known_crontabs_and_the_configured_file(
    runtime_driver: DatabaseDriver, sync_connection: psycopg.Connection[Any], tmp_path: Path
) -> None:
    sync_connection.execute(
        "insert into graphile_worker._private_known_crontabs (identifier, known_since,"
        " last_execution) values ('nightly_report', '2030-01-01T00:00Z', '2030-01-02T04:00Z'),"
        " ('old_entry', '2029-06-01T00:00Z', null)"
    )
    async with open_admin(runtime_driver) as admin:
        without_file = await admin.page("/cron")
    assert sorted(row.attr("data-identifier") for row in without_file.testids("cron-row")) == [
        "nightly_report",
        "old_entry",
    ]

    path = tmp_path / "crontab"
    path.write_text(CRONTAB)
    async with open_admin(runtime_driver, crontab=path) as admin:
        with_file = await admin.page("/cron")
    rows = {row.attr("data-identifier"): row for row in with_file.testids("cron-row")}
    assert {"nightly_report", "sync", "old_entry"} <= set(rows)
    nightly = cells(rows["nightly_report"])
    assert nightly["Task"] == "send_report"
    assert nightly["Schedule"] == "0 4 * * *"
    # Its next run is at 04:00 UTC, some day after now.
    assert "04:00" in nightly["Next run"]
    assert nightly["Registered"] == "yes"
    assert "2030-01-02 04:00" in nightly["Last run"]
    sync = cells(rows["sync"])
    assert (sync["Task"], sync["Schedule"], sync["Registered"]) == (
        "sync",
        "*/15 * * * *",
        "not yet",
    )
    assert re.search(r":(00|15|30|45)", sync["Next run"]), sync
    # Registered by some scheduler, but not in this file.
    assert "not in the configured crontab" in rows["old_entry"].text


async def test_fragment_request_returns_the_inner_content_only(
    runtime_driver: DatabaseDriver, seeded: dict[str, int]
) -> None:
    async with open_admin(runtime_driver) as admin:
        full = await admin.get("/")
        fragments = {
            path: await admin.get(path, headers={"X-Admin-Fragment": "1"})
            for path in ("/", "/jobs", f"/jobs/{seeded['ready']}", "/queues", "/workers")
        }
        # The pages that refresh themselves offer the switch to stop it; the others do not.
        for path in ("/", "/jobs", f"/jobs/{seeded['ready']}", "/queues", "/workers"):
            assert (await admin.page(path)).has("live-toggle"), path
        for path in ("/add", "/cron"):
            assert not (await admin.page(path)).has("live-toggle"), path
    # refresh_seconds=0 turns the live refresh off: no page offers it.
    async with open_admin(runtime_driver, refresh_seconds=0) as admin:
        for path in ("/", "/jobs", "/queues", "/workers"):
            page = await admin.page(path)
            assert not page.has("live-toggle"), path
            assert page.find("main", id="content") is not None
    assert "<html" in full.text.lower()
    for path, response in fragments.items():
        assert response.status_code == 200, path
        body = response.text.lower()
        assert "<html" not in body, path
        assert "<main" not in body, path
        assert "<header" not in body, path
        assert 'data-testid="nav-jobs"' not in body, path
    assert 'data-testid="count-total"' in fragments["/"].text
    assert 'data-testid="job-row"' in fragments["/jobs"].text
    assert 'data-testid="job-state"' in fragments[f"/jobs/{seeded['ready']}"].text
