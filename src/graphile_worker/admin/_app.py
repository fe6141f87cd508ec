"""``admin_app()``: check the settings, bind the handlers to them, and build the Starlette app.

Everything a request passes through is assembled here, outermost first: the security
headers (so even a refusal carries them), authentication (before any routing, so no route
can forget it), then the routes. Changes (POST) are additionally checked by each handler
through :func:`~graphile_worker.admin._posts.posted`: read-only, origin and CSRF token.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ConfigurationError
from ..sql import DEFAULT_SCHEMA, quote_identifier
from . import _add, _cron, _job, _jobs, _overview, _workers
from ._auth import AdminAuth, AuthMiddleware
from ._problems import exception_handlers
from ._render import make_templates
from ._security import SecurityHeadersMiddleware
from ._source import Source
from ._state import Admin
from ._throughput import Sampler

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..crontab import CronItem
    from ..drivers.base import DatabaseDriver
    from ..utils import WorkerUtils

__all__ = ["SECRET_ENVIRONMENT_VARIABLE", "admin_app"]

SECRET_ENVIRONMENT_VARIABLE = "GRAPHILE_WORKER_ADMIN_SECRET"
"""Where the CSRF secret is read from when ``csrf_secret`` is not given."""

_STATIC = Path(__file__).parent / "static"

Handler = Callable[[Admin, "Request"], Awaitable["Response"]]


def _bind(admin: Admin, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as a Starlette endpoint, with this app's settings."""

    async def endpoint(request: Request) -> Response:
        return await handler(admin, request)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def _csrf_secret(given: str | None) -> bytes:
    # An empty variable counts as unset, as in a container that declares it for everyone.
    secret = given if given is not None else os.environ.get(SECRET_ENVIRONMENT_VARIABLE) or None
    if secret is None:
        # Tokens then change when the process restarts: a page open across a restart
        # must be reloaded before its buttons work again, which the 403 page says.
        return secrets.token_bytes(32)
    if not isinstance(secret, str) or len(secret) < 16:
        raise ConfigurationError(
            "the admin's CSRF secret must be a str of at least 16 characters (from "
            f"csrf_secret= or ${SECRET_ENVIRONMENT_VARIABLE}); generate one with "
            "secrets.token_urlsafe(32)"
        )
    return secret.encode()


def _refresh(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"refresh_seconds must be a number, not {value!r}")
    if value != 0 and not 0.5 <= value <= 3600:
        raise ConfigurationError(
            f"refresh_seconds must be 0 (no live refresh) or from 0.5 to 3600, not {value!r}"
        )
    return float(value)


def _crontab(
    path: str | os.PathLike[str] | None,
) -> tuple[tuple[CronItem, ...] | None, Path | None]:
    if path is None:
        return None, None
    from ..crontab import load_crontab

    resolved = Path(path)
    if not resolved.is_file():
        raise ConfigurationError(
            f"crontab {str(resolved)!r} is not a file; pass an existing crontab"
        )
    return tuple(load_crontab(resolved)), resolved


def _routes(admin: Admin) -> list[Route | Mount]:
    def get(path: str, handler: Handler) -> Route:
        return Route(path, _bind(admin, handler), methods=["GET"])

    def post(path: str, handler: Handler) -> Route:
        return Route(path, _bind(admin, handler), methods=["POST"])

    return [
        get("/", _overview.overview),
        get("/jobs", _jobs.jobs),
        post("/jobs/bulk", _jobs.bulk),
        get("/jobs/{job_id}", _job.job_detail),
        post("/jobs/{job_id}/{action}", _job.job_action),
        get("/queues", _overview.queues),
        get("/workers", _workers.workers),
        post("/workers/force-unlock", _workers.force_unlock),
        post("/workers/sweep", _workers.sweep),
        get("/cron", _cron.cron),
        get("/add", _add.add_form),
        post("/add", _add.add_job),
        Mount("/static", StaticFiles(directory=_STATIC), name="static"),
    ]


def admin_app(
    source: str | DatabaseDriver | WorkerUtils,
    *,
    auth: AdminAuth,
    schema: str = DEFAULT_SCHEMA,
    read_only: bool = False,
    crontab: str | os.PathLike[str] | None = None,
    csrf_secret: str | None = None,
    refresh_seconds: float = 5.0,
    driver: str = "auto",
) -> Starlette:
    """The admin as an ASGI app, to mount in yours or serve with uvicorn.

    ``app.mount("/jobs", admin_app(...))`` serves it under ``/jobs``; every link follows
    the mount point (and a proxy's ``root_path``).

    Args:
        source: A ``postgresql://`` URL, for which the admin opens its own connection pool
            on the first request and closes it when the app's lifespan ends; or a
            :class:`~graphile_worker.drivers.DatabaseDriver` or
            :class:`~graphile_worker.WorkerUtils` you own, which it never closes.
        auth: Who may use it: :meth:`AdminAuth.basic`, :meth:`~AdminAuth.bearer`,
            :meth:`~AdminAuth.header` or :meth:`~AdminAuth.none`. Required, so that an
            open admin is always a choice someone made.
        schema: The graphile-worker schema to show.
        read_only: Refuse every change (403) and show no button that would make one.
        crontab: A crontab file: the cron page then shows each entry's schedule and next
            run. It is read once, now.
        csrf_secret: The key of the CSRF tokens (at least 16 characters). Default:
            ``$GRAPHILE_WORKER_ADMIN_SECRET``, else a random one per process; set it when
            several processes serve the admin, so that a form from one is accepted by
            another.
        refresh_seconds: How often open pages refresh themselves; 0 turns it off.
        driver: The driver for a URL ``source`` (see :func:`~graphile_worker.drivers.create_driver`).

    Raises:
        ConfigurationError: a setting is invalid.
        CrontabError: the crontab has an invalid line.

    A URL source's pool is closed by the app's lifespan, which Starlette does not run for
    a mounted app: either pass a driver or ``WorkerUtils`` you close yourself, or enter
    ``admin.router.lifespan_context(admin)`` in your app's own lifespan.
    """
    if not isinstance(auth, AdminAuth):
        raise ConfigurationError(
            "admin_app() needs auth=AdminAuth.basic(password), .bearer(token), "
            f".header(token) or .none(), not {auth!r:.60}"
        )
    quote_identifier(schema)
    items, crontab_path = _crontab(crontab)
    admin = Admin(
        source=Source(source, schema=schema, driver=driver),
        schema=schema,
        csrf_secret=_csrf_secret(csrf_secret),
        read_only=bool(read_only),
        crontab=items,
        crontab_path=crontab_path,
        refresh_seconds=_refresh(refresh_seconds),
        sampler=Sampler(),
        templates=make_templates(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await admin.source.aclose()

    handlers: Any = exception_handlers(admin)
    return Starlette(
        routes=_routes(admin),
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(AuthMiddleware, auth=auth),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
