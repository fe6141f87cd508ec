"""The overview (counts by state, task and queue, throughput) and the named queues page.

Both read counts in one pass over the jobs (``stats()``, ``queues()``): no page runs a
query per task or per queue, whatever their number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._render import page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ._state import Admin

__all__ = ["overview", "queues"]


async def overview(admin: Admin, request: Request) -> Response:
    """GET /: counts per state, per task and per queue, the oldest ready job, throughput."""
    utils = await admin.source.utils()
    # The reading comes first, so that the chart drawn below already includes it.
    await admin.sampler.maybe_sample(utils.job_activity)
    stats = await utils.stats()
    context = {"stats": stats, "chart": admin.sampler.chart()}
    return await page(admin, request, "overview.html", context, live=True, nav="overview")


async def queues(admin: Admin, request: Request) -> Response:
    """GET /queues: every named queue, who holds it and since when, and its jobs."""
    utils = await admin.source.utils()
    rows = await utils.queues()
    return await page(admin, request, "queues.html", {"queues": rows}, live=True, nav="queues")
