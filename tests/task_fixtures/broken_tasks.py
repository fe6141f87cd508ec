"""Importing this module fails."""

from __future__ import annotations

raise RuntimeError("database settings missing")
