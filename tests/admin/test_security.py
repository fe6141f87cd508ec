"""CSRF, read-only mode, security headers on every kind of response, and escaping.

None of this depends on the driver, so each test runs once per runtime.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from graphile_worker import JobSpec, SyncWorkerUtils
from graphile_worker.admin import AdminAuth

from ..worker.conftest import job_rows
from ._html import parse
from .conftest import (
    IMG,
    SCRIPT,
    SECRET,
    assert_no_markup_injected,
    assert_security_headers,
    basic,
    csrf_token,
    open_admin,
)

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver

pytestmark = pytest.mark.anyio

CSRF_MESSAGE = "CSRF token missing or invalid; reload the page and try again"


def add_job(connection: psycopg.Connection[Any], task: str = "t", **spec: Any) -> int:
    return SyncWorkerUtils(connection).add_job(task, {}, spec=JobSpec(**spec)).id


def post_targets(job_id: int) -> list[tuple[str, dict[str, str]]]:
    """Every POST route, with fields that would change something if let through."""
    return [
        ("/add", {"task": "forged"}),
        ("/jobs/bulk", {"action": "delete", "confirm": "1"}),
        (f"/jobs/{job_id}/retry", {}),
        (f"/jobs/{job_id}/cancel", {}),
        (f"/jobs/{job_id}/delete", {}),
        ("/workers/force-unlock", {"worker_id": "worker-a", "confirm": "1"}),
        ("/workers/sweep", {}),
    ]


async def test_posts_need_the_principals_csrf_token(
    runtime_driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    job_id = add_job(sync_connection)
    auth = AdminAuth.basic("pw", username="alice")
    async with open_admin(
        runtime_driver, auth=auth, principal="alice", headers=basic("alice", "pw")
    ) as admin:
        page = await admin.page("/")
        meta = page.find("meta", name="csrf-token")
        assert meta is not None
        assert meta.get("content") == csrf_token("alice") == admin.token
        refusals = {
            "missing": "",
            "wrong": "0" * 64,
            "another principal's": csrf_token("bob"),
            "another secret's": csrf_token("alice", secret="another-secret-of-16+"),
            "truncated": admin.token[:-1],
        }
        for path, fields in post_targets(job_id):
            for label, token in refusals.items():
                response = await admin.post(path, fields, token=token)
                assert response.status_code == 403, (path, label)
                assert CSRF_MESSAGE in response.text, (path, label)
                assert_security_headers(response)
            # The right token sent from another site is refused as well.
            response = await admin.post(path, fields, headers={"Sec-Fetch-Site": "cross-site"})
            assert response.status_code == 403, path
        assert [row["id"] for row in job_rows(sync_connection)] == [job_id]

        # The right token passes, as a form field or as a header (what admin.js sends).
        for fetch_site in ("same-origin", "none"):
            response = await admin.post(
                "/add", {"task": "by_form"}, headers={"Sec-Fetch-Site": fetch_site}
            )
            assert response.status_code == 303, response.text
        response = await admin.post(
            "/add", {"task": "by_header"}, token="", headers={"X-CSRF-Token": admin.token}
        )
        assert response.status_code == 303, response.text
    assert sorted(row["task_identifier"] for row in job_rows(sync_connection)) == [
        "by_form",
        "by_form",
        "by_header",
        "t",
    ]

    # Tokens belong to a secret: the same principal under another secret is refused.
    async with open_admin(
        runtime_driver,
        auth=auth,
        principal="alice",
        headers=basic("alice", "pw"),
        csrf_secret="a-rotated-secret-key",
    ) as admin:
        response = await admin.post("/add", {"task": "stale"}, token=csrf_token("alice"))
        assert response.status_code == 403


async def test_every_form_on_every_page_carries_the_token(
    runtime_driver: DatabaseDriver, seeded: dict[str, int]
) -> None:
    async with open_admin(runtime_driver) as admin:
        for path in ("/", "/jobs", f"/jobs/{seeded['failed_at_max']}", "/workers", "/add"):
            page = await admin.page(path)
            posts = [
                form
                for form in page.find_all("form")
                if (form.get("method") or "get").lower() == "post"
            ]
            for form in posts:
                hidden = form.find("input", name="csrf_token")
                assert hidden is not None, (path, form)
                assert hidden.get("type") == "hidden"
                assert hidden.get("value") == admin.token
            if path != "/":
                assert posts, f"no action forms on {path}"


async def test_read_only_refuses_every_change_and_hides_every_button(
    runtime_driver: DatabaseDriver,
    seeded: dict[str, int],
    sync_connection: psycopg.Connection[Any],
) -> None:
    before = job_rows(sync_connection)
    async with open_admin(runtime_driver, read_only=True) as admin:
        for path, fields in post_targets(seeded["failed_at_max"]):
            response = await admin.post(path, fields)
            assert response.status_code == 403, path
            assert "This admin is read-only" in response.text, path
            assert_security_headers(response)
        # Bulk without confirm would only ask; it is refused too, before any work.
        response = await admin.post("/jobs/bulk", {"action": "retry"})
        assert response.status_code == 403
        for path in (
            "/",
            "/jobs",
            f"/jobs/{seeded['failed_at_max']}",
            f"/jobs/{seeded['ready']}",
            "/queues",
            "/workers",
            "/cron",
        ):
            page = await admin.page(path)
            assert page.has("read-only"), path
            assert not page.has("nav-add"), path
            for testid in (
                "bulk-retry",
                "bulk-cancel",
                "bulk-delete",
                "action-retry",
                "action-cancel",
                "action-delete",
                "force-unlock",
                "sweep",
                "add-submit",
            ):
                assert not page.has(testid), (path, testid)
            posts = [
                form
                for form in page.find_all("form")
                if (form.get("method") or "get").lower() == "post"
            ]
            assert posts == [], path
        # The add form is no use without its button: refused, or shown without one.
        response = await admin.get("/add")
        assert response.status_code in {200, 403}
        assert not parse(response.text).has("add-submit")
        assert parse(response.text).find("form", id="add-job") is None
    assert job_rows(sync_connection) == before


async def test_security_headers_on_every_kind_of_response(
    runtime_driver: DatabaseDriver, seeded: dict[str, int]
) -> None:
    auth = AdminAuth.basic("pw")
    async with open_admin(
        runtime_driver, auth=auth, principal="admin", headers=basic("admin", "pw")
    ) as admin:
        responses = {
            "page": await admin.get("/"),
            "fragment": await admin.get("/jobs", headers={"X-Admin-Fragment": "1"}),
            "bad request": await admin.get("/jobs?limit=0"),
            "unknown job": await admin.get("/jobs/999999999"),
            "unknown route": await admin.get("/no-such-page"),
            "static js": await admin.get("/static/admin.js"),
            "static css": await admin.get("/static/admin.css"),
            "missing static": await admin.get("/static/nope.js"),
            "csrf": await admin.post("/add", {"task": "x"}, token=""),
            "redirect": await admin.post("/add", {"task": "x"}),
        }
    async with open_admin(runtime_driver, auth=auth) as anonymous:
        responses["unauthenticated"] = await anonymous.get("/")
    async with open_admin(runtime_driver, read_only=True) as read_only:
        responses["read-only"] = await read_only.post("/add", {"task": "x"})
    expected = {
        "page": 200,
        "fragment": 200,
        "bad request": 400,
        "unknown job": 404,
        "unknown route": 404,
        "static js": 200,
        "static css": 200,
        "missing static": 404,
        "csrf": 403,
        "redirect": 303,
        "unauthenticated": 401,
        "read-only": 403,
    }
    assert {label: response.status_code for label, response in responses.items()} == expected
    for response in responses.values():
        assert_security_headers(response)
    assert (
        responses["static js"]
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
    assert responses["static css"].headers["content-type"].startswith("text/css")


async def test_pages_use_no_inline_script_style_or_handlers(
    runtime_driver: DatabaseDriver, seeded: dict[str, int]
) -> None:
    """The Content Security Policy would block them, so none may be relied on."""
    async with open_admin(runtime_driver) as admin:
        for path in (
            "/",
            "/jobs",
            f"/jobs/{seeded['ready']}",
            "/queues",
            "/workers",
            "/cron",
            "/add",
        ):
            page = await admin.page(path)
            for element in page.iter():
                assert "style" not in element.attrs, (path, element)
                assert not [name for name in element.attrs if name.startswith("on")], (
                    path,
                    element,
                )
                if element.tag == "script":
                    assert element.get("src"), path
                    assert element.raw_text.strip() == "", path
                if element.tag == "style":
                    raise AssertionError(f"<style> block on {path}")
                href = element.get("href") or ""
                assert not href.lower().startswith("javascript:"), (path, element)


async def test_hostile_values_render_as_text_everywhere(
    runtime_driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    utils = SyncWorkerUtils(sync_connection)
    hostile_payload = {"html": SCRIPT, "attr": IMG, SCRIPT: [IMG]}
    job = utils.add_job(
        SCRIPT,
        hostile_payload,
        spec=JobSpec(queue_name=IMG, job_key=SCRIPT + IMG, flags=[SCRIPT, IMG]),
    )
    other = utils.add_job(IMG, {"n": 1}, spec=JobSpec(queue_name=SCRIPT))
    sync_connection.execute(
        "update graphile_worker._private_jobs set last_error = %s, attempts = 25 where id = %s",
        (f"{SCRIPT}\n{IMG}", job.id),
    )
    # A lock held by a worker with a hostile id: it shows on the job, queue and workers pages.
    sync_connection.execute(
        "update graphile_worker._private_jobs set locked_by = %s, locked_at = now() where id = %s",
        (IMG, other.id),
    )
    sync_connection.execute(
        "update graphile_worker._private_job_queues set locked_by = %s, locked_at = now()"
        " where queue_name = %s",
        (IMG, SCRIPT),
    )
    sync_connection.execute(
        "insert into graphile_worker._private_known_crontabs (identifier, known_since)"
        " values (%s, now())",
        (SCRIPT + IMG,),
    )
    async with open_admin(runtime_driver) as admin:
        pages = {
            path: await admin.get(path)
            for path in (
                "/",
                "/jobs",
                f"/jobs/{job.id}",
                f"/jobs/{other.id}",
                "/queues",
                "/workers",
                "/cron",
                f"/jobs?task={SCRIPT}",
            )
        }
        # Echoed input: a filter value and a rejected form come back escaped too.
        pages["filter echo"] = await admin.get("/jobs", params={"task": IMG, "state": SCRIPT})
        pages["form echo"] = await admin.post(
            "/add", {"task": SCRIPT, "payload": IMG, "queue": IMG}
        )
        pages["confirm echo"] = await admin.post(
            "/jobs/bulk", {"action": "delete", "task": SCRIPT, "queue": IMG}
        )
        pages["unlock echo"] = await admin.post("/workers/force-unlock", {"worker_id": IMG})
    for label, response in pages.items():
        assert response.status_code in {200, 400}, (label, response.status_code)
        assert_no_markup_injected(response.text)
        assert_security_headers(response)
    detail = parse(pages[f"/jobs/{job.id}"].text)
    assert json.loads(detail.testid("job-payload").raw_text) == hostile_payload
    assert detail.testid("job-last-error").raw_text.strip() == f"{SCRIPT}\n{IMG}"
    assert detail.testid("job-task").text == SCRIPT
    detail_text = detail.raw_text
    for shown in (IMG, SCRIPT + IMG):
        assert shown in detail_text
    overview = parse(pages["/"].text)
    assert {row.attr("data-task") for row in overview.testids("task-row")} == {SCRIPT, IMG}
    assert {row.attr("data-queue") for row in overview.testids("queue-row")} == {SCRIPT, IMG}
    listing = parse(pages["/jobs"].text)
    assert {row.attr("data-job-id") for row in listing.testids("job-row")} == {
        str(job.id),
        str(other.id),
    }
    assert SCRIPT in listing.raw_text and IMG in listing.raw_text
    for label in ("/queues", "/workers", f"/jobs/{other.id}"):
        assert IMG in parse(pages[label].text).raw_text, label
    cron = parse(pages["/cron"].text)
    assert [row.attr("data-identifier") for row in cron.testids("cron-row")] == [SCRIPT + IMG]
    filtered = parse(pages[f"/jobs?task={SCRIPT}"].text)
    assert [row.attr("data-job-id") for row in filtered.testids("job-row")] == [str(job.id)]
    assert SECRET not in "".join(response.text for response in pages.values())
