"""The workers page: registered workers, every other lock holder, force-unlock and sweep.

Node workers (and ours with recovery off) are not in the registry, so the page lists every
worker id that holds a lock as well, marked ``unregistered``: a dead Node worker's jobs
would otherwise sit locked for four hours with nothing on the page to say why. Releasing a
worker's locks is confirmed first, on a page naming what it holds and warning when its
heartbeat is fresh (its jobs would then run twice).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from ..errors import MigrationError
from ._forms import FormError, one
from ._posts import posted
from ._render import page, redirect
from ._source import both
from ._state import Problem

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..inspection import LockHolder
    from ..recovery import WorkerInfo
    from ..spec import Job
    from ..utils import WorkerUtils
    from ._state import Admin

__all__ = ["WorkerRow", "force_unlock", "sweep", "worker_rows", "workers"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRow:
    """One line of the workers table: a registered worker, or a lock holder that is not."""

    worker_id: str
    status: Literal["alive", "stale", "unregistered"]
    info: WorkerInfo | None
    locked_jobs: int
    locked_queues: int
    oldest_lock_at: datetime | None


def worker_rows(workers: list[WorkerInfo] | None, holders: list[LockHolder]) -> list[WorkerRow]:
    """Registered workers first (oldest first), then the other holders, by id."""
    held = {holder.worker_id: holder for holder in holders}
    rows = []
    for info in workers or []:
        holder = held.pop(info.worker_id, None)
        rows.append(
            WorkerRow(
                worker_id=info.worker_id,
                status="stale" if info.stale else "alive",
                info=info,
                locked_jobs=holder.locked_jobs if holder else info.locked_jobs,
                locked_queues=holder.locked_queues if holder else 0,
                oldest_lock_at=holder.oldest_lock_at if holder else None,
            )
        )
    for holder in held.values():
        # Registered since the registry was read, or not at all (Node).
        status: Literal["alive", "stale", "unregistered"] = "unregistered"
        if holder.registered:
            status = "alive" if holder.alive else "stale"
        rows.append(
            WorkerRow(
                worker_id=holder.worker_id,
                status=status,
                info=None,
                locked_jobs=holder.locked_jobs,
                locked_queues=holder.locked_queues,
                oldest_lock_at=holder.oldest_lock_at,
            )
        )
    return rows


async def workers(admin: Admin, request: Request) -> Response:
    """GET /workers: every worker and lock holder, with force-unlock and sweep buttons."""
    utils = await admin.source.utils()

    async def registered() -> list[WorkerInfo] | None:
        try:
            return await utils.list_workers()
        except MigrationError:
            return None  # no registry: a schema migrated by Node or an older version

    # Each read scans the jobs for locks (no index covers locked_by): in parallel, the
    # page waits for one scan rather than two.
    holders, registry = await both(utils.lock_holders, registered, at_once=admin.source.pooled)
    context = {"rows": worker_rows(registry, holders), "has_registry": registry is not None}
    return await page(admin, request, "workers.html", context, live=True, nav="workers")


_NAMED_JOBS = 50
"""Jobs named on the force-unlock confirmation; more are only counted."""


async def _held_jobs(utils: WorkerUtils, worker_id: str) -> list[Job]:
    """The jobs ``worker_id`` locks (all locked jobs are read: there are few, one per slot)."""
    held: list[Job] = []
    after: int | None = None
    while True:
        listed = await utils.list_jobs(state="locked", limit=10_000, after=after)
        held += [job for job in listed.jobs if job.locked_by == worker_id]
        if listed.next_after is None:
            return held
        after = listed.next_after


async def force_unlock(admin: Admin, request: Request) -> Response:
    """POST /workers/force-unlock: confirm, then release every lock of one worker id."""
    form = await posted(admin, request)
    try:
        worker_id = one(form, "worker_id")
        confirm = one(form, "confirm")
    except FormError as error:
        raise Problem(400, str(error)) from None
    if worker_id is None:
        raise Problem(400, "worker_id is missing: choose the worker to unlock on the workers page")
    if confirm is not None and confirm != "1":
        raise Problem(400, f"confirm must be 1, not {confirm!r:.20}")
    utils = await admin.source.utils()
    holder = next(
        (found for found in await utils.lock_holders() if found.worker_id == worker_id), None
    )
    if confirm is None:
        jobs = await _held_jobs(utils, worker_id) if holder else []
        queues = [queue.name for queue in await utils.queues() if queue.locked_by == worker_id]
        context = {
            "worker_id": worker_id,
            "holder": holder,
            "jobs": jobs[:_NAMED_JOBS],
            "more_jobs": len(jobs) - len(jobs[:_NAMED_JOBS]),
            "queues": queues,
        }
        return await page(admin, request, "unlock_confirm.html", context, nav="workers")
    await utils.force_unlock_workers([worker_id])
    done = [
        ("done", "unlock"),
        ("changed", str(holder.locked_jobs if holder else 0)),
        ("queues", str(holder.locked_queues if holder else 0)),
    ]
    return redirect(request, "/workers", done)


async def sweep(admin: Admin, request: Request) -> Response:
    """POST /workers/sweep: recover the jobs of workers whose heartbeat stopped, now."""
    await posted(admin, request)
    utils = await admin.source.utils()
    try:
        report = await utils.sweep()
    except MigrationError as error:
        raise Problem(409, str(error), title="No worker registry") from None
    return await page(admin, request, "sweep_result.html", {"report": report}, nav="workers")
