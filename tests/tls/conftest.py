"""Fixtures for the TLS tests: a TLS-only server of their own, and the CLI runner of tests/cli."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest

from tests._servers import TlsServer, tls_server
from tests.cli.conftest import _isolated_sys_path, cli

__all__ = ["_isolated_sys_path", "cli", "tls_database", "tls_server"]

_numbers = itertools.count(1)
_TOKEN = uuid.uuid4().hex[:8]


@pytest.fixture
def tls_database(tls_server: TlsServer) -> Iterator[str]:
    """Name of an empty database of this test's own on the TLS server (no schema yet: the
    code under test migrates it, over TLS)."""
    name = f"gwtls_{_TOKEN}_{next(_numbers)}"
    tls_server.cluster.create_database(name)
    yield name
    tls_server.cluster.drop_database(name)
