from __future__ import annotations

from graphile_worker.task import task

from .models import Thing


@task("package_thing")
def handle(payload: Thing) -> None:
    pass
