"""No tasks at all."""

from __future__ import annotations


def helper() -> None:
    pass
