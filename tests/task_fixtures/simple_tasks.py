"""Every kind of module-level task, next to things that look similar but are not tasks."""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from graphile_worker.spec import TypedPayload
from graphile_worker.task import task

from .other_tasks import Cleanup

if TYPE_CHECKING:
    # Not imported at run time, so WorkerContext is not a global: fine, because only the
    # payload annotation is ever evaluated.
    from graphile_worker.worker import WorkerContext

__all__ = ["Cleanup", "TypedPayload"]


@dataclasses.dataclass
class SendEmail:
    IDENTIFIER: ClassVar[str] = "send_email"
    to: str

    async def run(self, ctx: WorkerContext) -> None:
        pass


@dataclasses.dataclass
class Notice:
    """A payload type with an IDENTIFIER but no run(): handled by a function, not a task."""

    IDENTIFIER: ClassVar[str] = "notice"
    text: str


class AbstractHandler(abc.ABC):
    IDENTIFIER: ClassVar[str] = "abstract"

    @abc.abstractmethod
    def run(self) -> None: ...


@task("resize")
def resize(payload: dict[str, Any], ctx: WorkerContext) -> None:
    pass


@task
async def notify(payload: Notice) -> None:
    pass


alias_of_resize = resize  # the same task under a second name: collected once


def helper(payload: dict[str, Any]) -> None:
    """Undecorated: not a task."""
