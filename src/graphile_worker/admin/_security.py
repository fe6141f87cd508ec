"""Headers every response carries, and the CSRF token every change must bring back.

The headers make a browser refuse what an attacker would need: framing the admin to trick
clicks (``X-Frame-Options``, ``frame-ancestors``), running a script that did not come from
the admin itself (the Content Security Policy allows no inline script or style at all), and
keeping pages in a shared cache (``no-store``: job payloads may hold personal data).

The CSRF token is an HMAC of the signed-in principal under a secret: a page the admin
rendered carries it, a page on another site cannot compute it. It needs no session or
cookie, so it works the same behind HTTP Basic, a bearer token or a proxy. Modern browsers
also say where a request came from (``Sec-Fetch-Site``); a cross-site POST is refused even
before the token is looked at.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SECURITY_HEADERS",
    "SecurityHeadersMiddleware",
    "csrf_problem",
    "csrf_token",
]

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)

SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}
"""Set on every response, replacing any value a handler chose."""

CSRF_FIELD: Final = "csrf_token"
"""The form field a POST carries the token in."""
CSRF_HEADER: Final = "x-csrf-token"
"""The header a script's POST may carry it in instead."""

_RAW_HEADERS: Final = [
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in SECURITY_HEADERS.items()
]
_REPLACED: Final = frozenset(name for name, _ in _RAW_HEADERS)


def csrf_token(secret: bytes, principal: str) -> str:
    """The token pages embed for ``principal``: HMAC-SHA256 of it under ``secret``, in hex."""
    return hmac.new(secret, principal.encode(), hashlib.sha256).hexdigest()


def csrf_problem(
    secret: bytes, principal: str, supplied: str | None, fetch_site: str | None
) -> str | None:
    """Why a POST must be refused as a possible forgery, or ``None`` if it may proceed."""
    if fetch_site is not None and fetch_site.strip().lower() == "cross-site":
        return "Cross-site request refused: changes can only be made from the admin's own pages."
    expected = csrf_token(secret, principal)
    if supplied is None or not hmac.compare_digest(supplied.encode(), expected.encode()):
        return "CSRF token missing or invalid; reload the page and try again."
    return None


@final
class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response that passes through it."""

    __slots__ = ("_app",)

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in _REPLACED
                ]
                message = {**message, "headers": kept + _RAW_HEADERS}
            await send(message)

        await self._app(scope, receive, send_with_headers)
