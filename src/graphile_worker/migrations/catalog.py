"""The list of schema migrations: Node's numbered ones and our own extension steps.

Numbered migrations carry the ids and ``breaking`` flags of Node graphile-worker 0.18.0 so that
both libraries read one ledger (``<schema>.migrations``). Their SQL lives in ``sql/NNNNNN.sql``
next to this module, with ``{schema}`` where the quoted schema name goes.

Extension steps are objects only this library has. They are recorded in a ledger of their own
(``<schema>._pyworker_migrations``), keyed by name, and never take a Node id, so Node's
migrator keeps working on a database we migrated. The table is created only when there is a
step to apply, which keeps a database migrated by us identical to one migrated by Node while
the list is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..sql import render

__all__ = [
    "BREAKING_MIGRATION_IDS",
    "EXTENSION_STEPS",
    "LATEST_MIGRATION",
    "MIGRATIONS",
    "ExtensionStep",
    "Migration",
]

LATEST_MIGRATION = 20
"""The newest Node migration id this library can apply (graphile-worker 0.18.0)."""

BREAKING_MIGRATION_IDS = frozenset({1, 3, 11, 13, 14, 16, 19})
"""Ids Node marks ``--! breaking-change``: older workers must not run against them."""


@cache
def _sql_file(name: str) -> str:
    return resources.files(__package__).joinpath("sql").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Migration:
    """One of Node's numbered migrations, as this library writes it."""

    id: int
    breaking: bool

    @property
    def filename(self) -> str:
        return f"{self.id:06d}.sql"

    def sql(self, schema: str) -> str:
        """The migration's SQL with ``schema`` filled in (quoted)."""
        return render(_sql_file(self.filename), schema)


@dataclass(frozen=True, slots=True)
class ExtensionStep:
    """An object of our own, applied once per schema after the numbered migrations.

    ``sql`` is a template with ``{schema}``; ``requires`` is the numbered migration the step
    builds on, so that ``migrate(up_to=N)`` leaves out steps that need a newer schema.
    """

    id: str
    sql: str
    requires: int = LATEST_MIGRATION

    def render(self, schema: str) -> str:
        return render(self.sql, schema)


MIGRATIONS: tuple[Migration, ...] = tuple(
    Migration(id=number, breaking=number in BREAKING_MIGRATION_IDS)
    for number in range(1, LATEST_MIGRATION + 1)
)

EXTENSION_STEPS: tuple[ExtensionStep, ...] = ()
"""Our own schema objects, in the order they are applied. None are needed yet."""
