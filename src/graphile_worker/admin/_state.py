"""What every handler of one admin app shares: its settings and resources, in one object.

:func:`~graphile_worker.admin.admin_app` builds one :class:`Admin` and binds each handler
to it, rather than keeping anything in module globals or in ``app.state``: two admins
mounted in one process (two schemas, say) never see each other's settings.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, final

from ._auth import PRINCIPAL_KEY
from ._security import csrf_token

if TYPE_CHECKING:
    from pathlib import Path

    from jinja2 import Environment
    from starlette.requests import Request

    from ..crontab import CronItem
    from ._source import Source
    from ._throughput import Sampler

__all__ = ["Admin", "Problem"]


class Problem(Exception):
    """Answer with an error page instead of the page asked for.

    Raised by handlers for what the user can fix or must know (400, 403, 404, 409, 503);
    the app turns it into the error page with :attr:`status` and :attr:`message`.
    """

    def __init__(self, status: int, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Admin:
    """One admin app's settings and resources.

    Attributes:
        source: Where the ``WorkerUtils`` comes from.
        schema: The graphile-worker schema shown.
        csrf_secret: The key of the CSRF tokens.
        read_only: Refuse every change, and show no button that would make one.
        crontab: The configured crontab's entries, or ``None`` without one.
        crontab_path: Where they were read from.
        refresh_seconds: The live refresh period; 0 turns it off.
        sampler: The throughput readings.
        templates: The Jinja2 environment (autoescaping on).
    """

    source: Source
    schema: str
    csrf_secret: bytes
    read_only: bool
    crontab: tuple[CronItem, ...] | None
    crontab_path: Path | None
    refresh_seconds: float
    sampler: Sampler
    templates: Environment

    def principal(self, request: Request) -> str:
        """Who the auth middleware let in (``"none"`` if it did not run, as in tests)."""
        principal = request.scope.get(PRINCIPAL_KEY)
        return principal if isinstance(principal, str) else "none"

    def csrf_token(self, request: Request) -> str:
        """The CSRF token for this request's principal."""
        return csrf_token(self.csrf_secret, self.principal(request))
