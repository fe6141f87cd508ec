"""Spans and moments as people read them (``42s``, ``in 7m``, ``3.5h ago``), for the CLI and
the admin alike, so both say the same thing about the same job."""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["age", "relative"]


def age(span: timedelta) -> str:
    """A short human form of a (non-negative) span: ``42s``, ``7m``, ``3.5h``, ``2.0d``."""
    total = max(0.0, span.total_seconds())
    if total < 120:
        return f"{total:.0f}s"
    if total < 7200:
        return f"{total / 60:.0f}m"
    if total < 172800:
        return f"{total / 3600:.1f}h"
    return f"{total / 86400:.1f}d"


def relative(moment: datetime | None, now: datetime) -> str:
    """``in 5m`` or ``3h ago`` (``now`` within a second reads ``now``); ``-`` for no time."""
    if moment is None:
        return "-"
    delta = moment - now
    if abs(delta) < timedelta(seconds=1):
        return "now"
    return f"in {age(delta)}" if delta > timedelta(0) else f"{age(-delta)} ago"
