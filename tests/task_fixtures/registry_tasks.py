"""A module-level ``tasks`` registry, plus a second registry named for ``module:attribute``."""

from __future__ import annotations

from graphile_worker.task import TaskRegistry, task


@task("first")
async def first(payload: object) -> None:
    pass


@task("second")
async def second(payload: object) -> None:
    pass


tasks = TaskRegistry([first])
others = TaskRegistry([second])
