"""Two different handlers claim one identifier."""

from __future__ import annotations

from graphile_worker.task import task


@task("same")
def one(payload: object) -> None:
    pass


@task("same")
def two(payload: object) -> None:
    pass
