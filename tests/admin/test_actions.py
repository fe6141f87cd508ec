"""What the admin's buttons change: bulk and single-job retry/cancel/delete, add, unlock, sweep.

Each action is driven the way a person drives it (the button's form on the page, then the
confirmation page's form), and its effect is read back from ``_private_jobs`` over the
separate ``sync_connection``, never through the app.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import pytest

from ..worker.conftest import job_row, job_rows
from ..worker.test_recovery import DEAD, registered, stage_dead_worker
from .conftest import form_fields, location, open_admin

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver

    from ._html import Element
    from .conftest import Admin

pytestmark = pytest.mark.anyio

BASE = "http://testserver"
PAYLOAD = {"to": "Zoë ☃", "nested": {"list": [1, 2.5, None, True]}}


def snapshot(connection: psycopg.Connection[Any]) -> dict[int, dict[str, Any]]:
    return {row["id"]: row for row in job_rows(connection)}


def form_around(page: Element, testid: str) -> tuple[Element, Element]:
    """The form holding the button with this ``data-testid``, and the button."""
    button = page.testid(testid)
    form = button.parent
    while form is not None and form.tag != "form":
        form = form.parent
    assert form is not None, f"{testid} is not inside a form"
    return form, button


async def press(admin: Admin, page_url: str, page: Element, testid: str) -> Any:
    form, button = form_around(page, testid)
    return await admin.submit(page_url, form, button)


async def bulk(admin: Admin, query: str, action: str) -> tuple[int, Element]:
    """Press a bulk button on ``/jobs?query``, then confirm; the count shown and the result."""
    url = f"{BASE}/jobs?{query}"
    listing = await admin.page(url)
    response = await press(admin, url, listing, f"bulk-{action}")
    assert response.status_code == 200, response.text
    confirmation = await admin.page_of(response)
    count = int(confirmation.testid("confirm-count").text)
    done = await press(admin, str(response.request.url), confirmation, "confirm")
    if done.status_code == 303:
        return count, await admin.follow(done)
    assert done.status_code == 200, done.text
    return count, await admin.page_of(done)


def flash_text(page: Element) -> str:
    return page.testid("flash").text


async def test_bulk_actions_change_exactly_the_matched_jobs(
    driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    async with open_admin(driver) as admin:
        # Cancel: locked (held by worker-a), failed_at_max and retrying_ready are in q1.
        before = snapshot(sync_connection)
        count, result = await bulk(admin, "queue=q1", "cancel")
        assert count == 3
        after = snapshot(sync_connection)
        cancelled = {seeded["failed_at_max"], seeded["retrying_ready"]}
        for job_id, row in after.items():
            if job_id in cancelled:
                assert row["attempts"] == row["max_attempts"], job_id
            else:
                assert row == before[job_id], job_id
        message = flash_text(result)
        assert re.search(r"\b2\b", message), message
        assert re.search(r"skipped 1\b", message, re.IGNORECASE), message
        assert "locked" in message

        # Retry every failed job, the two just cancelled among them.
        before = after
        count, result = await bulk(admin, "state=failed", "retry")
        retried = cancelled | {seeded["failed_over_max"]}
        assert count == 3
        after = snapshot(sync_connection)
        for job_id, row in after.items():
            if job_id in retried:
                assert row["attempts"] == 0, job_id
                assert row["run_at"] <= datetime.now(timezone.utc)
            else:
                assert row == before[job_id], job_id
        assert re.search(r"\b3\b", flash_text(result))
        assert "skipped" not in flash_text(result).lower()

        # Delete the alpha jobs, and only them.
        before = after
        count, result = await bulk(admin, "task=alpha", "delete")
        assert count == 3
        after = snapshot(sync_connection)
        deleted = {seeded["ready"], seeded["scheduled"], seeded["tried_without_error"]}
        assert set(after) == set(before) - deleted
        for job_id, row in after.items():
            assert row == before[job_id], job_id
        assert re.search(r"\b3\b", flash_text(result))
        remaining = [int(row.attr("data-job-id")) for row in result.testids("job-row")]
        assert not set(remaining) & deleted


async def test_bulk_without_confirm_changes_nothing_and_names_the_filter(
    runtime_driver: DatabaseDriver,
    seeded: dict[str, int],
    sync_connection: psycopg.Connection[Any],
) -> None:
    before = snapshot(sync_connection)
    async with open_admin(runtime_driver) as admin:
        response = await admin.post(
            "/jobs/bulk", {"action": "delete", "task": "gamma", "state": ["failed", "ready"]}
        )
        assert response.status_code == 200, response.text
        page = await admin.page_of(response)
    assert snapshot(sync_connection) == before
    # failed_over_max; retrying_ready and failed_then_retrying are ready.
    assert page.testid("confirm-count").text == "3"
    form, _ = form_around(page, "confirm")
    fields = dict(form_fields(form))
    assert fields["action"] == "delete"
    assert fields["task"] == "gamma"
    assert fields["confirm"] == "3"
    assert sorted(value for name, value in form_fields(form) if name == "state") == [
        "failed",
        "ready",
    ]


async def test_single_job_actions(
    driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    before = snapshot(sync_connection)
    async with open_admin(driver) as admin:
        failed = seeded["failed_at_max"]
        url = f"{BASE}/jobs/{failed}"
        response = await press(admin, url, await admin.page(url), "action-retry")
        assert urlsplit(location(response)).path == f"/jobs/{failed}"
        page = await admin.follow(response)
        assert flash_text(page)
        row = job_row(sync_connection, failed)
        assert row is not None
        assert row["attempts"] == 0
        assert page.testid("job-state").text == "ready"

        ready = seeded["ready"]
        url = f"{BASE}/jobs/{ready}"
        response = await press(admin, url, await admin.page(url), "action-cancel")
        assert urlsplit(location(response)).path == f"/jobs/{ready}"
        page = await admin.follow(response)
        assert page.testid("job-state").text == "failed"
        row = job_row(sync_connection, ready)
        assert row is not None
        assert row["attempts"] == row["max_attempts"]

        gone = seeded["tried_without_error"]
        url = f"{BASE}/jobs/{gone}"
        response = await press(admin, url, await admin.page(url), "action-delete")
        assert urlsplit(location(response)).path == "/jobs"
        page = await admin.follow(response)
        assert flash_text(page)
        assert job_row(sync_connection, gone) is None
        assert gone not in [int(row.attr("data-job-id")) for row in page.testids("job-row")]

        # A job a worker holds is skipped, and the page says why.
        locked = seeded["locked"]
        for action in ("retry", "cancel", "delete"):
            response = await admin.post(f"/jobs/{locked}/{action}")
            page = await admin.follow(response)
            assert "locked" in flash_text(page).lower(), action
    assert job_row(sync_connection, locked) == before[locked]
    untouched = set(seeded.values()) - {failed, ready, gone}
    after = snapshot(sync_connection)
    for job_id in untouched:
        assert after[job_id] == before[job_id]


async def test_add_job_with_every_field(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    async with open_admin(driver) as admin:
        form_page = await admin.page("/add")
        form = form_page.find("form", id="add-job")
        assert form is not None
        assert (form.get("method") or "").lower() == "post"
        assert form.find(data_testid="add-submit") is not None
        payload = form.find("textarea", name="payload")
        assert payload is not None
        assert payload.text == "{}"
        response = await admin.post(
            "/add",
            {
                "task": "send_email",
                "payload": json.dumps(PAYLOAD, ensure_ascii=False),
                "queue": "mail",
                "run_at": "2031-05-06T07:08",
                "max_attempts": "7",
                "priority": "-3",
                "job_key": "welcome-ada",
                "job_key_mode": "replace",
                "flags": "slow, eu",
            },
        )
        assert response.status_code == 303, response.text
        path = urlsplit(location(response)).path
        match = re.fullmatch(r"/jobs/(\d+)", path)
        assert match, path
        job_id = int(match.group(1))
        page = await admin.follow(response)
    assert page.testid("job-task").text == "send_email"
    # Non-ASCII text and nesting survive the round trip through the form and the page.
    shown = page.testid("job-payload").raw_text
    assert json.loads(shown) == PAYLOAD
    assert "Zoë ☃" in shown
    (row,) = job_rows(sync_connection)
    assert row["id"] == job_id
    assert row["task_identifier"] == "send_email"
    assert row["payload"] == PAYLOAD
    assert row["queue_name"] == "mail"
    # A naive time is taken as UTC.
    assert row["run_at"] == datetime(2031, 5, 6, 7, 8, tzinfo=timezone.utc)
    assert row["max_attempts"] == 7
    assert row["priority"] == -3
    assert row["key"] == "welcome-ada"
    assert row["flags"] == {"slow": True, "eu": True}


async def test_add_job_with_defaults_and_job_key_modes(
    runtime_driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    async with open_admin(runtime_driver) as admin:
        response = await admin.post("/add", {"task": "plain"})
        assert response.status_code == 303, response.text
        (row,) = job_rows(sync_connection)
        assert (row["payload"], row["queue_name"], row["max_attempts"], row["priority"]) == (
            {},
            None,
            25,
            0,
        )
        assert row["flags"] is None
        assert row["key"] is None

        async def add(mode: str, payload: str, run_at: str) -> dict[str, Any]:
            response = await admin.post(
                "/add",
                {
                    "task": "keyed",
                    "payload": payload,
                    "run_at": run_at,
                    "job_key": "k",
                    "job_key_mode": mode,
                },
            )
            assert response.status_code == 303, (mode, response.text)
            (keyed,) = [row for row in job_rows(sync_connection) if row["key"] == "k"]
            return keyed

        first = await add("replace", '{"v": 1}', "2040-01-01T00:00:00Z")
        replaced = await add("replace", '{"v": 2}', "2041-01-01T00:00:00Z")
        assert replaced["id"] == first["id"]
        assert replaced["payload"] == {"v": 2}
        assert replaced["run_at"] == datetime(2041, 1, 1, tzinfo=timezone.utc)
        preserved = await add("preserve_run_at", '{"v": 3}', "2042-01-01T00:00:00Z")
        assert preserved["payload"] == {"v": 3}
        assert preserved["run_at"] == datetime(2041, 1, 1, tzinfo=timezone.utc)
        deduped = await add("unsafe_dedupe", '{"v": 4}', "2043-01-01T00:00:00Z")
        assert deduped["payload"] == {"v": 3}
        assert deduped["run_at"] == datetime(2041, 1, 1, tzinfo=timezone.utc)


async def test_add_job_refused_keeps_what_was_typed(
    runtime_driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    async with open_admin(runtime_driver) as admin:
        response = await admin.post("/add", {"task": "broken", "payload": '{"a": 1,'})
        assert response.status_code == 400, response.text
        page = await admin.page_of(response, status=400)
    assert "json" in page.testid("error").text.lower()
    form = page.find("form", id="add-job")
    assert form is not None
    payload = form.find("textarea", name="payload")
    assert payload is not None
    assert payload.raw_text.strip() == '{"a": 1,'
    task = form.find("input", name="task")
    assert task is not None
    assert task.get("value") == "broken"
    assert job_rows(sync_connection) == []


async def test_force_unlock_asks_first_then_releases_the_workers_locks(
    runtime_driver: DatabaseDriver, seeded: dict[str, int], sync_connection: psycopg.Connection[Any]
) -> None:
    async with open_admin(runtime_driver) as admin:
        url = f"{BASE}/workers"
        workers = await admin.page(url)
        (row,) = [
            row for row in workers.testids("worker-row") if row.attr("data-worker-id") == "worker-a"
        ]
        form, button = form_around(row, "force-unlock")
        response = await admin.submit(url, form, button)
        assert response.status_code == 200, response.text
        confirmation = await admin.page_of(response)
        # Nothing released yet; the page names what the worker holds.
        still_locked = job_row(sync_connection, seeded["locked"])
        assert still_locked is not None
        assert still_locked["locked_by"] == "worker-a"
        content = confirmation.find("main", id="content")
        assert content is not None
        assert "worker-a" in content.text
        # What it holds, named: the two jobs (linked) and the queue q1.
        assert re.search(r"\b2\b job", content.text), content.text
        assert re.search(r"\b1\b (named )?queue", content.text), content.text
        assert "q1" in content.text
        linked = {
            urlsplit(urljoin(url, anchor.attr("href"))).path for anchor in content.find_all("a")
        }
        assert {f"/jobs/{seeded['locked']}", f"/jobs/{seeded['locked_last_attempt']}"} <= linked
        done = await press(admin, str(response.request.url), confirmation, "confirm")
        result = await (admin.follow(done) if done.status_code == 303 else admin.page_of(done))
    message = flash_text(result)
    assert re.search(r"\b2 job", message), message
    assert re.search(r"\b1 queue", message), message
    for name in ("locked", "locked_last_attempt"):
        row_after = job_row(sync_connection, seeded[name])
        assert row_after is not None
        assert (row_after["locked_by"], row_after["locked_at"]) == (None, None)
    queue = sync_connection.execute(
        "select locked_by from graphile_worker._private_job_queues where queue_name = 'q1'"
    ).fetchone()
    assert queue == (None,)


async def test_sweep_recovers_a_dead_workers_jobs(
    runtime_driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    row = sync_connection.execute("select (graphile_worker.add_job('work', '{}')).id").fetchone()
    assert row is not None
    job_id: int = row[0]
    stage_dead_worker(sync_connection, [job_id])
    async with open_admin(runtime_driver) as admin:
        url = f"{BASE}/workers"
        response = await press(admin, url, await admin.page(url), "sweep")
        assert response.status_code in {200, 303}, response.text
        page = await (
            admin.follow(response) if response.status_code == 303 else admin.page_of(response)
        )
    report = page.testid("sweep-result").text
    assert DEAD in report
    assert "1 job(s) recovered" in report
    recovered = job_row(sync_connection, job_id)
    assert recovered is not None
    assert recovered["locked_by"] is None
    assert registered(sync_connection) == []
