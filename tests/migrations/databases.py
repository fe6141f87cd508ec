"""Small database helpers for the migration tests: connections and scratch databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

__all__ = ["connect", "scratch_database"]


@contextmanager
def connect(url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit psycopg connection, closed on exit."""
    with psycopg.connect(url, autocommit=True) as connection:
        yield connection


@contextmanager
def scratch_database(pg_cluster: Any, purpose: str) -> Iterator[str]:
    """A new empty database on ``pg_cluster``, dropped on exit; yields its URL.

    ``pg_cluster`` is the suite's session fixture (``create_database`` / ``drop_database``).
    """
    name = f"migrations_{purpose}_{uuid.uuid4().hex[:10]}"
    url: str = pg_cluster.create_database(name)
    try:
        yield url
    finally:
        pg_cluster.drop_database(name)
