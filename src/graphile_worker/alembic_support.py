"""Alembic integration: the shipped revision lineage and the hooks for an application's env.py.

The wheel carries an Alembic *version location*, ``graphile_worker:alembic/versions``: one
revision per Node migration id (``graphile_worker_000001`` ... ``graphile_worker_000020``),
then one per batch of our own extension steps (``graphile_worker_ext_0002``), on a branch of
its own labelled ``graphile_worker``. ``graphile-worker alembic init`` writes an application
project wired for it; an existing project adds the location next to its own::

    # alembic.ini
    [alembic]
    script_location = %(here)s/alembic
    # not "os": on POSIX that splits on ":", which the package:path entry contains
    path_separator = space
    version_locations = %(here)s/alembic/versions graphile_worker:alembic/versions
    # run env.py for `alembic revision` too, so its hook picks the application's branch
    revision_environment = true
    # optional, default "graphile_worker"; `-x graphile_worker_schema=...` overrides it
    graphile_worker_schema = graphile_worker

then runs ``alembic upgrade heads`` (plural: the branch has a head of its own). Each
revision runs our migrator on Alembic's connection inside Alembic's transaction. Alembic,
our migrator and Node's migrator all write the same ledger (``<schema>.migrations``) and
each skips what is already there, so they can be mixed freely and in any order. An
application revision that needs our tables declares ``depends_on = HEAD_REVISION``.

In ``env.py``, :func:`make_include_object` and :func:`make_include_name` stop autogenerate
from proposing to drop or alter our schema, and :func:`make_process_revision_directives`
puts each new ``alembic revision`` on the application's branch (its first revision on a
branch of its own), which plain Alembic cannot decide once two branches exist::

    from graphile_worker.alembic_support import (
        configured_schema, make_include_name, make_include_object,
        make_process_revision_directives,
    )

    schema = configured_schema(context.config)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_object=make_include_object([schema]),
        include_name=make_include_name([schema]),
        process_revision_directives=make_process_revision_directives("app"),
    )

Refusals (a downgrade of our branch, an offline ``--sql`` run) raise
:class:`LineageRefusalError`, an Alembic ``CommandError``: the ``alembic`` command prints it
as one ``FAILED:`` line, without a traceback. That base class is why this module imports
Alembic, and why the error lives here rather than in :mod:`graphile_worker.errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from alembic.util import CommandError, coerce_resource_to_filename

from .errors import ConfigurationError, MigrationError
from .schema import VIEW_INFO_KEY
from .sql import DEFAULT_SCHEMA, validate_schema_name

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.operations.ops import MigrationScript
    from alembic.runtime.environment import ProcessRevisionDirectiveFn
    from alembic.runtime.migration import MigrationContext
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy.schema import SchemaItem

    from .migrations import ExtensionStep, MigrationReport

__all__ = [
    "BRANCH_LABEL",
    "HEAD_REVISION",
    "SCHEMA_OPTION",
    "VERSION_LOCATION",
    "IncludeNameHook",
    "IncludeObjectHook",
    "LineageRefusalError",
    "configured_schema",
    "extension_revision_id",
    "include_name",
    "include_object",
    "make_include_name",
    "make_include_object",
    "make_process_revision_directives",
    "process_revision_directives",
    "refuse_downgrade",
    "revision_id",
    "upgrade_extensions",
    "upgrade_to",
]

VERSION_LOCATION = "graphile_worker:alembic/versions"
"""What to add to Alembic's ``version_locations`` to get graphile-worker's revisions."""

BRANCH_LABEL = "graphile_worker"
"""The branch label of the lineage (``alembic upgrade graphile_worker@head`` works too)."""

HEAD_REVISION = "graphile_worker_ext_0002"
"""The newest revision of the lineage: what ``alembic_version`` holds for our branch after
``alembic upgrade heads``. An application revision that needs every object of ours (the
worker registry of dead-worker recovery included) declares ``depends_on`` on it; one that
needs only Node's tables may name ``graphile_worker_000020``."""

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


class LineageRefusalError(MigrationError, CommandError):
    """graphile-worker's lineage refused what Alembic asked of it (a downgrade, ``--sql``).

    Both a :class:`~graphile_worker.errors.MigrationError`, for callers that catch ours,
    and an Alembic ``CommandError``, which the ``alembic`` command reports as one
    ``FAILED: ...`` line instead of a traceback through our code. Alembic's transaction
    is rolled back as for any error raised by a revision.
    """


def revision_id(migration_id: int) -> str:
    """The Alembic revision id of Node migration ``migration_id`` (``graphile_worker_000007``)."""
    return f"{BRANCH_LABEL}_{migration_id:06d}"


def extension_revision_id(step_id: str) -> str:
    """The id of the revision that applies our extension steps up to ``step_id``.

    ``0002_worker_registry`` gives ``graphile_worker_ext_0002``: the step's number, which
    orders the steps, without its name.
    """
    number, _, _ = step_id.partition("_")
    return f"{BRANCH_LABEL}_ext_{number}"


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

    This is the whole body of each numbered revision's ``upgrade()``. It runs
    :func:`~graphile_worker.migrations.migrate_sync` on Alembic's connection with
    ``in_transaction=True``, so the migration commits or rolls back with Alembic's own
    transaction. Migrations already in the ledger (applied by any migrator) are skipped, so
    a revision whose id is there changes nothing. Like ``migrate()``, it also applies the
    extension steps that the migration reached allows.

    Raises:
        LineageRefusalError: Alembic runs in offline (``--sql``) mode; the migrator has to
            read the ledger, so it needs a live connection.
    """
    return _migrate_inside_alembic(revision_id(migration_id), up_to=migration_id)


def upgrade_extensions(through: str) -> MigrationReport:
    """Apply our extension steps up to and including ``through``, inside Alembic.

    The body of each ``graphile_worker_ext_NNNN`` revision. A project that deployed the
    numbered revisions before a step existed has Alembic at ``graphile_worker_000020``
    already, so no numbered revision would ever run again; these revisions bring such a
    project the steps it lacks. Steps already in the extension ledger are skipped, so on a
    project whose numbered revisions applied them, the revision changes nothing. Naming the
    last step, rather than "every step", keeps what a revision does fixed when later
    releases add steps (they come with revisions of their own).

    Raises:
        ConfigurationError: no extension step is called ``through``.
        LineageRefusalError: Alembic runs in offline (``--sql``) mode.
    """
    from .migrations import EXTENSION_STEPS

    ids = [step.id for step in EXTENSION_STEPS]
    if through not in ids:
        raise ConfigurationError(
            f"no graphile-worker extension step is called {through!r}; known: {', '.join(ids)}"
        )
    steps = EXTENSION_STEPS[: ids.index(through) + 1]
    return _migrate_inside_alembic(
        extension_revision_id(through),
        up_to=max(step.requires for step in steps),
        extensions=steps,
    )


def _migrate_inside_alembic(
    revision: str, *, up_to: int, extensions: Sequence[ExtensionStep] | None = None
) -> MigrationReport:
    from alembic import op

    from .drivers.sqlalchemy import SQLAlchemySyncExecutor
    from .migrations import EXTENSION_STEPS, migrate_sync

    context = op.get_context()
    if context.as_sql:
        raise LineageRefusalError(
            f"graphile-worker revision {revision!r} cannot be rendered in offline (--sql) "
            "mode: its migrator reads the ledger to decide what to apply. Run it against a "
            "database, or leave the graphile_worker branch out of the offline run "
            "(e.g. `alembic upgrade <your branch label>@head --sql`)."
        )
    return migrate_sync(
        SQLAlchemySyncExecutor(op.get_bind()),
        schema=configured_schema(context.config),
        up_to=up_to,
        in_transaction=True,
        extensions=EXTENSION_STEPS if extensions is None else extensions,
    )


def refuse_downgrade(revision: int | str) -> NoReturn:
    """The body of each revision's ``downgrade()``: Node's migrations only go forward.

    ``revision`` is a Node migration id or the revision's own id.

    Raises:
        LineageRefusalError: always. The ``alembic`` command prints it as one line.
    """
    from alembic import op

    name = revision_id(revision) if isinstance(revision, int) else revision
    label = _own_branch_label(op.get_context().script) or "<your branch label>"
    raise LineageRefusalError(
        f"cannot downgrade graphile-worker revision {name!r}: its migrations only go "
        "forward (Node graphile-worker has no down migrations). Downgrade your own branch "
        f"instead, e.g. `alembic downgrade {label}@-1`; a bare `-1` or `base` can reach "
        "this branch. To remove graphile-worker, drop its schema (CASCADE) and delete the "
        f"'{BRANCH_LABEL}_*' rows from your alembic_version table."
    )


# ------------------------------------------------------------------ new revisions


def _lineage_directory() -> Path:
    return Path(coerce_resource_to_filename(VERSION_LOCATION)).resolve()


def _is_ours(script: Script, lineage: Path) -> bool:
    # By file, not by branch label: Alembic extends a label to every descendant, so an
    # application revision built on top of ours would carry "graphile_worker" too.
    return lineage in Path(script.path).resolve().parents


def _own_heads(script: ScriptDirectory) -> list[Script]:
    lineage = _lineage_directory()
    return [head for head in script.get_revisions("heads") if not _is_ours(head, lineage)]


def _own_branch_label(script: ScriptDirectory | None) -> str | None:
    """The label of the application's branch, when it has exactly one; for messages."""
    if script is None:
        return None
    labels = {
        label
        for head in _own_heads(script)
        for label in head.branch_labels
        if label != BRANCH_LABEL
    }
    return labels.pop() if len(labels) == 1 else None


def _own_version_locations(script: ScriptDirectory) -> list[Path]:
    lineage = _lineage_directory()
    configured = script.version_locations or [str(Path(script.dir, "versions"))]
    paths = [Path(coerce_resource_to_filename(location)) for location in configured]
    return [path for path in paths if path.resolve() != lineage]


def _place_on_own_branch(
    script: ScriptDirectory, directive: MigrationScript, branch_label: str | None
) -> None:
    """Point a new revision at the application's head, or make it the base of its branch.

    Only when the user left ``--head`` out (the command line passes ``None``, the
    ``command.revision`` function ``"head"``): with our branch present, Alembic's own
    default is ambiguous, or worse, our head when the application has no revision yet, which
    would write the application's revision into the installed package. ``base`` alone would
    need ``--version-path`` too. Anything the user spelled out is kept.
    """
    if directive.head not in (None, "head"):
        return
    heads = _own_heads(script)
    if len(heads) > 1:
        names = sorted(head.revision for head in heads)
        raise LineageRefusalError(
            f"your revisions have several heads ({', '.join(names)}): merge them first "
            f"(`alembic merge -m merge {' '.join(names)}`) or pick one with "
            "`alembic revision --head <revision> ...`"
        )
    if heads:
        directive.head = heads[0].revision
        return
    # The application's first revision: the base of a branch of its own.
    directive.head = "base"
    if directive.version_path is None:
        own = _own_version_locations(script)
        if len(own) != 1:
            where = ", ".join(str(path) for path in own) or "none"
            raise LineageRefusalError(
                "cannot tell where your first revision goes: version_locations should name "
                f"exactly one folder of yours besides {VERSION_LOCATION} (found: {where}); "
                "fix it or pass `--version-path <folder>`"
            )
        directive.version_path = own[0].as_posix()
    if directive.branch_label is None and branch_label is not None:
        directive.branch_label = branch_label


def make_process_revision_directives(
    branch_label: str | None = None,
    *,
    then: ProcessRevisionDirectiveFn | None = None,
) -> ProcessRevisionDirectiveFn:
    """A ``process_revision_directives`` hook that puts new revisions on your branch.

    Once graphile-worker's branch sits beside yours, ``alembic revision -m ...`` no longer
    knows which head to build on ("Multiple heads are present"). With this hook a plain
    ``alembic revision`` (with or without ``--autogenerate``) builds on your branch's head;
    your first revision starts a branch of its own, labelled ``branch_label`` when given,
    in your own version folder. ``--head``, ``--branch-label`` and ``--version-path`` still
    win when given. For a revision without ``--autogenerate``, Alembic only runs env.py
    (and so this hook) with ``revision_environment = true`` in ``alembic.ini``.

    Args:
        branch_label: the label given to your first revision, so that ``alembic upgrade
            app@head`` and ``alembic downgrade app@-1`` name your branch.
        then: your own hook, called afterwards with the same arguments.

    The hook raises :class:`LineageRefusalError` when your revisions have several heads,
    or when the folder of your first revision cannot be told from ``version_locations``.
    """

    def hook(context: MigrationContext, revision: Any, directives: list[MigrationScript]) -> None:
        if context.script is not None:
            for directive in directives:
                _place_on_own_branch(context.script, directive, branch_label)
        if then is not None:
            then(context, revision, directives)

    return hook


process_revision_directives: ProcessRevisionDirectiveFn = make_process_revision_directives()
"""``process_revision_directives`` for a branch without a label of its own."""


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
