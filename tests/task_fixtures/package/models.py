from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Thing:
    name: str
