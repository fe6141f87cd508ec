"""Helpers for the admin app's ASGI-level tests: a client that speaks to the app in process.

Requests go through ``httpx.ASGITransport`` straight into the Starlette app, no server and
no socket, so a test costs a database clone and a driver. Tests that read or change jobs
take ``driver`` and run on every (runtime, driver) pair; tests of what the app decides
without the driver's help (auth, CSRF, headers, validation) take ``runtime_driver``: one
driver per runtime, so they still run on asyncio and trio.

Jobs are put into their states with plain SQL on the ``sync_connection`` (the seed of
``tests/test_inspect.py``), and what an action changed is read back the same way, never
through the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import anyio
import httpx
import pytest

from graphile_worker import WorkerUtils
from graphile_worker.admin import AdminAuth, admin_app

from ..test_inspect import seed
from ._html import Element, parse

if TYPE_CHECKING:
    import psycopg
    from starlette.types import ASGIApp

    from graphile_worker.drivers import DatabaseDriver

SECRET = "test-csrf-secret"
"""The ``csrf_secret`` every test app gets, so tests can compute tokens themselves."""

LOOPBACK = ("127.0.0.1", 50123)
REMOTE = ("10.0.0.5", 1234)

RUNTIME_DRIVER = {"asyncio": "asyncpg", "trio": "psycopg-threaded"}
"""The driver for tests that need a database but not a particular driver, per runtime."""

SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
}

# Markup a hostile task, queue, key, payload or worker id might carry.
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def csrf_token(principal: str, secret: str = SECRET) -> str:
    """The token the spec defines: HMAC-SHA256(secret, principal), hex."""
    return hmac.new(secret.encode(), principal.encode(), hashlib.sha256).hexdigest()


def basic(username: str, password: str) -> dict[str, str]:
    """The ``Authorization`` header of HTTP Basic for these credentials."""
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)


def assert_no_markup_injected(body: str) -> None:
    """Neither hostile string reached the page as markup (autoescaping held)."""
    assert SCRIPT not in body
    assert "<img src=x" not in body
    assert "onerror=alert" not in body.replace("onerror=alert(1)&gt;", "")
    document = parse(body)
    assert document.find_all("img") == []
    # The only scripts are the shipped file, never inline code.
    for script in document.find_all("script"):
        assert script.get("src"), "inline <script> on the page"
        assert script.text == ""


class Admin:
    """An httpx client on one admin app, with the CSRF token of its principal at hand."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.token = token

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def page(self, path: str, status: int = 200, **kwargs: Any) -> Element:
        """GET a page, check its status and security headers, and parse it."""
        response = await self.client.get(path, **kwargs)
        assert response.status_code == status, (path, response.status_code, response.text)
        assert_security_headers(response)
        return parse(response.text)

    async def page_of(self, response: httpx.Response, status: int = 200) -> Element:
        """Check a response's status and security headers, and parse it."""
        assert response.status_code == status, (response.status_code, response.text)
        assert_security_headers(response)
        return parse(response.text)

    async def post(
        self,
        path: str,
        data: Mapping[str, str | list[str]] | list[tuple[str, str]] | None = None,
        *,
        token: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """POST a form carrying the CSRF token (``token=""`` sends none)."""
        items = data if isinstance(data, list) else list(_pairs(data or {}))
        token = self.token if token is None else token
        if token:
            items = [*items, ("csrf_token", token)]
        form: dict[str, list[str]] = {}
        for name, value in items:
            form.setdefault(name, []).append(value)
        return await self.client.post(path, data=form, **kwargs)

    async def submit(
        self, page_url: str, form: Element, button: Element | None = None
    ) -> httpx.Response:
        """Submit a form found on a page as a browser would: its fields as they stand."""
        fields = form_fields(form)
        if button is not None and button.get("name"):
            fields.append((button.attr("name"), button.get("value") or ""))
        action = urljoin(page_url, form.get("action") or page_url)
        method = (form.get("method") or "get").lower()
        if method == "get":
            return await self.client.get(action, params=fields)
        return await self.post(action, fields, token="")

    async def follow(self, response: httpx.Response) -> Element:
        """After a 303, GET where it points and parse the page."""
        assert response.status_code == 303, (response.status_code, response.text)
        return await self.page(location(response))


def form_fields(form: Element) -> list[tuple[str, str]]:
    """What a browser sends for a form: named inputs (checked boxes only), selects, textareas.

    Submit buttons are left out; :meth:`Admin.submit` adds the one pressed.
    """
    fields: list[tuple[str, str]] = []
    for element in form.iter():
        name = element.get("name")
        if not name or element.get("disabled") is not None:
            continue
        if element.tag == "input":
            kind = (element.get("type") or "text").lower()
            if kind in {"submit", "button", "image", "reset", "file"}:
                continue
            if kind in {"checkbox", "radio"}:
                if element.get("checked") is not None:
                    fields.append((name, element.get("value") or "on"))
                continue
            fields.append((name, element.get("value") or ""))
        elif element.tag == "textarea":
            fields.append((name, element.raw_text.removeprefix("\n")))
        elif element.tag == "select":
            options = element.find_all("option")
            chosen = [option for option in options if option.get("selected") is not None]
            fields.extend(
                (name, option.get("value") or option.text) for option in chosen or options[:1]
            )
    return fields


def _pairs(data: Mapping[str, str | list[str]]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in data.items():
        pairs.extend((name, item) for item in (value if isinstance(value, list) else [value]))
    return pairs


def location(response: httpx.Response) -> str:
    """Where a redirect points, as an absolute URL (relative ``Location`` resolved)."""
    return urljoin(str(response.request.url), str(response.headers["location"]))


@asynccontextmanager
async def open_admin(
    source: str | DatabaseDriver | WorkerUtils,
    *,
    auth: AdminAuth | None = None,
    principal: str = "none",
    client: tuple[str, int] = LOOPBACK,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> AsyncIterator[Admin]:
    """An :class:`Admin` on a fresh app over ``source`` (auth ``none`` unless given)."""
    options.setdefault("csrf_secret", SECRET)
    app = admin_app(source, auth=auth or AdminAuth.none(), **options)
    async with admin_client(app, client=client, headers=headers) as http:
        yield Admin(http, csrf_token(principal))


@asynccontextmanager
async def admin_client(
    app: ASGIApp,
    *,
    client: tuple[str, int] = LOOPBACK,
    headers: Mapping[str, str] | None = None,
    root_path: str = "",
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app, client=client, root_path=root_path)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan around the block, as a server would."""
    to_app_send, to_app_receive = anyio.create_memory_object_stream[dict[str, Any]](4)
    from_app_send, from_app_receive = anyio.create_memory_object_stream[dict[str, Any]](4)

    async def receive() -> dict[str, Any]:
        return await to_app_receive.receive()

    async def send(message: Any) -> None:
        await from_app_send.send(dict(message))

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    async with (
        to_app_send,
        to_app_receive,
        from_app_send,
        from_app_receive,
        anyio.create_task_group() as group,
    ):
        group.start_soon(app, scope, receive, send)
        await to_app_send.send({"type": "lifespan.startup"})
        with anyio.fail_after(10):
            started = await from_app_receive.receive()
        assert started["type"] == "lifespan.startup.complete", started
        try:
            yield
        finally:
            await to_app_send.send({"type": "lifespan.shutdown"})
            with anyio.fail_after(10):
                stopped = await from_app_receive.receive()
            assert stopped["type"] == "lifespan.shutdown.complete", stopped


@pytest.fixture
async def runtime_driver(database_url: str, anyio_backend: str) -> AsyncIterator[DatabaseDriver]:
    """One open driver for this runtime (see :data:`RUNTIME_DRIVER`), closed after the test."""
    from graphile_worker.drivers import create_driver

    opened: DatabaseDriver = await create_driver(database_url, driver=RUNTIME_DRIVER[anyio_backend])
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def seeded(sync_connection: psycopg.Connection[Any]) -> dict[str, int]:
    """Ten jobs, one per edge case of every state (see ``tests/test_inspect.py``)."""
    return seed(sync_connection)
