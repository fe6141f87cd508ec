"""Turning a template and its values into a response: whole pages, fragments and redirects.

Links are built from the ASGI ``root_path`` (where the admin is mounted, plus any
``--root-path`` of a proxy) and a path inside the admin, never from the ``Host`` header, so
the same pages work at ``/``, under ``app.mount("/jobs", ...)`` and behind a proxy.

A GET with ``X-Admin-Fragment: 1`` gets only what is inside ``<main id="content">``: the
live refresh swaps that in, keeping the navigation, the focus and the scroll position.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import HTMLResponse, RedirectResponse

from .._humanize import age, relative
from ._forms import flash_message

if TYPE_CHECKING:
    from starlette.requests import Request

    from ._state import Admin

__all__ = [
    "FRAGMENT_HEADER",
    "Query",
    "base_path",
    "link",
    "make_templates",
    "page",
    "redirect",
    "render",
]

FRAGMENT_HEADER: Final = "x-admin-fragment"

Query = Sequence[tuple[str, str]] | Mapping[str, str]
"""Query parameters for :func:`link`: pairs (repeatable names) or a mapping."""


def base_path(request: Request) -> str:
    """Where the admin lives, as a path: ``""`` at the root, ``"/jobs"`` when mounted there."""
    root = request.scope.get("root_path", "")
    return root.rstrip("/") if isinstance(root, str) else ""


def link(root: str, path: str, query: Query = ()) -> str:
    """The path of ``path`` inside the admin, with ``query`` encoded."""
    pairs = list(query.items()) if isinstance(query, Mapping) else list(query)
    return root + path + ("?" + urlencode(pairs) if pairs else "")


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(timezone.utc).isoformat()


def _age(span: timedelta | None) -> str:
    return "-" if span is None else age(span)


def _number(value: int) -> str:
    return f"{value:,}"


def make_templates() -> Environment:
    """The admin's Jinja2 environment: package templates, autoescaping on, strict names."""
    environment = Environment(
        loader=PackageLoader("graphile_worker.admin", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    environment.filters.update(when=_when, iso=_iso, age=_age, relative=relative, number=_number)
    return environment


def render(
    admin: Admin,
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    live: bool = False,
    nav: str | None = None,
) -> HTMLResponse:
    """The page (or, for the live refresh, its ``<main>``) as an HTML response."""
    root = base_path(request)
    full: dict[str, Any] = {
        "root": root,
        "url": _url_maker(root),
        "csrf_token": admin.csrf_token(request),
        "read_only": admin.read_only,
        "refresh_seconds": admin.refresh_seconds if live else 0,
        "nav": nav,
        "flash": None,
        "error": None,
        "now": datetime.now(timezone.utc),
        "schema": admin.schema,
    }
    full.update(context)
    compiled = admin.templates.get_template(template)
    if request.headers.get(FRAGMENT_HEADER) == "1" and request.method in ("GET", "HEAD"):
        block = compiled.blocks["content"]
        html = "".join(block(compiled.new_context(full)))
    else:
        html = compiled.render(full)
    return HTMLResponse(html, status_code=status)


async def page(
    admin: Admin,
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    live: bool = False,
    nav: str | None = None,
) -> HTMLResponse:
    """A page of the admin: takes a throughput reading if one is due, shows any flash."""
    utils = await admin.source.utils()
    await admin.sampler.maybe_sample(utils.job_activity)
    extra = dict(context)
    if request.method in ("GET", "HEAD"):
        extra.setdefault("flash", flash_message(request.query_params))
    return render(admin, request, template, extra, status=status, live=live, nav=nav)


def _url_maker(root: str) -> Callable[..., str]:
    def url(path: str, query: Query = (), **params: object) -> str:
        pairs = list(query.items()) if isinstance(query, Mapping) else list(query)
        pairs += [(name, str(value)) for name, value in params.items() if value is not None]
        return link(root, path, pairs)

    return url


def redirect(request: Request, path: str, query: Query = ()) -> RedirectResponse:
    """303 See Other to ``path`` inside the admin: after a POST, the browser GETs it."""
    return RedirectResponse(link(base_path(request), path, query), status_code=303)
