"""The add-job page: a form for every option of ``add_job``, checked again on the server.

admin.js checks the payload's JSON as it is typed, for a quick answer; the server decides,
with the same rules as ``add_job`` itself, and shows the form again with the values typed
and the reason when something is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..spec import JobKeyMode
from ._forms import ADD_FIELDS, parse_add
from ._posts import READ_ONLY, posted
from ._render import page, redirect
from ._state import Problem

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ._forms import Values
    from ._state import Admin

__all__ = ["add_form", "add_job"]


def _typed(values: Values | None) -> dict[str, str]:
    """The form as typed, to show it again; a fresh form has an empty object as payload."""
    typed = dict.fromkeys(ADD_FIELDS, "")
    typed["payload"] = "{}"
    if values is not None:
        for name in ADD_FIELDS:
            found = [value for value in values.getlist(name) if isinstance(value, str)]
            typed[name] = found[0] if found else ""
    return typed


def _context(values: Values | None, error: str | None = None) -> dict[str, Any]:
    return {
        "form": _typed(values),
        "modes": [mode.value for mode in JobKeyMode],
        "error": error,
    }


async def add_form(admin: Admin, request: Request) -> Response:
    """GET /add: the empty form."""
    if admin.read_only:
        raise Problem(403, READ_ONLY)
    return await page(admin, request, "add.html", _context(None), nav="add")


async def add_job(admin: Admin, request: Request) -> Response:
    """POST /add: add the job and show it, or the form again with what is wrong."""
    form = await posted(admin, request)
    try:
        new = parse_add(form)
    except ConfigurationError as error:
        return await page(
            admin, request, "add.html", _context(form, str(error)), status=400, nav="add"
        )
    utils = await admin.source.utils()
    try:
        job = await utils.add_job(new.task, new.payload, spec=new.spec)
    except ConfigurationError as error:
        # The payload can still be refused while it is encoded (NaN, for one).
        return await page(
            admin, request, "add.html", _context(form, str(error)), status=400, nav="add"
        )
    return redirect(request, f"/jobs/{job.id}", [("done", "add")])
