"""Every auth mode lets the right credentials in and keeps everything else out.

Refusals happen before routing, so they are checked on pages, actions and static files
alike. These tests do not depend on the driver, so each runs once per runtime.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import pytest

from graphile_worker.admin import AdminAuth
from graphile_worker.errors import ConfigurationError

from ..worker.conftest import job_rows
from .conftest import REMOTE, assert_security_headers, basic, csrf_token, open_admin

if TYPE_CHECKING:
    from typing import Any

    import psycopg

    from graphile_worker.drivers import DatabaseDriver

pytestmark = pytest.mark.anyio

BASIC_CHALLENGE = 'Basic realm="graphile-worker admin"'
PATHS = ("/", "/jobs", "/jobs/1", "/queues", "/workers", "/cron", "/add", "/static/admin.css")


async def assert_refused(
    driver: DatabaseDriver,
    auth: AdminAuth,
    headers: dict[str, str],
    challenge: str | None,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    status: int = 401,
) -> None:
    """Every page, static file and action answers ``status`` and changes nothing."""
    async with open_admin(driver, auth=auth, headers=headers, client=client) as admin:
        for path in PATHS:
            response = await admin.get(path)
            assert response.status_code == status, (path, headers)
            assert_security_headers(response)
            if challenge is None:
                assert "www-authenticate" not in response.headers
            else:
                assert response.headers["www-authenticate"].startswith(challenge)
            # A short text page, not a stack trace or an HTML shell.
            assert len(response.text) < 500
            assert "Traceback" not in response.text
        # Even with a valid-looking token for every principal, nothing is added.
        for principal in ("admin", "token", "none"):
            response = await admin.post("/add", {"task": "intruder"}, token=csrf_token(principal))
            assert response.status_code == status


async def test_basic_auth(
    runtime_driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    auth = AdminAuth.basic("s3cret pässword", username="ops")
    async with open_admin(
        runtime_driver, auth=auth, principal="ops", headers=basic("ops", "s3cret pässword")
    ) as admin:
        for path in ("/", "/jobs", "/static/admin.js"):
            assert (await admin.get(path)).status_code == 200, path
        # From another address too: credentials, not the address, decide.
    async with open_admin(
        runtime_driver,
        auth=auth,
        principal="ops",
        headers=basic("ops", "s3cret pässword"),
        client=REMOTE,
    ) as admin:
        assert (await admin.get("/")).status_code == 200
        response = await admin.post("/add", {"task": "from_ops"})
        assert response.status_code == 303, response.text
    assert [row["task_identifier"] for row in job_rows(sync_connection)] == ["from_ops"]

    for headers in (
        {},
        basic("ops", "wrong"),
        basic("admin", "s3cret pässword"),
        basic("ops", "s3cret pässword "),
        basic("ops", ""),
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Bearer s3cret"},
        {"Authorization": "Basic"},
    ):
        await assert_refused(runtime_driver, auth, headers, BASIC_CHALLENGE)
    assert [row["task_identifier"] for row in job_rows(sync_connection)] == ["from_ops"]


async def test_bearer_auth(runtime_driver: DatabaseDriver) -> None:
    auth = AdminAuth.bearer("tok-123_abc")
    async with open_admin(
        runtime_driver,
        auth=auth,
        principal="token",
        headers={"Authorization": "Bearer tok-123_abc"},
        client=REMOTE,
    ) as admin:
        assert (await admin.get("/")).status_code == 200
        assert (await admin.post("/add", {"task": "t"})).status_code == 303
    for headers in (
        {},
        {"Authorization": "Bearer tok-123_abd"},
        {"Authorization": "Bearer tok-123_abc-and-more"},
        {"Authorization": "Bearer "},
        basic("admin", "tok-123_abc"),
        {"X-Admin-Token": "tok-123_abc"},
    ):
        await assert_refused(runtime_driver, auth, headers, "Bearer")


async def test_header_auth(runtime_driver: DatabaseDriver) -> None:
    auth = AdminAuth.header("proxy-secret", name="X-Proxy-Auth")
    async with open_admin(
        runtime_driver,
        auth=auth,
        principal="token",
        headers={"X-Proxy-Auth": "proxy-secret"},
        client=REMOTE,
    ) as admin:
        assert (await admin.get("/")).status_code == 200
        assert (await admin.post("/add", {"task": "t"})).status_code == 303
    for headers in (
        {},
        {"X-Proxy-Auth": "proxy-secreT"},
        {"X-Admin-Token": "proxy-secret"},
        {"Authorization": "Bearer proxy-secret"},
    ):
        await assert_refused(runtime_driver, auth, headers, None)
    # The default header name.
    async with open_admin(
        runtime_driver,
        auth=AdminAuth.header("t0k"),
        principal="token",
        headers={"X-Admin-Token": "t0k"},
    ) as admin:
        assert (await admin.get("/")).status_code == 200


async def test_none_auth(runtime_driver: DatabaseDriver) -> None:
    # By default, loopback clients only.
    for address in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        async with open_admin(runtime_driver, client=(address, 40000)) as admin:
            assert (await admin.get("/")).status_code == 200, address
            assert (await admin.post("/add", {"task": "local"})).status_code == 303, address
    for address in ("10.0.0.5", "192.168.1.20", "::ffff:10.0.0.5", "2001:db8::1", "localhost"):
        await assert_refused(
            runtime_driver, AdminAuth.none(), {}, None, client=(address, 1234), status=403
        )
    # loopback_only=False: for an app that authenticates in front of the admin.
    async with open_admin(
        runtime_driver, auth=AdminAuth.none(loopback_only=False), client=REMOTE
    ) as admin:
        assert (await admin.get("/")).status_code == 200
        assert (await admin.post("/add", {"task": "remote"})).status_code == 303


@pytest.mark.parametrize(
    "build",
    [
        lambda: AdminAuth.basic(""),
        lambda: AdminAuth.basic("pw", username=""),
        lambda: AdminAuth.bearer(""),
        lambda: AdminAuth.header(""),
    ],
    ids=["basic-password", "basic-username", "bearer", "header"],
)
def test_empty_secrets_are_refused(build: Any) -> None:
    with pytest.raises(ConfigurationError, match="must not be empty"):
        build()
    with pytest.raises(ValueError):
        build()
