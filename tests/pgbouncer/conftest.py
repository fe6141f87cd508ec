"""Fixtures for the PgBouncer tests: the pooler itself, and the CLI runner of tests/cli."""

from __future__ import annotations

from tests._servers import pgbouncer, pgbouncer_url
from tests.cli.conftest import _isolated_sys_path, cli

__all__ = ["_isolated_sys_path", "cli", "pgbouncer", "pgbouncer_url"]
