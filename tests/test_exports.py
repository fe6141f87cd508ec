"""The package's public surface: everything in ``__all__`` exists, and nothing heavy loads."""

from __future__ import annotations

import subprocess
import sys

import graphile_worker


def test_every_exported_name_exists() -> None:
    missing = [name for name in graphile_worker.__all__ if not hasattr(graphile_worker, name)]
    assert missing == []


def test_all_has_no_duplicates() -> None:
    assert len(set(graphile_worker.__all__)) == len(graphile_worker.__all__)


def test_public_classes_are_exported() -> None:
    """Every public class defined in the package's top-level modules is reachable from it."""
    public = {
        name
        for name in dir(graphile_worker)
        if not name.startswith("_") and isinstance(getattr(graphile_worker, name), type)
    }
    assert public <= set(graphile_worker.__all__)


def test_import_loads_no_driver_or_integration() -> None:
    code = (
        "import sys, graphile_worker\n"
        "heavy = {'asyncpg', 'psycopg', 'psycopg_pool', 'alembic', 'trio', 'greenlet'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert loaded == "[]"
