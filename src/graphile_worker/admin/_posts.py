"""What every change (POST) must pass before it is read: read-only, origin, CSRF token.

Each POST handler starts with :func:`posted`, which refuses the request or returns its
fields. The body is read with a size limit as it arrives, so a client cannot make the
admin hold an arbitrarily large request in memory, and only URL-encoded forms are taken:
that is all the admin's pages send, and it needs no multipart parser in the way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

from starlette.datastructures import ImmutableMultiDict

from ._security import CSRF_FIELD, CSRF_HEADER, csrf_problem
from ._state import Problem

if TYPE_CHECKING:
    from starlette.requests import Request

    from ._state import Admin

__all__ = ["MAX_FIELDS", "MAX_FORM_BYTES", "READ_ONLY", "check_post", "posted"]

READ_ONLY: Final = "This admin is read-only: it shows the queue and changes nothing."

MAX_FORM_BYTES: Final = 2 * 1024 * 1024
"""The largest form accepted: room for a big payload, not for a flood."""
MAX_FIELDS: Final = 1000

_TOO_LARGE: Final = f"The form is larger than {MAX_FORM_BYTES // (1024 * 1024)} MiB."


def check_post(admin: Admin, request: Request, supplied: str | None) -> None:
    """Refuse a change when the admin is read-only or the request may be forged.

    ``supplied`` is the form's token; without one, the ``X-CSRF-Token`` header's is used.

    Raises:
        Problem: 403, with the reason.
    """
    if admin.read_only:
        raise Problem(403, READ_ONLY)
    reason = csrf_problem(
        admin.csrf_secret,
        admin.principal(request),
        supplied if supplied is not None else request.headers.get(CSRF_HEADER),
        request.headers.get("sec-fetch-site"),
    )
    if reason is not None:
        raise Problem(403, reason)


async def _body(request: Request) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        raise Problem(413, _TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise Problem(413, _TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


async def posted(admin: Admin, request: Request) -> ImmutableMultiDict[str, str]:
    """The fields of a POST that may change something, once it is known to be allowed.

    Read-only is decided before the body is read.

    Raises:
        Problem: 403 (read-only, cross-site or a bad token), 413 (too large), 415 (not a
            URL-encoded form) or 400 (unreadable).
    """
    if admin.read_only:
        raise Problem(403, READ_ONLY)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = await _body(request)
    if body and media_type != "application/x-www-form-urlencoded":
        # Only the header can carry a token here: a forged request still gets its 403.
        check_post(admin, request, None)
        raise Problem(
            415, "Send the form as application/x-www-form-urlencoded, as the admin's pages do."
        )
    try:
        fields = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise Problem(400, f"The form could not be read: {error}") from None
    form = ImmutableMultiDict(fields)
    check_post(admin, request, form.get(CSRF_FIELD))
    return form
