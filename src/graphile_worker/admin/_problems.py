"""Error pages: what the user sees when a page cannot be shown, and never a stack trace.

Handlers raise :class:`~graphile_worker.admin._state.Problem` for what the user can fix
(400), may not do (403), asked for in vain (404) or must wait for (409, 503). Database
failures are turned into a 503 page here, in one place, naming the problem (an unreachable
server, a schema that was never migrated) with the URL's password removed. Anything else
is a bug: a plain 500 page, and the exception goes to the server's log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response

from ..errors import (
    ConfigurationError,
    ConnectionLostError,
    DatabaseError,
    GraphileWorkerError,
    MigrationError,
    QueryError,
)
from ._render import render
from ._security import SECURITY_HEADERS
from ._source import SourceUnavailableError
from ._state import Problem

if TYPE_CHECKING:
    from starlette.requests import Request

    from ._state import Admin

__all__ = ["database_problem", "exception_handlers", "problem_page"]

_logger = logging.getLogger("graphile_worker.admin")

# SQLSTATEs of "the schema is not there": undefined table, undefined function, no schema.
_NOT_MIGRATED: Final = frozenset({"42P01", "42883", "3F000"})

_TITLES: Final = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported form",
    503: "Database unavailable",
}

_BARE_500: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Internal error · graphile-worker</title></head>
<body><h1>Internal error</h1><p data-testid="error">The admin failed unexpectedly; the
details are in the server's log. Reload the page to try again.</p></body></html>
"""


def problem_page(admin: Admin, request: Request, problem: Problem) -> HTMLResponse:
    """The error page for ``problem``, inside the usual layout."""
    title = problem.title or _TITLES.get(problem.status, "Error")
    context = {"title": title, "error": problem.message, "status": problem.status}
    return render(admin, request, "error.html", context, status=problem.status)


def database_problem(admin: Admin, error: GraphileWorkerError) -> Problem:
    """The 503 page for a failed database call: what went wrong and what to do."""
    message = admin.source.redact(str(error))
    if isinstance(error, QueryError) and error.sqlstate in _NOT_MIGRATED:
        return Problem(
            503,
            f"The database has no graphile-worker schema {admin.schema!r} (or an incomplete "
            f"one): run 'graphile-worker migrate' (or migrate()) against it. The database "
            f"said: {message}",
            title="Schema not found",
        )
    if isinstance(error, ConnectionLostError):
        return Problem(503, f"The database is unreachable: {message}")
    return Problem(503, f"The database could not answer: {message}")


def exception_handlers(admin: Admin) -> dict[type[Exception] | int, object]:
    """Starlette exception handlers that turn every failure into a page."""

    async def on_problem(request: Request, error: Exception) -> Response:
        assert isinstance(error, Problem)
        return problem_page(admin, request, error)

    async def on_bad_input(request: Request, error: Exception) -> Response:
        # FormError, and the library's own checks of what a form passed on.
        return problem_page(admin, request, Problem(400, str(error)))

    async def on_database_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, GraphileWorkerError)
        _logger.warning("Admin page %s failed: %s", request.url.path, error)
        return problem_page(admin, request, database_problem(admin, error))

    async def on_unavailable(request: Request, error: Exception) -> Response:
        _logger.warning("Admin page %s failed: %s", request.url.path, error)
        return problem_page(admin, request, Problem(503, str(error)))

    async def on_http(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        message = {
            404: "There is no such page in the admin.",
            405: "This page does not take that method.",
        }.get(error.status_code, str(error.detail))
        response = problem_page(admin, request, Problem(error.status_code, message))
        if error.headers:
            response.headers.update(error.headers)
        return response

    async def on_crash(request: Request, error: Exception) -> Response:
        # Starlette's outermost middleware calls this, outside the security headers
        # middleware, so the headers are set here too.
        return HTMLResponse(_BARE_500, status_code=500, headers=dict(SECURITY_HEADERS))

    return {
        Problem: on_problem,
        ConfigurationError: on_bad_input,
        DatabaseError: on_database_error,
        MigrationError: on_database_error,
        SourceUnavailableError: on_unavailable,
        HTTPException: on_http,
        Exception: on_crash,
    }
