"""Alembic integration: the shipped revision lineage and filters for a user's autogenerate.

The wheel carries an Alembic *version location*, ``graphile_worker:alembic/versions``: one
revision per Node migration id (``graphile_worker_000001`` ... ``graphile_worker_000020``),
on its own branch labelled ``graphile_worker``. A project that manages its database with
Alembic keeps its own ``env.py`` and adds that location next to its own::

    # alembic.ini
    [alembic]
    script_location = %(here)s/alembic
    # not "os": on POSIX that splits on ":", which the package:path entry contains
    path_separator = space
    version_locations = %(here)s/alembic/versions graphile_worker:alembic/versions
    # optional, default "graphile_worker"; `-x graphile_worker_schema=...` overrides it
    graphile_worker_schema = graphile_worker

then runs ``alembic upgrade heads`` (plural: the branch has a head of its own). Each
revision calls :func:`upgrade_to`, which runs our migrator on Alembic's connection inside
Alembic's transaction. Alembic, our migrator and Node's migrator all write the same ledger
(``<schema>.migrations``) and each skips what is already there, so they can be mixed freely
and in any order. An application revision that needs our tables declares
``depends_on = "graphile_worker_000020"``.

In ``env.py``, :func:`include_object` and :func:`include_name` (or
:func:`make_include_object` / :func:`make_include_name` for another schema name, or to chain
a filter of your own) stop autogenerate from proposing to drop or alter our schema::

    from graphile_worker.alembic_support import (
        configured_schema, make_include_name, make_include_object,
    )

    schema = configured_schema(context.config)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_object=make_include_object([schema]),
        include_name=make_include_name([schema]),
    )

Only the lineage helpers need Alembic; the filters import nothing from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import ConfigurationError, MigrationError
from .schema import VIEW_INFO_KEY
from .sql import DEFAULT_SCHEMA, validate_schema_name

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.schema import SchemaItem

    from .migrations import MigrationReport

__all__ = [
    "BRANCH_LABEL",
    "SCHEMA_OPTION",
    "VERSION_LOCATION",
    "IncludeNameHook",
    "IncludeObjectHook",
    "configured_schema",
    "include_name",
    "include_object",
    "make_include_name",
    "make_include_object",
    "refuse_downgrade",
    "revision_id",
    "upgrade_to",
]

VERSION_LOCATION = "graphile_worker:alembic/versions"
"""What to add to Alembic's ``version_locations`` to get graphile-worker's revisions."""

BRANCH_LABEL = "graphile_worker"
"""The branch label of the lineage (``alembic upgrade graphile_worker@head`` works too)."""

SCHEMA_OPTION = "graphile_worker_schema"
"""Name of the option that picks the schema the lineage migrates.

Looked up, first hit wins: the command-line ``-x graphile_worker_schema=NAME``, then the
``graphile_worker_schema`` key of the ``[alembic]`` section (or of ``[tool.alembic]`` in
``pyproject.toml`` with Alembic 1.16 and newer), else ``graphile_worker``.
"""

IncludeObjectHook = Callable[["SchemaItem", "str | None", str, bool, "SchemaItem | None"], bool]
"""The signature of Alembic's ``include_object`` hook."""

IncludeNameHook = Callable[["str | None", str, Mapping[Any, "str | None"]], bool]
"""The signature of Alembic's ``include_name`` hook."""


def revision_id(migration_id: int) -> str:
    """The Alembic revision id of Node migration ``migration_id`` (``graphile_worker_000007``)."""
    return f"{BRANCH_LABEL}_{migration_id:06d}"


# ------------------------------------------------------------------------------ lineage


def configured_schema(config: Config | None) -> str:
    """The schema the lineage migrates, read from Alembic's ``config`` (see :data:`SCHEMA_OPTION`).

    Call it from ``env.py`` as ``configured_schema(context.config)`` to point the
    autogenerate filters at the same schema the revisions migrate.

    Raises:
        InvalidSchemaNameError: the configured name cannot be a schema name.
    """
    value: str | None = None
    if config is not None:
        command_line = getattr(config.cmd_opts, "x", None) or []
        for argument in command_line:
            key, _, given = argument.partition("=")
            if key.strip() == SCHEMA_OPTION:
                value = given.strip() or None
        if value is None:
            # get_alembic_option (Alembic 1.16+) also reads [tool.alembic] in pyproject.toml.
            reader = getattr(config, "get_alembic_option", config.get_main_option)
            option = reader(SCHEMA_OPTION)
            value = option.strip() if isinstance(option, str) and option.strip() else None
    return validate_schema_name(value or DEFAULT_SCHEMA)


def upgrade_to(migration_id: int) -> MigrationReport:
    """Bring the configured schema up to Node migration ``migration_id``, inside Alembic.

    This is the whole body of each revision's ``upgrade()``. It runs
    :func:`~graphile_worker.migrations.migrate_sync` on Alembic's connection with
    ``in_transaction=True``, so the migration commits or rolls back with Alembic's own
    transaction. Migrations already in the ledger (applied by any migrator) are skipped, so
    a revision whose id is there changes nothing.

    Raises:
        MigrationError: Alembic runs in offline (``--sql``) mode; the migrator has to read
            the ledger, so it needs a live connection.
    """
    from alembic import op

    from .drivers.sqlalchemy import SQLAlchemySyncExecutor
    from .migrations import migrate_sync

    context = op.get_context()
    if context.as_sql:
        raise MigrationError(
            f"graphile-worker revision {revision_id(migration_id)!r} cannot be rendered in "
            "offline (--sql) mode: its migrator reads the ledger to decide what to apply. "
            "Run it against a database, or exclude the graphile_worker branch from the "
            "offline run."
        )
    return migrate_sync(
        SQLAlchemySyncExecutor(op.get_bind()),
        schema=configured_schema(context.config),
        up_to=migration_id,
        in_transaction=True,
    )


def refuse_downgrade(migration_id: int) -> NoReturn:
    """The body of each revision's ``downgrade()``: Node's migrations only go forward.

    Raises:
        MigrationError: always.
    """
    raise MigrationError(
        f"cannot downgrade graphile-worker revision {revision_id(migration_id)!r}: Node "
        "graphile-worker has no down migrations, so neither does this branch. Downgrade "
        "your own branch only (e.g. `alembic downgrade <your revision>`), not `base`. To "
        "remove graphile-worker entirely, drop its schema (CASCADE) and delete the "
        f"'{BRANCH_LABEL}_*' rows from your alembic_version table."
    )


# ------------------------------------------------------------------------------ filters


def _schemas(schemas: Iterable[str]) -> frozenset[str]:
    names = frozenset(validate_schema_name(name) for name in schemas)
    if not names:
        raise ConfigurationError("pass at least one graphile-worker schema name to exclude")
    return names


def _owning_schema(item: SchemaItem) -> str | None:
    # Tables carry their schema; columns, indexes and constraints belong to a table.
    table = getattr(item, "table", None)
    return getattr(table if table is not None else item, "schema", None)


def make_include_object(
    schemas: Iterable[str] = (DEFAULT_SCHEMA,),
    *,
    then: IncludeObjectHook | None = None,
) -> IncludeObjectHook:
    """An ``include_object`` hook that leaves the graphile-worker ``schemas`` alone.

    Objects of those schemas (and tables marked ``info["is_view"]``) are excluded; every
    other object is passed to ``then`` when given, else included.
    """
    excluded = _schemas(schemas)

    def hook(
        item: SchemaItem,
        name: str | None,
        type_: str,
        reflected: bool,
        compare_to: SchemaItem | None,
    ) -> bool:
        if _owning_schema(item) in excluded:
            return False
        if type_ == "table" and getattr(item, "info", {}).get(VIEW_INFO_KEY):
            return False
        return then(item, name, type_, reflected, compare_to) if then else True

    return hook


def make_include_name(
    schemas: Iterable[str] = (DEFAULT_SCHEMA,),
    *,
    then: IncludeNameHook | None = None,
) -> IncludeNameHook:
    """An ``include_name`` hook that keeps Alembic from even reflecting ``schemas``.

    Useful with ``include_schemas=True``; anything else is passed to ``then`` when given,
    else included.
    """
    excluded = _schemas(schemas)

    def hook(name: str | None, type_: str, parent_names: Mapping[Any, str | None]) -> bool:
        schema = name if type_ == "schema" else parent_names.get("schema_name")
        if schema in excluded:
            return False
        return then(name, type_, parent_names) if then else True

    return hook


include_object: IncludeObjectHook = make_include_object()
"""``include_object`` for the default schema ``graphile_worker``."""

include_name: IncludeNameHook = make_include_name()
"""``include_name`` for the default schema ``graphile_worker``."""
