"""Tasks for the worker subprocess that the browser tests watch through the admin.

Loaded by ``graphile-worker run --tasks <this file>``, never imported by the tests. Each
task does one thing a person watching the admin would want to see: finish (and leave a
marker file, so a test knows it really ran), fail with a message, or hold its job locked
until the test creates a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from graphile_worker.task import task
from graphile_worker.worker import WorkerContext


def _mark(payload: dict[str, Any], key: str, ctx: WorkerContext) -> None:
    if key in payload:
        with Path(payload[key]).open("a") as file:
            file.write(f"{ctx.job.id}\n")


@task("succeed")
async def succeed(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """Finish at once, appending the job id to ``payload["marker"]`` when given."""
    _mark(payload, "marker", ctx)


@task("fail")
async def fail(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """Fail every attempt with ``payload["message"]``."""
    raise RuntimeError(payload.get("message", "this task always fails"))


@task("wait_for_file")
async def wait_for_file(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """Keep the job locked until ``payload["release"]`` exists, then finish.

    Sleeping through anyio lets a worker shutdown cancel the wait instead of hanging.
    """
    _mark(payload, "started", ctx)
    release = anyio.Path(payload["release"])
    while True:
        if await release.exists():
            break
        await anyio.sleep(0.05)
    _mark(payload, "marker", ctx)
