"""Imports a package that does not exist."""

from __future__ import annotations

import graphile_worker_no_such_dependency  # type: ignore[import-not-found]  # noqa: F401
