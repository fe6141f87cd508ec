"""The jobs list (filters, keyset pages) and the bulk actions on what the filters select.

The list never counts: at a million jobs a count is a scan, and a page is one indexed
statement that walks the primary key from where the previous page ended (``after=``). A
bulk action counts once, on its confirmation page, and acts on the jobs the filters select
when it is confirmed, re-read then; if more match by then than were confirmed, it asks
again rather than change jobs nobody saw counted.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..inspection import JobState
from ._forms import (
    ACTIONS,
    DEFAULT_LIMIT,
    Action,
    FormError,
    Values,
    one,
    parse_filters,
    parse_page,
    positive_int,
)
from ._posts import posted
from ._render import page, redirect
from ._state import Problem

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..spec import Job
    from ..utils import WorkerUtils
    from ._state import Admin

__all__ = ["act", "bulk", "jobs", "parse_action"]

_VERBS = {"retry": "Retry", "cancel": "Cancel", "delete": "Delete"}
_EXPLAIN = {
    "retry": "They become due now with their attempts reset to 0; failed jobs run again.",
    "cancel": "They fail for good (attempts = max attempts) and stay in the table, as failed.",
    "delete": "They are deleted, as if they had completed; this cannot be undone.",
}


def _raw(values: Values) -> dict[str, Any]:
    """What the filter form showed, as typed, to fill it in again."""

    def texts(name: str) -> list[str]:
        return [value for value in values.getlist(name) if isinstance(value, str)]

    def first(name: str) -> str:
        found = texts(name)
        return found[0] if found else ""

    return {
        "states": texts("state"),
        "task": first("task"),
        "queue": first("queue"),
        "key": first("key"),
        "flags": [flag for flag in texts("flag") if flag.strip()],
        "older_than": first("older_than"),
        "newer_than": first("newer_than"),
        "limit": first("limit") or str(DEFAULT_LIMIT),
    }


async def jobs(admin: Admin, request: Request) -> Response:
    """GET /jobs: one page of jobs, newest first, with the filters and bulk buttons."""
    values = request.query_params
    context: dict[str, Any] = {
        "form": _raw(values),
        "states": [state.value for state in JobState],
        "filters": None,
        "rows": None,
        "older_query": None,
        "newest_query": None,
    }
    try:
        filters = parse_filters(values)
        limit, after = parse_page(values)
    except FormError as error:
        context["error"] = str(error)
        return await page(admin, request, "jobs.html", context, status=400, nav="jobs")
    utils = await admin.source.utils()
    listed = await utils.list_jobs(**filters.arguments(), limit=limit, after=after)
    now = datetime.now(timezone.utc)
    same_page = filters.query() + ([] if limit == DEFAULT_LIMIT else [("limit", str(limit))])
    context.update(
        filters=filters,
        rows=[(job, JobState.of(job, now).value) for job in listed.jobs],
        older_query=(
            None if listed.next_after is None else [*same_page, ("after", str(listed.next_after))]
        ),
        newest_query=None if after is None else same_page,
    )
    return await page(admin, request, "jobs.html", context, live=True, nav="jobs")


def parse_action(text: str | None) -> Action:
    """The ``action`` field of a change: retry, cancel or delete."""
    for action in ACTIONS:
        if text == action:
            return action
    if text is None:
        raise FormError("action is missing; choose retry, cancel or delete")
    raise FormError(f"action {text!r:.40} is not known; choose retry, cancel or delete")


async def act(utils: WorkerUtils, action: Action, ids: list[int]) -> list[Job]:
    """Do ``action`` to the jobs ``ids``; returns the jobs changed (locked ones are not)."""
    if action == "retry":
        # What `graphile-worker jobs retry` does: due now, attempts from 0 again.
        return await utils.reschedule_jobs(ids, run_at=datetime.now(timezone.utc), attempts=0)
    if action == "cancel":
        return await utils.permanently_fail_jobs(ids)
    return await utils.complete_jobs(ids)


async def bulk(admin: Admin, request: Request) -> Response:
    """POST /jobs/bulk: confirm, then retry, cancel or delete every job the filters select."""
    form = await posted(admin, request)
    try:
        action = parse_action(one(form, "action"))
        filters = parse_filters(form)
        confirm_text = one(form, "confirm")
        confirmed = None if confirm_text is None else positive_int("confirm", confirm_text, low=0)
    except FormError as error:
        raise Problem(400, str(error)) from None
    utils = await admin.source.utils()
    ids = await utils.job_ids(**filters.arguments())
    if confirmed is None or len(ids) > confirmed:
        context = {
            "action": action,
            "verb": _VERBS[action],
            "explain": _EXPLAIN[action],
            "filters": filters,
            "count": len(ids),
            "previous": confirmed,
        }
        return await page(admin, request, "bulk_confirm.html", context, nav="jobs")
    changed = await act(utils, action, ids) if ids else []
    done = [
        ("done", action),
        ("changed", str(len(changed))),
        ("skipped", str(len(ids) - len(changed))),
    ]
    return redirect(request, "/jobs", filters.query() + done)
