"""Bad input on every route is a 400 page naming the problem, or a 404; never a 500.

The app is called through ``httpx.ASGITransport`` with ``raise_app_exceptions`` on, so an
exception escaping a handler fails the test with its traceback rather than a bare 500.
None of these depend on the driver, so each test runs once per runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from ..worker.conftest import job_rows
from ._html import parse
from .conftest import assert_security_headers, open_admin

if TYPE_CHECKING:
    import httpx
    import psycopg

    from graphile_worker.drivers import DatabaseDriver

pytestmark = pytest.mark.anyio


def assert_bad_request(response: httpx.Response, *words: str) -> None:
    """A 400 page whose ``data-testid="error"`` says what was wrong, in these words."""
    assert response.status_code == 400, (response.request.url, response.status_code, response.text)
    assert_security_headers(response)
    assert "Traceback" not in response.text
    page = parse(response.text)
    message = page.testid("error").text.lower()
    for word in words:
        assert word.lower() in message, (response.request.url, message)


def assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, (response.request.url, response.status_code, response.text)
    assert_security_headers(response)
    assert "Traceback" not in response.text


BAD_JOB_QUERIES: list[tuple[str, tuple[str, ...]]] = [
    ("state=done", ("state", "done")),
    ("state=ready&state=nope", ("state", "nope")),
    ("older_than=abc", ("older_than", "abc")),
    ("older_than=10x", ("older_than",)),
    ("older_than=-5m", ("older_than",)),
    ("newer_than=2020-13-45", ("newer_than",)),
    ("newer_than=99999999999d", ("newer_than",)),
    # Times PostgreSQL cannot hold once in UTC, or that a driver would turn into -infinity.
    ("newer_than=0001-01-01T00:00:00%2B14:00", ("newer_than", "out of range")),
    ("older_than=9999-12-31T23:59:59-12:00", ("older_than", "out of range")),
    ("limit=0", ("limit",)),
    ("limit=-1", ("limit",)),
    ("limit=501", ("limit",)),
    ("limit=10000", ("limit",)),
    ("limit=abc", ("limit",)),
    ("limit=1.5", ("limit",)),
    ("limit=5&limit=6", ("limit",)),
    ("after=abc", ("after",)),
    ("after=0", ("after",)),
    ("after=-3", ("after",)),
    ("after=99999999999999999999999", ("after",)),
    ("task=" + "t" * 129, ("task",)),
    ("queue=" + "q" * 129, ("queue",)),
    ("task=a&task=b", ("task",)),
    ("state=ready&task=%00", ("task",)),
]


async def test_bad_job_filters(runtime_driver: DatabaseDriver) -> None:
    async with open_admin(runtime_driver) as admin:
        for query, words in BAD_JOB_QUERIES:
            response = await admin.get(f"/jobs?{query}")
            assert_bad_request(response, *words)
            # The page still works: the filter form is there to correct the value.
            assert parse(response.text).find("form", id="filters") is not None, query
        # Empty fields mean "any": a submitted blank form is not an error.
        response = await admin.get("/jobs?state=&task=&limit=&after=&older_than=")
        assert response.status_code == 200


async def test_unknown_pages_ids_methods_and_results(runtime_driver: DatabaseDriver) -> None:
    async with open_admin(runtime_driver) as admin:
        for job_id in ("999999", "abc", "0", "-1", "1.5", "99999999999999999999999", "%20"):
            response = await admin.get(f"/jobs/{job_id}")
            if job_id == "999999":
                assert_not_found(response)
            else:
                assert response.status_code in {400, 404}, (job_id, response.status_code)
                assert_security_headers(response)
            for action in ("retry", "cancel", "delete"):
                response = await admin.post(f"/jobs/{job_id}/{action}")
                assert response.status_code in {400, 404}, (job_id, action, response.status_code)
                assert_security_headers(response)
        page = parse((await admin.get("/jobs/999999")).text)
        assert "999999" in page.text
        # Unknown routes and actions.
        assert_not_found(await admin.get("/no-such-page"))
        assert_not_found(await admin.post("/jobs/1/explode"))
        for static in ("/static/nope.js", "/static/../_app.py", "/static/%2e%2e/_app.py"):
            response = await admin.get(static)
            assert response.status_code == 404, static
            assert "def admin_app" not in response.text
        # Wrong methods.
        for path in ("/jobs/bulk", "/workers/sweep", "/workers/force-unlock", "/jobs/1/retry"):
            response = await admin.get(path)
            assert response.status_code in {404, 405}, path
            assert_security_headers(response)
        assert (await admin.post("/jobs")).status_code == 405
        # Redirects carry result codes, never text: a crafted one is refused or ignored.
        for query in ("done=pwned", "done=retry&changed=abc", "done=retry&changed=-1"):
            response = await admin.get(f"/jobs?{query}")
            assert response.status_code in {200, 400}, query
            flashes = parse(response.text).testids("flash")
            assert all("pwned" not in flash.text for flash in flashes), query


async def test_bad_bulk_and_worker_forms(
    runtime_driver: DatabaseDriver,
    seeded: dict[str, int],
    sync_connection: psycopg.Connection[Any],
) -> None:
    before = job_rows(sync_connection)
    async with open_admin(runtime_driver) as admin:
        cases: list[tuple[dict[str, Any], tuple[str, ...]]] = [
            ({}, ("action",)),
            ({"action": "explode"}, ("action", "explode")),
            ({"action": "retry", "state": "done"}, ("state", "done")),
            ({"action": "delete", "older_than": "yesterday"}, ("older_than",)),
            ({"action": "delete", "confirm": "abc"}, ("confirm",)),
            ({"action": "delete", "confirm": "-1"}, ("confirm",)),
            ({"action": ["retry", "delete"]}, ("action",)),
        ]
        for fields, words in cases:
            assert_bad_request(await admin.post("/jobs/bulk", fields), *words)
        assert_bad_request(await admin.post("/workers/force-unlock", {}), "worker")
        assert_bad_request(
            await admin.post("/workers/force-unlock", {"worker_id": "   ", "confirm": "1"}),
            "worker",
        )
        assert_bad_request(
            await admin.post(
                "/workers/force-unlock", {"worker_id": "worker-a", "confirm": "maybe"}
            ),
            "confirm",
        )
    assert job_rows(sync_connection) == before


ADD_CASES: list[tuple[dict[str, str], tuple[str, ...]]] = [
    ({}, ("task",)),
    ({"task": "   "}, ("task",)),
    ({"task": "t" * 129}, ("task",)),
    ({"task": "t", "payload": "{"}, ("json",)),
    ({"task": "t", "payload": "not json"}, ("json",)),
    ({"task": "t", "payload": "{'single': 'quotes'}"}, ("json",)),
    ({"task": "t", "payload": "NaN"}, ("payload",)),
    ({"task": "t", "job_key_mode": "sometimes", "job_key": "k"}, ("job_key_mode",)),
    ({"task": "t", "max_attempts": "0"}, ("max_attempts",)),
    ({"task": "t", "max_attempts": "-2"}, ("max_attempts",)),
    ({"task": "t", "max_attempts": "abc"}, ("max_attempts",)),
    ({"task": "t", "max_attempts": "99999999999999"}, ("max_attempts",)),
    ({"task": "t", "priority": "high"}, ("priority",)),
    ({"task": "t", "priority": "99999999999"}, ("priority",)),
    ({"task": "t", "run_at": "tomorrow"}, ("run_at",)),
    ({"task": "t", "run_at": "2031-02-30T00:00"}, ("run_at",)),
    ({"task": "t", "run_at": "9999-12-31T23:59:59-12:00"}, ("run_at", "out of range")),
    ({"task": "t", "run_at": "0001-01-01T00:00:00+14:00"}, ("run_at", "out of range")),
    # asyncpg stores the earliest Python time as -infinity, which no page could show again.
    ({"task": "t", "run_at": "0001-01-01T00:00"}, ("run_at", "out of range")),
    ({"task": "t", "queue": "q" * 129}, ("queue",)),
    ({"task": "t", "job_key": "k" * 513}, ("key",)),
]


async def test_bad_add_job_forms(
    runtime_driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    async with open_admin(runtime_driver) as admin:
        for fields, words in ADD_CASES:
            response = await admin.post("/add", fields)
            assert_bad_request(response, *words)
            assert parse(response.text).find("form", id="add-job") is not None, fields
    assert job_rows(sync_connection) == []
