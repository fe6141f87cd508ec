"""Who may use the admin: :class:`AdminAuth`, and the ASGI middleware that enforces it.

Every request is checked before routing, static files included, so no page or action can
be reached by forgetting a decorator. The decision itself (``AdminAuth._identify``) is a
plain function of the headers and the client address; the middleware only answers with
what it decided. Secrets are compared with :func:`hmac.compare_digest`, so the time a
refusal takes says nothing about how much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import ipaddress
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal, final

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["PRINCIPAL_KEY", "AdminAuth", "AuthMiddleware", "Refusal"]

PRINCIPAL_KEY: Final = "graphile_worker.admin.principal"
"""The ASGI scope key under which the middleware leaves who was let in (for CSRF tokens)."""

REALM: Final = "graphile-worker admin"

AuthKind = Literal["basic", "bearer", "header", "none"]

# RFC 9110 field names are tokens; a name outside them could never arrive in a request.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What survives in a header value: visible ASCII and inner spaces (no CR, LF or NUL).
_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not let in: the status, extra headers and a short text body."""

    status: int
    message: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _secret(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"the admin {kind} must be a str, not {type(value).__name__}")
    if not value:
        raise ConfigurationError(
            f"the admin {kind} must not be empty: an empty {kind} lets anyone in; set one, or "
            "use AdminAuth.none() if something in front of the app authenticates"
        )
    return value


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AdminAuth:
    """How the admin authenticates requests; build one with a class method.

    The admin never guesses: :func:`~graphile_worker.admin.admin_app` requires an
    ``auth``, so serving the queue to anyone who can reach it is a visible choice
    (``AdminAuth.none(loopback_only=False)``), never a default.

    Attributes:
        kind: ``"basic"``, ``"bearer"``, ``"header"`` or ``"none"``.
        username: The HTTP Basic user name (``basic`` only).
        header_name: The request header carrying the token (``header`` only).
        loopback_only: For ``none``: answer only clients on this machine.
    """

    __module__ = "graphile_worker.admin"

    kind: AuthKind
    username: str = ""
    header_name: str = ""
    loopback_only: bool = True
    _secret: bytes = dataclasses.field(default=b"", repr=False)

    def __post_init__(self) -> None:
        # The class methods check their arguments; this catches AdminAuth(...) built by hand,
        # where a forgotten secret would otherwise match an empty password.
        if self.kind not in ("basic", "bearer", "header", "none"):
            raise ConfigurationError(
                f"unknown admin auth kind {self.kind!r}; build one with AdminAuth.basic(), "
                ".bearer(), .header() or .none()"
            )
        if self.kind != "none" and not self._secret:
            raise ConfigurationError(
                f"build {self.kind} admin auth with AdminAuth.{self.kind}(...), which takes "
                "the secret"
            )

    @classmethod
    def basic(cls, password: str, *, username: str = "admin") -> AdminAuth:
        """HTTP Basic authentication: the browser asks for the user name and password.

        Use it over HTTPS (or on a loopback address): Basic sends the password with every
        request, only encoded.

        Raises:
            ConfigurationError: the password or user name is empty, or the user name holds
                a ``:`` (Basic cannot carry one).
        """
        checked = _secret("password", password)
        user = _secret("username", username)
        if ":" in user or any(ord(character) < 32 or ord(character) == 127 for character in user):
            raise ConfigurationError(
                f"the admin username {user!r} cannot be sent with HTTP Basic; use one "
                "without ':' or control characters"
            )
        return cls(kind="basic", username=user, _secret=checked.encode())

    @classmethod
    def bearer(cls, token: str) -> AdminAuth:
        """A token sent as ``Authorization: Bearer <token>``: for scripts and API gateways.

        Raises:
            ConfigurationError: the token is empty or could not travel in a header.
        """
        checked = _secret("token", token)
        if not _HEADER_VALUE.fullmatch(checked) or " " in checked:
            raise ConfigurationError(
                "the admin token must be printable ASCII without spaces, to travel in an "
                "Authorization header; generate one with secrets.token_urlsafe()"
            )
        return cls(kind="bearer", _secret=checked.encode())

    @classmethod
    def header(cls, token: str, *, name: str = "X-Admin-Token") -> AdminAuth:
        """A token in a header of your choice, as a proxy in front of the app may add.

        Raises:
            ConfigurationError: the token is empty or unprintable, or ``name`` is not a
                header name.
        """
        checked = _secret("token", token)
        if not _HEADER_VALUE.fullmatch(checked):
            raise ConfigurationError(
                "the admin token must be printable ASCII, to travel in a header; generate "
                "one with secrets.token_urlsafe()"
            )
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigurationError(f"{name!r} is not an HTTP header name; use e.g. X-Admin-Token")
        return cls(kind="header", header_name=name, _secret=checked.encode())

    @classmethod
    def none(cls, *, loopback_only: bool = True) -> AdminAuth:
        """No credentials.

        By default only clients on this machine (``127.0.0.0/8``, ``::1``) are answered and
        others get 403. ``loopback_only=False`` answers everyone: only for an app that
        authenticates requests before they reach the admin.
        """
        return cls(kind="none", loopback_only=loopback_only)

    def _identify(self, headers: Mapping[str, str], client_host: str | None) -> str | Refusal:
        """Who is asking (the CSRF principal), or why they are refused.

        ``headers`` maps lower-case header names to values; ``client_host`` is the peer's
        address as the server saw it.
        """
        if self.kind == "none":
            if self.loopback_only and not _loopback(client_host):
                return Refusal(
                    403,
                    "This admin only answers clients on this machine (127.0.0.1, ::1). Put an "
                    "authenticating proxy in front and use AdminAuth.none(loopback_only=False), "
                    "or choose basic, bearer or header authentication.",
                )
            return "none"
        if self.kind == "header":
            supplied = headers.get(self.header_name.lower())
            if supplied is not None and hmac.compare_digest(supplied.encode(), self._secret):
                return "token"
            return Refusal(401, f"Authentication required: send the token in {self.header_name}.")
        scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
        if self.kind == "bearer":
            if scheme.lower() == "bearer" and hmac.compare_digest(
                credentials.strip().encode(), self._secret
            ):
                return "token"
            return Refusal(
                401,
                "Authentication required: send Authorization: Bearer <token>.",
                {"WWW-Authenticate": f'Bearer realm="{REALM}"'},
            )
        if scheme.lower() == "basic" and self._basic_matches(credentials.strip()):
            return self.username
        return Refusal(
            401,
            "Authentication required: sign in with the admin user name and password.",
            {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )

    def _basic_matches(self, credentials: str) -> bool:
        try:
            decoded = base64.b64decode(credentials.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            return False
        user, colon, password = decoded.partition(b":")
        # Both compared, always, so the time taken does not say which one was wrong.
        user_ok = hmac.compare_digest(user, self.username.encode())
        password_ok = hmac.compare_digest(password, self._secret)
        return bool(colon) and user_ok and password_ok


@final
class AuthMiddleware:
    """Answers every HTTP request that :class:`AdminAuth` refuses, before any routing."""

    __slots__ = ("_app", "_auth")

    def __init__(self, app: ASGIApp, auth: AdminAuth) -> None:
        self._app = app
        self._auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._app(scope, receive, send)
            return
        if scope["type"] != "http":
            # No websocket routes exist; refuse before anything could look at one.
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        client = scope.get("client")
        decision = self._auth._identify(headers, client[0] if client else None)
        if isinstance(decision, Refusal):
            await _refuse(decision, send)
            return
        await self._app({**scope, PRINCIPAL_KEY: decision}, receive, send)


async def _refuse(refusal: Refusal, send: Send) -> None:
    body = (refusal.message + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in refusal.headers.items()),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
