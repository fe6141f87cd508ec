"""The cron page: what schedulers have registered, and the configured crontab's next runs.

The database only knows identifiers and when each last ran (``_private_known_crontabs``);
the schedule lives in the workers' crontab. With ``crontab=`` the page joins the two: each
entry's schedule and next run, and whether a scheduler has registered it yet (a worker
running this crontab registers its entries when it starts).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ._render import page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..crontab import CronItem
    from ..inspection import KnownCrontab
    from ._state import Admin

__all__ = ["CronRow", "cron", "cron_rows"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CronRow:
    """One identifier: its crontab entry (if configured) and what the database knows."""

    identifier: str
    item: CronItem | None
    next_run: datetime | None
    known: KnownCrontab | None


def cron_rows(
    items: tuple[CronItem, ...] | None, known: list[KnownCrontab], now: datetime
) -> list[CronRow]:
    """The crontab's entries in file order, then identifiers only the database knows."""
    by_identifier = {entry.identifier: entry for entry in known}
    rows = []
    for item in items or ():
        runs = item.next_runs(now, 1)
        rows.append(
            CronRow(
                identifier=item.identifier,
                item=item,
                next_run=runs[0] if runs else None,
                known=by_identifier.pop(item.identifier, None),
            )
        )
    rows += [
        CronRow(identifier=identifier, item=None, next_run=None, known=entry)
        for identifier, entry in sorted(by_identifier.items())
    ]
    return rows


async def cron(admin: Admin, request: Request) -> Response:
    """GET /cron: known crontab identifiers and, with a crontab configured, its schedule."""
    utils = await admin.source.utils()
    known = await utils.known_crontabs()
    rows = cron_rows(admin.crontab, known, datetime.now(timezone.utc))
    context = {
        "rows": rows,
        "configured": admin.crontab is not None,
        "crontab_path": admin.crontab_path,
    }
    return await page(admin, request, "cron.html", context, nav="cron")
