"""A handler class defined here and imported into simple_tasks, which must collect it."""

from __future__ import annotations

import dataclasses
from typing import ClassVar


@dataclasses.dataclass
class Cleanup:
    IDENTIFIER: ClassVar[str] = "cleanup"
    older_than_days: int = 30

    def run(self) -> None:
        pass
