"""One job's page, and the retry, cancel and delete buttons on it.

The payload is shown as the JSON it is, pretty-printed, inside ``<pre>`` and escaped like
everything else: a payload holding ``<script>`` is text on the page. A payload the driver
could not decode is shown as the database holds it, read again as text.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .._json import UndecodableJson
from ..inspection import JobState
from ..sql import inspect as inspect_sql
from ..sql._statement import run_async
from ._forms import FormError, job_id
from ._jobs import act, parse_action
from ._posts import posted
from ._render import page, redirect
from ._state import Problem

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..utils import WorkerUtils
    from ._state import Admin

__all__ = ["job_action", "job_detail"]

_SHOWN_PAYLOAD = 1_000_000
"""Characters of an undecodable payload shown; the rest is cut, with a note."""


def _missing(text: str) -> Problem:
    return Problem(
        404,
        f"No job {text}: it may have completed (completed jobs are deleted) or been removed.",
        title="Job not found",
    )


def _requested_id(request: Request) -> int:
    text = str(request.path_params["job_id"])
    found = job_id(text)
    if found is None:
        raise _missing(repr(text) if not text.isdigit() else text)
    return found


async def _raw_payload(utils: WorkerUtils, found: int) -> str | None:
    # WorkerUtils has no public call for undecoded text (only this page needs it), so the
    # statement runs on its executor directly.
    operation = inspect_sql.payload_text(utils.schema, found)
    return await run_async(operation, utils._executor)


async def job_detail(admin: Admin, request: Request) -> Response:
    """GET /jobs/{id}: every field of one job, its payload and last error, and actions."""
    found = _requested_id(request)
    utils = await admin.source.utils()
    job = await utils.get_job(found)
    if job is None:
        raise _missing(str(found))
    payload_note = None
    if isinstance(job.payload, UndecodableJson):
        raw = await _raw_payload(utils, found)
        payload_note = f"This payload cannot be decoded ({job.payload.reason}); shown as stored."
        payload = raw if raw is not None else ""
        if len(payload) > _SHOWN_PAYLOAD:
            payload = payload[:_SHOWN_PAYLOAD]
            payload_note += f" Only the first {_SHOWN_PAYLOAD:,} characters are shown."
    else:
        payload = json.dumps(job.payload, indent=2, ensure_ascii=False, sort_keys=False)
    now = datetime.now(timezone.utc)
    state = JobState.of(job, now).value
    retrying = state in ("ready", "scheduled") and job.attempts > 0 and job.last_error is not None
    context = {
        "job": job,
        "state": state,
        "retrying": retrying,
        "payload": payload,
        "payload_note": payload_note,
    }
    return await page(admin, request, "job.html", context, live=True, nav="jobs")


async def job_action(admin: Admin, request: Request) -> Response:
    """POST /jobs/{id}/retry|cancel|delete: act on one job, then back to a page with the news."""
    try:
        action = parse_action(str(request.path_params["action"]))
    except FormError:
        raise Problem(
            404, "There is no such action; a job can be retried, cancelled or deleted."
        ) from None
    await posted(admin, request)
    found = _requested_id(request)
    utils = await admin.source.utils()
    changed = await act(utils, action, [found])
    if not changed and await utils.get_job(found) is None:
        raise _missing(str(found))
    done = [("done", action), ("changed", str(len(changed))), ("skipped", str(1 - len(changed)))]
    if action == "delete" and changed:
        return redirect(request, "/jobs", done)
    return redirect(request, f"/jobs/{found}", done)
