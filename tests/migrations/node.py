"""Apply Node graphile-worker's migrations, the oracle our migrations are compared with.

Two ways, for two purposes:

* :func:`apply_node_migrations` replays the SQL files shipped in the npm package the way
  Node's migrator does (bootstrap the ledger, then per migration: ``begin``, ledger insert,
  the migration's SQL, ``pg_notify('worker:migrate', ...)``, ``commit``), but can stop at
  any id, which Node's public API cannot. It needs no Node.js, only the package's ``sql/``.
* :func:`run_node_migrator` runs Node's *real* migrator (``runMigrations`` from the
  installed package) in a subprocess, for end-to-end checks that our replay is faithful.

The package location is decided in one place, :func:`default_node_package`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "NODE_MIGRATE_SCRIPT",
    "NodeMigratorError",
    "apply_node_migrations",
    "default_node_package",
    "node_available",
    "node_breaking_ids",
    "node_migration_ids",
    "node_migration_sql",
    "run_node_migrator",
]

NODE_MIGRATE_SCRIPT = Path(__file__).with_name("node_migrate.mjs")
"""The script that calls the package's ``runMigrations``."""

_SCHEMA_PLACEHOLDER = re.compile(r":GRAPHILE_WORKER_SCHEMA\b")


class NodeMigratorError(RuntimeError):
    """Node's real migrator exited with an error; the message carries its output."""


def default_node_package() -> Path:
    """Where the pinned npm ``graphile-worker`` package is unpacked.

    ``GRAPHILE_WORKER_NODE_PACKAGE`` wins; otherwise the package installed by ``npm ci`` in
    ``tests/node/`` (which may not be installed yet: see :func:`node_available`). Tests should
    prefer the ``node_graphile_worker`` fixture, which installs it.
    """
    configured = os.environ.get("GRAPHILE_WORKER_NODE_PACKAGE")
    if configured:
        return Path(configured)
    return Path(__file__).parents[1] / "node" / "node_modules" / "graphile-worker"


def node_available(package: Path | None = None) -> bool:
    """Whether the package's SQL files are present (enough for :func:`apply_node_migrations`)."""
    return ((package or default_node_package()) / "sql" / "000001.sql").is_file()


@cache
def node_migration_ids(package: Path) -> tuple[int, ...]:
    """The ids of the migrations the package ships, in order."""
    return tuple(sorted(int(path.stem) for path in (package / "sql").glob("[0-9]*.sql")))


@cache
def node_migration_sql(package: Path, migration_id: int) -> str:
    """The raw text of the package's migration ``migration_id``."""
    return (package / "sql" / f"{migration_id:06d}.sql").read_text(encoding="utf-8")


@cache
def node_breaking_ids(package: Path) -> frozenset[int]:
    """Ids whose file starts with Node's ``--! breaking`` marker (how Node decides)."""
    return frozenset(
        migration_id
        for migration_id in node_migration_ids(package)
        if node_migration_sql(package, migration_id).startswith("--! breaking")
    )


def _escape_identifier(name: str) -> str:
    # node-postgres' escapeIdentifier, which Node graphile-worker uses for the schema name.
    return '"' + name.replace('"', '""') + '"'


def apply_node_migrations(
    connection: psycopg.Connection[Any],
    schema: str,
    up_to: int,
    *,
    package: Path | None = None,
) -> list[int]:
    """Apply Node's migrations ``1..up_to`` (those not yet in the ledger) to ``schema``.

    ``connection`` must be in autocommit mode: like Node's migrator, this runs the ledger
    bootstrap on its own and gives each migration a transaction of its own. Returns the ids
    applied.
    """
    if not connection.autocommit:
        raise ValueError("apply_node_migrations needs an autocommit connection")
    package = package or default_node_package()
    escaped = _escape_identifier(schema)
    breaking = node_breaking_ids(package)
    with connection.cursor() as cursor:
        cursor.execute(
            "select to_regclass(%(ledger)s) is not null", {"ledger": f"{escaped}.migrations"}
        )
        row = cursor.fetchone()
        if row is None or not row[0]:
            # Node's installSchema: runs outside any transaction, before the first migration.
            cursor.execute(
                f"create schema if not exists {escaped};\n"
                f"create table if not exists {escaped}.migrations(\n"
                "  id int primary key,\n"
                "  ts timestamptz default now() not null\n"
                ");\n"
                f"alter table {escaped}.migrations add column if not exists breaking boolean"
                " not null default false;\n".encode()
            )
            cursor.execute(
                f"update {escaped}.migrations set breaking = true where id = any(%(ids)s)",
                {"ids": sorted(breaking)},
            )
        cursor.execute(f"select max(id) from {escaped}.migrations")
        latest_row = cursor.fetchone()
        latest = latest_row[0] if latest_row and latest_row[0] is not None else 0
        applied: list[int] = []
        for migration_id in node_migration_ids(package):
            if migration_id <= latest or migration_id > up_to:
                continue
            text = _SCHEMA_PLACEHOLDER.sub(
                escaped.replace("\\", "\\\\"), node_migration_sql(package, migration_id)
            )
            is_breaking = migration_id in breaking
            with connection.transaction():
                cursor.execute(
                    f"insert into {escaped}.migrations (id, breaking) values (%(id)s, %(b)s)",
                    {"id": migration_id, "b": is_breaking},
                )
                # Bytes and no parameters: the simple query protocol, several statements.
                cursor.execute(text.encode("utf-8"))
                cursor.execute(
                    "select pg_notify('worker:migrate', %(payload)s)",
                    {
                        "payload": json.dumps(
                            {"migrationNumber": migration_id, "breaking": is_breaking},
                            separators=(",", ":"),
                        )
                    },
                )
            applied.append(migration_id)
    return applied


def run_node_migrator(
    database_url: str,
    schema: str = "graphile_worker",
    *,
    package: Path | None = None,
    timeout: float = 60.0,
) -> None:
    """Migrate ``schema`` in ``database_url`` with Node's real ``runMigrations``.

    Runs in an empty temporary directory so that no ``graphile.config.*`` file or ``.env``
    around the test suite can change Node's options.

    Raises:
        NodeMigratorError: node exited with a non-zero status.
    """
    node = shutil.which("node")
    if node is None:
        raise NodeMigratorError("node is not on PATH")
    package = package or default_node_package()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GRAPHILE_", "PG")) and key != "DATABASE_URL"
    }
    with tempfile.TemporaryDirectory(prefix="gw-node-migrate-") as workdir:
        completed = subprocess.run(
            [node, str(NODE_MIGRATE_SCRIPT), str(package), database_url, schema],
            cwd=workdir,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if completed.returncode != 0:
        raise NodeMigratorError(
            f"node migrator exited with {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
