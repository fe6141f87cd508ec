"""Database drivers: the :class:`DatabaseDriver` protocol and its implementations.

Implementations are imported by name on first use, so ``import graphile_worker`` never
imports asyncpg or psycopg.
"""

from __future__ import annotations

from .base import (
    AsyncExecutor,
    DatabaseDriver,
    Notification,
    Operation,
    Params,
    Row,
    Statement,
    SyncExecutor,
    run_async,
    run_sync,
)

__all__ = [
    "AsyncExecutor",
    "DatabaseDriver",
    "Notification",
    "Operation",
    "Params",
    "Row",
    "Statement",
    "SyncExecutor",
    "run_async",
    "run_sync",
]
