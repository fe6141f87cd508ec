"""``graphile-worker alembic init``: an application's Alembic project, wired for our lineage.

Alembic can hold graphile-worker's revisions (shipped in the package) beside the
application's own, but only with settings nobody guesses: a ``path_separator`` that does not
split ``graphile_worker:alembic/versions`` at its colon, ``version_locations`` naming both
folders, and an env.py whose ``alembic revision`` knows which of the two branches a new
revision belongs to. ``init`` writes a project with all of that in place, or, next to an
existing project, prints what to add to it; it never overwrites a file without ``--force``.

The file texts are built by pure functions (:func:`project_files`,
:func:`existing_project_instructions`) so that tests can read them without a database.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import sys
from pathlib import Path

import click

from ..sql import DEFAULT_SCHEMA

__all__ = [
    "DEFAULT_BRANCH_LABEL",
    "alembic_group",
    "existing_project_instructions",
    "project_files",
    "validate_branch_label",
]

DEFAULT_BRANCH_LABEL = "app"
"""The label of the application's branch unless ``--branch-label`` says otherwise."""

# Mirrors graphile_worker.alembic_support, which imports Alembic: importing it here would
# make `graphile-worker --help` pay for Alembic. tests/alembic checks that the two agree.
_VERSION_LOCATION = "graphile_worker:alembic/versions"
_SCHEMA_OPTION = "graphile_worker_schema"
_OUR_BRANCH_LABEL = "graphile_worker"

_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Words Alembic reads as revision symbols rather than branch names.
_RESERVED_LABELS = frozenset({"head", "heads", "base", "current", _OUR_BRANCH_LABEL})

_INI = """\
# Alembic configuration for this application, written by `graphile-worker alembic init`.

[alembic]
script_location = %(here)s/alembic
# So that env.py can import your models when alembic runs from this directory.
prepend_sys_path = .

# Your revisions, then graphile-worker's, which ship inside the package. "space", not
# "os": on POSIX "os" splits at ":", and the package:path entry contains one.
path_separator = space
version_locations = %(here)s/alembic/versions {version_location}

# Run env.py for `alembic revision` too: its hook puts new revisions on your branch.
revision_environment = true

# The schema graphile-worker's revisions migrate; `-x {schema_option}=NAME` overrides it.
{schema_option} = {schema}

# The database: $DATABASE_URL when set, else this (postgresql:// or a SQLAlchemy URL).
# sqlalchemy.url = postgresql://user:password@localhost:5432/mydb

[loggers]
keys = root,sqlalchemy,alembic,graphile_worker

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[logger_graphile_worker]
level = INFO
handlers =
qualname = graphile_worker

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
"""

_ENV_HEAD = '''\
"""Alembic's environment for this application, written by `graphile-worker alembic init`.

It is yours to edit. graphile-worker's revisions ship inside the package and sit beside
yours on a branch of their own (see version_locations in alembic.ini); the hooks passed to
context.configure() below keep the two apart.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.util import CommandError
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import make_url

from graphile_worker.alembic_support import (
    configured_schema,
    make_include_name,
    make_include_object,
    make_process_revision_directives,
)

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

# Your models' MetaData, which `alembic revision --autogenerate` compares with the
# database. For example:
#     from myapp.models import Base
#     target_metadata = Base.metadata
target_metadata = MetaData()

# The schema graphile-worker's revisions migrate (graphile_worker_schema in alembic.ini).
graphile_worker_schema = configured_schema(config)


def configure(**options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        # Autogenerate never proposes to drop or alter graphile-worker's tables, even with
        # include_schemas=True (which you need if your models use several schemas).
        include_object=make_include_object([graphile_worker_schema]),
        include_name=make_include_name([graphile_worker_schema]),
        # `alembic revision` builds on your branch's head; your first revision starts a
        # branch of its own, labelled __LABEL__ (`alembic downgrade __BARE_LABEL__@-1` undoes
        # your last revision).
        process_revision_directives=make_process_revision_directives(__LABEL__),
        **options,
    )


def database_url(driver: str) -> str:
    """$DATABASE_URL when set, else sqlalchemy.url from alembic.ini, for SQLAlchemy's driver."""
    url = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise CommandError("no database URL: set DATABASE_URL, or sqlalchemy.url in alembic.ini")
    return make_url(url).set(drivername=f"postgresql+{driver}").render_as_string(False)


def run_migrations_offline() -> None:
    configure(
        url=database_url(__DRIVER__), literal_binds=True, dialect_opts={"paramstyle": "named"}
    )
    with context.begin_transaction():
        context.run_migrations()
'''

_ENV_SYNC = """

def run_migrations_online() -> None:
    from sqlalchemy import create_engine

    engine = create_engine(database_url("psycopg"), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

_ENV_ASYNC = """

def run_migrations(connection: Any) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url("asyncpg"), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    import asyncio

    asyncio.run(run_migrations_online())
"""

_SCRIPT_TEMPLATE = '''\
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''

_ENV_SNIPPET = """\
from graphile_worker.alembic_support import (
    configured_schema,
    make_include_name,
    make_include_object,
    make_process_revision_directives,
)

graphile_worker_schema = configured_schema(context.config)

# in every context.configure(...) call, next to what you pass today:
    include_object=make_include_object([graphile_worker_schema]),
    include_name=make_include_name([graphile_worker_schema]),
    process_revision_directives=make_process_revision_directives({label}),
"""


def validate_branch_label(label: str) -> str:
    """Return ``label`` if Alembic can use it as the application's branch label, else raise.

    Raises:
        click.BadParameter: the label is not a plain word, or Alembic reads it as something
            else (``head``, ``base``...), or it is graphile-worker's own label.
    """
    if not _LABEL.fullmatch(label):
        raise click.BadParameter(
            f"{label!r} is not a usable branch label; use a letter, then letters, digits or "
            "underscores (e.g. 'app' or 'billing')",
            param_hint="--branch-label",
        )
    if label.lower() in _RESERVED_LABELS:
        raise click.BadParameter(
            f"{label!r} is reserved (by Alembic or graphile-worker); pick another name, "
            "e.g. your application's",
            param_hint="--branch-label",
        )
    return label


def _ini_value(text: str) -> str:
    """``text`` as a value in alembic.ini, which interpolates ``%(name)s``."""
    return text.replace("%", "%%")


def project_files(*, branch_label: str, asynchronous: bool, schema: str) -> dict[str, str]:
    """Every file of a new project, by path relative to the project's directory.

    ``schema`` must already be validated; ``asynchronous`` picks an env.py over asyncpg
    (SQLAlchemy's ``run_sync`` pattern) instead of psycopg.
    """
    env = (
        _ENV_HEAD.replace("__LABEL__", repr(branch_label))
        .replace("__BARE_LABEL__", branch_label)
        .replace("__DRIVER__", repr("asyncpg" if asynchronous else "psycopg"))
    ) + (_ENV_ASYNC if asynchronous else _ENV_SYNC)
    ini = _INI.format(
        version_location=_VERSION_LOCATION,
        schema_option=_SCHEMA_OPTION,
        schema=_ini_value(schema),
    )
    return {
        "alembic.ini": ini,
        "alembic/env.py": env,
        "alembic/script.py.mako": _SCRIPT_TEMPLATE,
    }


_SEPARATORS = {"space": None, "newline": "\n", "os": os.pathsep, ":": ":", ";": ";", ",": ","}


def _split(section: configparser.SectionProxy, key: str, legacy: str) -> list[str]:
    """The entries of a path list in alembic.ini, as Alembic splits them (not interpolated).

    ``legacy`` is the pattern Alembic falls back to when no separator is configured.
    """
    written = section.get(key) or ""
    separator_name = section.get("path_separator")
    if separator_name is None and key == "version_locations":
        separator_name = section.get("version_path_separator")
    if separator_name is None:
        return [part for part in re.split(legacy, written.strip()) if part]
    separator = _SEPARATORS.get(separator_name.strip(), separator_name.strip())
    return [part.strip() for part in written.split(separator) if part.strip()]


def _configured_locations(section: configparser.SectionProxy) -> list[str]:
    """The project's version locations, as written (not interpolated)."""
    if not section.get("version_locations"):
        script_location = section.get("script_location", "%(here)s/alembic").rstrip("/")
        return [f"{script_location}/versions"]
    return _split(section, "version_locations", r"[ ,]+")


def existing_project_instructions(config: Path, *, branch_label: str, schema: str) -> str:
    """What to add to the Alembic project configured by ``config``.

    ``config`` is its ``alembic.ini``, or a ``pyproject.toml`` with a ``[tool.alembic]``
    table (Alembic 1.16 and newer).
    """
    section = "[tool.alembic]" if config.name == "pyproject.toml" else "[alembic]"
    snippet = _ENV_SNIPPET.format(label=repr(branch_label))
    return "\n".join(
        [
            f"An Alembic project already exists here ({config}); nothing was written.",
            "To add graphile-worker's revisions to it:",
            "",
            f"1. In {config.name}, section {section}, set these keys (replace the ones you have):",
            "",
            *(f"    {line}" for line in _settings(config, schema=schema)),
            "",
            "2. In env.py:",
            "",
            *(f"    {line}" if line else "" for line in snippet.splitlines()),
            "",
            "   If you pass an include_object, include_name or process_revision_directives",
            "   of your own, chain it: make_include_object([graphile_worker_schema], then=yours).",
            "",
            "3. Run `alembic upgrade heads` to install graphile-worker's schema. After that,",
            "   `alembic revision [--autogenerate] -m ...` builds on your own branch.",
            "",
            "To replace the project with a new one instead, run this again with --force.",
        ]
    )


def _has_pyproject_alembic(pyproject: Path) -> bool:
    if not pyproject.is_file():
        return False
    return re.search(r"(?m)^\s*\[tool\.alembic\]", pyproject.read_text()) is not None


def _toml_locations(pyproject: Path) -> list[str]:
    """The ``[tool.alembic]`` version locations as written (one generic entry without tomllib)."""
    if sys.version_info >= (3, 11):
        import tomllib

        section = tomllib.loads(pyproject.read_text()).get("tool", {}).get("alembic", {})
        written = section.get("version_locations")
        if isinstance(written, list) and all(isinstance(item, str) for item in written):
            return [item for item in written if item != _VERSION_LOCATION]
        script_location = str(section.get("script_location", "%(here)s/alembic")).rstrip("/")
        return [f"{script_location}/versions"]
    return ["<your version folder>"]


def _settings(config: Path, *, schema: str) -> list[str]:
    """The lines to set in the project's configuration file, in that file's syntax."""
    if config.name == "pyproject.toml":
        locations = [*_toml_locations(config), _VERSION_LOCATION]
        quoted = ", ".join(f'"{location}"' for location in locations)
        quoted_schema = schema.replace("\\", "\\\\").replace('"', '\\"')
        return [
            f"version_locations = [{quoted}]",
            "revision_environment = true",
            f'{_SCHEMA_OPTION} = "{quoted_schema}"',
        ]
    parser = configparser.RawConfigParser()
    parser.read(config)
    if not parser.has_section("alembic"):
        parser.add_section("alembic")
    locations = [
        location
        for location in _configured_locations(parser["alembic"])
        if location != _VERSION_LOCATION
    ]
    locations.append(_VERSION_LOCATION)
    # The separator also splits prepend_sys_path, so that list is rewritten with it.
    sys_paths = _split(parser["alembic"], "prepend_sys_path", r"[ ,:]+")
    if any(re.search(r"\s", entry) for entry in [*locations, *sys_paths]):
        separator, glue = "newline", "\n    "
    else:
        separator, glue = "space", " "

    def listed(entries: list[str]) -> str:
        return glue + glue.join(entries) if separator == "newline" else glue.join(entries)

    return [
        f"path_separator = {separator}",
        *f"version_locations = {listed(locations)}".splitlines(),
        *(f"prepend_sys_path = {listed(sys_paths)}".splitlines() if sys_paths else []),
        "revision_environment = true",
        f"{_SCHEMA_OPTION} = {_ini_value(schema)}",
    ]


def _check_alembic_installed() -> None:
    if importlib.util.find_spec("alembic") is None:
        raise click.ClickException(
            "Alembic is not installed: pip install 'graphile-worker[alembic]'"
        )


@click.group("alembic", short_help="Set up Alembic for graphile-worker's schema.")
def alembic_group() -> None:
    """Deploy graphile-worker's schema with Alembic, beside your own revisions."""


@alembic_group.command("init", short_help="Create an Alembic project wired for graphile-worker.")
@click.argument(
    "directory",
    default=".",
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--branch-label",
    metavar="NAME",
    default=DEFAULT_BRANCH_LABEL,
    show_default=True,
    help="Label of your own branch of revisions (`alembic downgrade NAME@-1`).",
)
@click.option(
    "--async",
    "asynchronous",
    is_flag=True,
    help="Write an env.py that connects with asyncpg (SQLAlchemy's asyncio engine) instead "
    "of psycopg.",
)
@click.option(
    "-s",
    "--schema",
    metavar="NAME",
    default=DEFAULT_SCHEMA,
    show_default=True,
    help="The schema graphile-worker's revisions migrate (graphile_worker_schema in alembic.ini).",
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init_command(
    directory: Path, branch_label: str, asynchronous: bool, schema: str, force: bool
) -> None:
    """Create an Alembic project for your application in DIRECTORY (default: here).

    It holds alembic.ini (your version folder and graphile-worker's, which ships inside
    the package), alembic/env.py (your models' MetaData goes there), alembic/script.py.mako
    and an empty alembic/versions folder. Then `alembic upgrade heads` installs
    graphile-worker's schema, and `alembic revision [--autogenerate] -m ...` starts your
    own branch, labelled --branch-label.

    When DIRECTORY already has an Alembic project, prints what to add to it instead and
    changes nothing (unless --force).
    """
    from ..sql import validate_schema_name

    _check_alembic_installed()
    validate_branch_label(branch_label)
    validate_schema_name(schema)
    if "\n" in schema or "\r" in schema:
        raise click.BadParameter("a line break cannot go into alembic.ini", param_hint="--schema")

    # With Alembic 1.16+, [tool.alembic] in pyproject.toml takes over from alembic.ini
    # (which then only configures logging).
    pyproject, ini = directory / "pyproject.toml", directory / "alembic.ini"
    existing = pyproject if _has_pyproject_alembic(pyproject) else ini if ini.exists() else None
    if existing is not None and not force:
        click.echo(
            existing_project_instructions(existing, branch_label=branch_label, schema=schema)
        )
        return

    files = project_files(branch_label=branch_label, asynchronous=asynchronous, schema=schema)
    present = [name for name in files if (directory / name).exists()]
    if present and not force:
        raise click.ClickException(
            f"{' and '.join(present)} already exist{'s' if len(present) == 1 else ''} in "
            f"{directory}; pass --force to overwrite"
        )
    (directory / "alembic" / "versions").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)

    driver = "asyncpg" if asynchronous else "psycopg"
    where = "this directory" if directory == Path() else str(directory)
    lines = [
        f"Created an Alembic project in {where}:",
        *(f"  {name}" for name in files),
        "  alembic/versions/",
        "",
        f"Next, in {where}, with DATABASE_URL set (env.py connects with {driver}):",
        "  alembic upgrade heads                          # installs graphile-worker's schema",
        "  # point target_metadata in alembic/env.py at your models' MetaData, then:",
        f'  alembic revision --autogenerate -m "..."       # your first revision, branch {branch_label!r}',
        "  alembic upgrade heads",
    ]
    click.echo("\n".join(lines))
