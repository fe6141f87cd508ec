"""Build an application's own Alembic project in a temporary directory, the way a user would.

The project has its own ``env.py`` (sync over psycopg, or async over asyncpg with the
``run_sync`` pattern), one revision of its own creating ``app_users``, and
``version_locations`` naming both its own folder and graphile-worker's shipped lineage
(``graphile_worker:alembic/versions``). Nothing in it is specific to the test suite except
the ``use_graphile_worker_filters`` switch, which lets a test turn the autogenerate filters
off to prove that they matter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from sqlalchemy.engine import make_url

from graphile_worker.alembic_support import VERSION_LOCATION

__all__ = [
    "USER_REVISION",
    "UserProject",
    "create_user_project",
    "run_shell",
    "shell_environment",
    "sqlalchemy_url",
]

USER_REVISION = "app_0001"
"""The id of the application's only revision."""

_ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/migrations
path_separator = space
version_locations = %(here)s/migrations/versions {version_location}
sqlalchemy.url = {url}
{schema_line}
"""

_ENV_COMMON = """\
from alembic import context
from sqlalchemy import Column, Integer, MetaData, Table, Text

from graphile_worker.alembic_support import (
    configured_schema,
    make_include_name,
    make_include_object,
)

config = context.config

target_metadata = MetaData()
Table(
    "app_users",
    target_metadata,
    Column("id", Integer, primary_key=True),
    Column("email", Text, nullable=False),
)

# Keep autogenerate away from graphile-worker's schema (whatever it is called here).
graphile_worker_schema = configured_schema(config)
if config.attributes.get("use_graphile_worker_filters", True):
    filters = {
        "include_object": make_include_object([graphile_worker_schema]),
        "include_name": make_include_name([graphile_worker_schema]),
    }
else:
    filters = {}


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        **filters,
    )
    with context.begin_transaction():
        context.run_migrations()
"""

_ENV_SYNC = """
from sqlalchemy import engine_from_config, pool


def run_migrations_online() -> None:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    try:
        with engine.connect() as connection:
            do_run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

_ENV_ASYNC = """
import asyncio

from sqlalchemy import pool
from sqlalchemy.ext.asyncio import async_engine_from_config


async def run_async_migrations() -> None:
    engine = async_engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
"""

_USER_REVISION = f'''\
"""create app_users"""

import sqlalchemy as sa
from alembic import op

revision = "{USER_REVISION}"
down_revision = None
branch_labels = ("app",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("app_users")
'''

# Alembic's stock template, needed only for `alembic revision`.
_SCRIPT_TEMPLATE = '''\
"""${message}"""

from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''


def sqlalchemy_url(database_url: str, driver: str) -> str:
    """``database_url`` with SQLAlchemy's dialect+driver name (``psycopg``, ``asyncpg``)."""
    return (
        make_url(database_url)
        .set(drivername=f"postgresql+{driver}")
        .render_as_string(hide_password=False)
    )


@dataclass(frozen=True)
class UserProject:
    """An application's Alembic project on disk."""

    root: Path

    @property
    def ini(self) -> Path:
        return self.root / "alembic.ini"

    @property
    def versions(self) -> Path:
        return self.root / "migrations" / "versions"

    def config(self) -> Config:
        """A fresh Alembic ``Config`` for this project, as ``alembic -c alembic.ini`` builds."""
        return Config(str(self.ini))


def create_user_project(
    root: Path,
    database_url: str,
    *,
    asynchronous: bool = False,
    schema: str | None = None,
) -> UserProject:
    """Write the project under ``root`` and return it.

    ``schema`` goes into ``alembic.ini`` as ``graphile_worker_schema`` when given.
    """
    driver = "asyncpg" if asynchronous else "psycopg"
    project = UserProject(root)
    project.versions.mkdir(parents=True)
    project.ini.write_text(
        _ALEMBIC_INI.format(
            version_location=VERSION_LOCATION,
            url=sqlalchemy_url(database_url, driver).replace("%", "%%"),
            schema_line=f"graphile_worker_schema = {schema}" if schema else "",
        )
    )
    environment = _ENV_COMMON + (_ENV_ASYNC if asynchronous else _ENV_SYNC)
    (project.root / "migrations" / "env.py").write_text(environment)
    (project.root / "migrations" / "script.py.mako").write_text(_SCRIPT_TEMPLATE)
    (project.versions / f"{USER_REVISION}_create_app_users.py").write_text(
        textwrap.dedent(_USER_REVISION)
    )
    return project


def shell_environment(database_url: str) -> dict[str, str]:
    """The environment a user's shell would give ``alembic`` and ``graphile-worker``.

    This interpreter's scripts come first on ``PATH`` (the test virtual environment's
    ``alembic`` and ``graphile-worker``), ``DATABASE_URL`` names the test's database, and
    ``COLUMNS`` is dropped so that Alembic never wraps its messages.
    """
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    scripts = str(Path(sys.executable).parent)
    environment["PATH"] = os.pathsep.join([scripts, environment.get("PATH", "")])
    environment["DATABASE_URL"] = database_url
    return environment


def run_shell(command: str, cwd: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    """Run one shell command line as a user would type it, without a terminal."""
    return subprocess.run(
        command,
        shell=True,  # the point: run the documented line as a shell would
        cwd=cwd,
        env=shell_environment(database_url),
        stdin=subprocess.DEVNULL,  # Alembic wraps FAILED lines to a terminal's width
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
