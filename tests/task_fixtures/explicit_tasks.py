"""A module-level ``tasks`` list wins over scanning."""

from __future__ import annotations

from graphile_worker.task import task


@task("chosen")
def chosen(payload: object) -> None:
    pass


@task("not_listed")
def not_listed(payload: object) -> None:
    pass


tasks = [chosen]
