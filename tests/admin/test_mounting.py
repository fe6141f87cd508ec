"""The admin inside someone else's app: under a mount prefix, behind a proxy's root path,
over a URL it opens itself (and closes with its lifespan), or over utils the caller owns."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import anyio
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from graphile_worker import WorkerUtils
from graphile_worker.admin import AdminAuth, admin_app

from ..worker.conftest import job_rows
from ._html import Element, parse
from .conftest import (
    SECRET,
    Admin,
    admin_client,
    assert_security_headers,
    csrf_token,
    lifespan,
    location,
)

if TYPE_CHECKING:
    import psycopg
    from starlette.requests import Request

    from graphile_worker.drivers import DatabaseDriver

pytestmark = pytest.mark.anyio

PREFIX = "/ops/queue"


def links(page: Element, page_url: str) -> list[str]:
    """Every URL the page points at (links, scripts, styles, form actions), resolved."""
    found = []
    for element in page.iter():
        for attribute in ("href", "src", "action"):
            value = element.get(attribute)
            if value is not None and not value.startswith(("#", "data:")):
                found.append(urljoin(page_url, value))
    return found


async def check_every_link_keeps(admin: Admin, prefix: str, seeded: dict[str, int]) -> None:
    """Every page's links stay under ``prefix`` and answer; actions redirect under it."""
    base = f"http://testserver{prefix}"
    pages = [
        f"{base}/",
        f"{base}/jobs",
        f"{base}/jobs?limit=2",
        f"{base}/jobs/{seeded['failed_at_max']}",
        f"{base}/queues",
        f"{base}/workers",
        f"{base}/cron",
        f"{base}/add",
    ]
    targets: set[str] = set()
    for url in pages:
        page = await admin.page(url)
        for target in links(page, url):
            path = urlsplit(target).path
            assert path.startswith(prefix + "/"), (url, target)
            targets.add(target)
        for anchor in ("nav-overview", "nav-jobs", "nav-cron"):
            assert page.has(anchor)
    # Every link and resource that a GET can follow answers under the prefix.
    for target in sorted(targets):
        if "/jobs/" in target and target.rstrip("/").rsplit("/", 1)[-1] in {
            "retry",
            "cancel",
            "delete",
            "bulk",
        }:
            continue
        if target.endswith(("/workers/sweep", "/workers/force-unlock")):
            continue
        response = await admin.get(target)
        assert response.status_code == 200, (target, response.status_code)
    assert any(urlsplit(t).path == f"{prefix}/static/admin.js" for t in targets)
    assert any(urlsplit(t).path == f"{prefix}/static/admin.css" for t in targets)

    # Actions answer with redirects that keep the prefix.
    added = await admin.post(f"{base}/add", {"task": "mounted"})
    assert re.fullmatch(rf"{re.escape(prefix)}/jobs/\d+", urlsplit(location(added)).path)
    retried = await admin.post(f"{base}/jobs/{seeded['failed_at_max']}/retry")
    assert urlsplit(location(retried)).path == f"{prefix}/jobs/{seeded['failed_at_max']}"
    deleted = await admin.post(f"{base}/jobs/{seeded['ready']}/delete")
    assert urlsplit(location(deleted)).path == f"{prefix}/jobs"
    confirm = await admin.post(f"{base}/jobs/bulk", {"action": "retry", "state": "failed"})
    assert confirm.status_code == 200
    confirm_page = parse(confirm.text)
    for target in links(confirm_page, str(confirm.request.url)):
        assert urlsplit(target).path.startswith(prefix + "/"), target
    done = await admin.post(
        f"{base}/jobs/bulk", {"action": "retry", "state": "failed", "confirm": "1"}
    )
    if done.status_code == 303:
        assert urlsplit(location(done)).path == f"{prefix}/jobs"
    else:
        assert done.status_code == 200


async def test_mounted_under_a_prefix_in_a_parent_app(
    runtime_driver: DatabaseDriver, seeded: dict[str, int]
) -> None:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the host app")

    admin = admin_app(runtime_driver, auth=AdminAuth.none(), csrf_secret=SECRET)
    parent = Starlette(routes=[Route("/", home), Mount(PREFIX, app=admin)])
    async with admin_client(parent) as http:
        client = Admin(http, csrf_token("none"))
        await check_every_link_keeps(client, PREFIX, seeded)
        # The host app's own routes are untouched, and get none of the admin's headers.
        response = await http.get("/")
        assert response.text == "the host app"
        assert "content-security-policy" not in response.headers


async def test_behind_a_proxy_with_a_root_path(
    runtime_driver: DatabaseDriver, seeded: dict[str, int]
) -> None:
    """``--root-path``: the server passes the prefix in the ASGI scope's ``root_path``."""
    app = admin_app(runtime_driver, auth=AdminAuth.none(), csrf_secret=SECRET)
    async with admin_client(app, root_path="/proxy") as http:
        await check_every_link_keeps(Admin(http, csrf_token("none")), "/proxy", seeded)


def backend_count(connection: psycopg.Connection[Any]) -> int:
    row = connection.execute(
        "select count(*) from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid()"
    ).fetchone()
    assert row is not None
    count: int = row[0]
    return count


async def wait_for_backends(connection: psycopg.Connection[Any], expected: int) -> None:
    """Backends exit a moment after their client hangs up: wait for the count, briefly."""
    with anyio.fail_after(10):
        while True:
            if backend_count(connection) == expected:
                return
            await anyio.sleep(0.02)


async def test_a_url_source_is_opened_lazily_and_closed_by_the_lifespan(
    database_url: str, sync_connection: psycopg.Connection[Any], anyio_backend: str
) -> None:
    app = admin_app(database_url, auth=AdminAuth.none(), csrf_secret=SECRET)
    async with lifespan(app):
        # Nothing is opened before the first request needs it.
        assert backend_count(sync_connection) == 0
        async with admin_client(app) as http:
            admin = Admin(http, csrf_token("none"))
            page = await admin.page("/")
            assert page.testid("count-total").text == "0"
            response = await admin.post("/add", {"task": "via_url"})
            assert response.status_code == 303
            assert (await admin.page("/")).testid("count-total").text == "1"
        assert backend_count(sync_connection) > 0
    await wait_for_backends(sync_connection, 0)
    assert [row["task_identifier"] for row in job_rows(sync_connection)] == ["via_url"]
    # A lifespan with no request in it opens nothing and closes cleanly.
    idle = admin_app(database_url, auth=AdminAuth.none())
    async with lifespan(idle):
        pass
    assert backend_count(sync_connection) == 0


async def test_a_callers_utils_and_driver_stay_open(
    runtime_driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    utils = WorkerUtils(runtime_driver)
    for source in (utils, runtime_driver):
        app = admin_app(source, auth=AdminAuth.none(), csrf_secret=SECRET)
        async with lifespan(app), admin_client(app) as http:
            assert (await http.get("/")).status_code == 200
        # The app did not close what it was given.
        await utils.add_job("still_open", {})
    assert len(job_rows(sync_connection)) == 2


async def test_an_unreachable_database_is_a_503_naming_the_problem(anyio_backend: str) -> None:
    url = "postgresql://admin_user:hunter2secret@127.0.0.1:1/nowhere"
    app = admin_app(url, auth=AdminAuth.none(), csrf_secret=SECRET)
    async with lifespan(app), admin_client(app) as http:
        for path in ("/", "/jobs", "/jobs/1", "/queues", "/workers", "/cron"):
            response = await http.get(path)
            assert response.status_code == 503, (path, response.status_code)
            assert_security_headers(response)
            assert "hunter2secret" not in response.text
            assert "Traceback" not in response.text
            assert "database" in response.text.lower(), response.text
        response = await http.post("/add", data={"task": "t", "csrf_token": csrf_token("none")})
        assert response.status_code == 503
        assert "hunter2secret" not in response.text


def test_app_options_are_checked_when_it_is_built() -> None:
    """Bad settings fail at once, before any request (nothing connects to build the app)."""
    database_url = "postgresql://nobody@127.0.0.1:1/nowhere"
    with pytest.raises(ValueError, match="schema"):
        admin_app(database_url, auth=AdminAuth.none(), schema="")
    with pytest.raises(ValueError, match="refresh"):
        admin_app(database_url, auth=AdminAuth.none(), refresh_seconds=-1)
    with pytest.raises(ValueError, match="CSRF secret"):
        admin_app(database_url, auth=AdminAuth.none(), csrf_secret="short")
    with pytest.raises(ValueError, match="not a file"):
        admin_app(database_url, auth=AdminAuth.none(), crontab="/no/such/crontab")
    with pytest.raises(ValueError, match="auth"):
        admin_app(database_url, auth="none")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        admin_app(database_url)  # type: ignore[call-arg]
