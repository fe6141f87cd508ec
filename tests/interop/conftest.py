"""Fixtures for running Python and Node graphile-worker side by side on one database.

``interop_node`` installs the npm packages pinned in this directory (``npm ci``, once per
session, only when ``node_modules`` does not already hold the pinned versions). Like the
suite's ``node_graphile_worker`` fixture it skips when Node.js or npm is missing, unless
``CI`` is set, where a silently skipped interoperability suite would be a false pass.

``schema`` parametrises a test over the default schema name and a custom one that needs
quoting (capitals and a hyphen), so every test proves both.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.migrations import migrate_sync

from .node import INTEROP_DIR
from .tables import create_tables

DEFAULT_SCHEMA = "graphile_worker"
CUSTOM_SCHEMA = "Interop-Jobs"
"""A schema name both libraries must quote everywhere: capitals and a hyphen."""

MINIMUM_NODE_MAJOR = 20


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


def _pinned_versions() -> dict[str, str]:
    """npm name -> exact version, from package.json (``npm:name@version`` aliases too)."""
    manifest = json.loads((INTEROP_DIR / "package.json").read_text())
    pinned: dict[str, str] = {}
    for name, spec in manifest["dependencies"].items():
        pinned[name] = spec.rsplit("@", 1)[1] if spec.startswith("npm:") else spec
    return pinned


def _installed_version(name: str) -> str | None:
    try:
        manifest = json.loads((INTEROP_DIR / "node_modules" / name / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("version")
    return version if isinstance(version, str) else None


def _outdated() -> dict[str, str | None]:
    return {
        name: _installed_version(name)
        for name, version in _pinned_versions().items()
        if _installed_version(name) != version
    }


def _node_major(node: str) -> int | None:
    completed = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    match = re.match(r"v(\d+)\.", completed.stdout.strip())
    return int(match.group(1)) if match else None


@pytest.fixture(scope="session")
def interop_node() -> Path:
    """The npm project in tests/interop, with its pinned packages installed."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        _skip_or_fail(
            f"{' and '.join(missing)} not found on PATH; install Node.js "
            f"{MINIMUM_NODE_MAJOR}+ with npm to run the Node graphile-worker "
            "interoperability tests"
        )
    node = shutil.which("node")
    assert node is not None
    major = _node_major(node)
    if major is None or major < MINIMUM_NODE_MAJOR:
        _skip_or_fail(
            f"Node.js {MINIMUM_NODE_MAJOR}+ is needed for the interoperability tests, "
            f"found {major or 'an unknown version'}"
        )
    # The lock lives outside the project: `npm ci` deletes node_modules, and a lock file in
    # the project would be one more file for git to ignore. It keeps parallel pytest
    # processes (xdist) from installing at the same time.
    digest = hashlib.sha256(str(INTEROP_DIR.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"gw-interop-npm-{digest}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _outdated():
            completed = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=INTEROP_DIR,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if completed.returncode != 0:
                pytest.fail(
                    f"`npm ci` in {INTEROP_DIR} failed with exit status "
                    f"{completed.returncode}:\n{completed.stdout}\n{completed.stderr}",
                    pytrace=False,
                )
    outdated = _outdated()
    if outdated:
        pytest.fail(
            f"after `npm ci` in {INTEROP_DIR}, expected {_pinned_versions()}, but found {outdated}",
            pytrace=False,
        )
    return INTEROP_DIR


@pytest.fixture(params=[DEFAULT_SCHEMA, CUSTOM_SCHEMA], ids=["default-schema", "custom-schema"])
def schema(request: pytest.FixtureRequest) -> str:
    """The graphile-worker schema name the test uses (default, then a custom one)."""
    name: str = request.param
    return name


@pytest.fixture
def interop_url(interop_node: Path, database_url: str, schema: str) -> str:
    """A database migrated by our migrator in ``schema``, with the interop tables.

    The suite's template already holds the default schema; a custom schema is migrated on
    top, so the default one sits beside it untouched (and must stay empty).
    """
    with psycopg.connect(database_url, autocommit=True) as connection:
        if schema != DEFAULT_SCHEMA:
            migrate_sync(PsycopgSyncExecutor(connection), schema=schema)
        create_tables(connection)
    return database_url


@pytest.fixture
def empty_interop_url(interop_node: Path, empty_database_url: str) -> str:
    """A database with no graphile-worker schema at all, only the interop tables."""
    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        create_tables(connection)
    return empty_database_url


@pytest.fixture
def db(interop_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to ``interop_url`` for reading what the workers did."""
    with psycopg.connect(interop_url, autocommit=True) as connection:
        yield connection
