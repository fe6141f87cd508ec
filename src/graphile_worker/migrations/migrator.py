"""Bring a database's graphile-worker schema up to date, the way Node's migrator does.

The whole procedure is one generator (:func:`_migration_plan`) that yields SQL statements and
transaction boundaries; :func:`migrate` drives it on an async driver and :func:`migrate_sync`
on a blocking connection, so the rules live in one place:

* PostgreSQL 12 or newer, as Node requires;
* the ledger table is created the way Node creates it, so either library can go first;
* each migration runs in its own transaction, which inserts its ledger row first, runs the
  SQL and announces itself on ``worker:migrate`` (as Node does);
* every transaction takes an advisory lock, so many workers starting at once migrate once; a
  Node worker racing us (it takes no lock) is detected by the ledger's primary key and we
  simply re-read the ledger;
* a database holding a *breaking* migration newer than :data:`LATEST_MIGRATION` is refused,
  a newer non-breaking one only logs a warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeAlias

import anyio

from ..drivers.base import AsyncExecutor, DatabaseDriver, SyncExecutor
from ..errors import (
    ConfigurationError,
    IncompatibleSchemaError,
    LockedJobsError,
    MigrationError,
    QueryError,
    UniqueViolationError,
    UnsupportedPostgresVersionError,
)
from ..sql import DEFAULT_SCHEMA, quote_identifier, render
from ..sql._statement import Statement, drive_async, drive_sync, perform_async, perform_sync
from .catalog import EXTENSION_STEPS, LATEST_MIGRATION, MIGRATIONS, ExtensionStep, Migration

__all__ = [
    "MigrationReport",
    "MigrationStatus",
    "migrate",
    "migrate_hint",
    "migrate_sync",
    "migration_status",
    "migration_status_sync",
    "require_migrated",
]

logger: logging.Logger = logging.getLogger("graphile_worker.migrations")

MINIMUM_SERVER_VERSION = 120000
_DIVISION_BY_ZERO = "22012"


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a call to :func:`migrate` found and did."""

    schema: str
    previous_version: int | None
    """The newest migration id in the ledger before the call (``None``: no schema yet)."""
    current_version: int | None
    """The newest migration id in the ledger afterwards."""
    applied: tuple[int, ...]
    """Numbered migrations this call applied, in order."""
    extensions_applied: tuple[str, ...] = ()
    """Extension steps this call applied, in order."""

    @property
    def changed(self) -> bool:
        """Whether this call changed the schema at all."""
        return bool(self.applied or self.extensions_applied)


class _Begin:
    """Start a transaction (ignored when running inside the caller's transaction)."""


class _Commit:
    """Commit the transaction started by the last :class:`_Begin`."""


class _Rollback:
    """Roll back the current transaction (used after losing a race to another migrator)."""


_Step: TypeAlias = Statement | _Begin | _Commit | _Rollback


@dataclass(frozen=True, slots=True)
class _LedgerState:
    latest: int | None
    latest_breaking: int | None


_SERVER_STATE = """
select current_setting('server_version_num')::int as server_version,
       to_regclass(:ledger) is not null as has_ledger,
       exists (
         select 1 from pg_catalog.pg_attribute
         where attrelid = to_regclass(:ledger) and attname = 'breaking' and not attisdropped
       ) as has_breaking_column
"""

# The ledger exactly as Node creates it, so that whichever library comes first, the other
# finds what it expects.
_BOOTSTRAP = """
create schema if not exists {schema};
create table if not exists {schema}.migrations (
  id int primary key,
  ts timestamptz default now() not null
);
alter table {schema}.migrations add column if not exists breaking boolean not null default false;
"""

_MARK_BREAKING = "update {schema}.migrations set breaking = true where id = any(:ids)"
_LOCK = "select pg_advisory_xact_lock(hashtextextended(:lock_name, 0))"
_LEDGER_STATE = """
select max(id) as latest, max(id) filter (where breaking) as latest_breaking
from {schema}.migrations
"""
_RECORD = "insert into {schema}.migrations (id, breaking) values (:id, :breaking)"
_ANNOUNCE = "select pg_notify('worker:migrate', :payload)"

_EXTENSION_LEDGER = """
create table if not exists {schema}._pyworker_migrations (
  id text primary key,
  ts timestamptz not null default now()
)
"""
_EXISTS = "select to_regclass(:name) is not null"
_EXTENSIONS_DONE = "select id from {schema}._pyworker_migrations"
_RECORD_EXTENSION = "insert into {schema}._pyworker_migrations (id) values (:id)"


def _migration_plan(
    schema: str,
    up_to: int,
    extensions: Sequence[ExtensionStep],
    own_transactions: bool,
) -> Generator[_Step, Any, MigrationReport]:
    ledger_name = f"{quote_identifier(schema)}.migrations"
    lock = Statement("execute", _LOCK, {"lock_name": f"graphile_worker.migrate:{schema}"})

    def sql(template: str) -> str:
        return render(template, schema)

    server = yield Statement("fetchrow", _SERVER_STATE, {"ledger": ledger_name})
    if server["server_version"] < MINIMUM_SERVER_VERSION:
        raise UnsupportedPostgresVersionError(
            "graphile-worker needs PostgreSQL 12 or newer; this server reports "
            f"server_version_num = {server['server_version']}"
        )

    applied: list[int] = []
    previous: int | None = None
    current: int | None = None
    first_look = True
    while True:
        yield _Begin()
        yield lock
        if first_look and not (server["has_ledger"] and server["has_breaking_column"]):
            yield Statement("script", sql(_BOOTSTRAP))
            yield Statement(
                "execute", sql(_MARK_BREAKING), {"ids": [m.id for m in MIGRATIONS if m.breaking]}
            )
        row = yield Statement("fetchrow", sql(_LEDGER_STATE))
        state = _LedgerState(row["latest"], row["latest_breaking"])
        if first_look:
            previous = state.latest
            _check_compatibility(schema, state)
            first_look = False
        pending = _next_migration(state.latest, up_to)
        if pending is None:
            # The ledger, not our own list, is the truth: a concurrent migrator (ours or Node's)
            # may have applied the newest ids while we waited for the lock.
            current = state.latest
            yield _Commit()
            break
        try:
            yield Statement(
                "execute", sql(_RECORD), {"id": pending.id, "breaking": pending.breaking}
            )
        except UniqueViolationError:
            if not own_transactions:
                raise
            # Another migrator (a Node worker takes no advisory lock) recorded this id first:
            # start over from a fresh look at the ledger.
            logger.debug("migration %s was applied concurrently; re-reading the ledger", pending.id)
            yield _Rollback()
            continue
        try:
            yield Statement("script", pending.sql(schema))
        except QueryError as error:
            if pending.id == 11 and error.sqlstate == _DIVISION_BY_ZERO:
                raise LockedJobsError(
                    "migration 11 cannot run while jobs were locked within the last 4 hours; "
                    "stop every worker cleanly so that it releases its jobs, then migrate again"
                ) from error
            raise
        payload = json.dumps({"migrationNumber": pending.id, "breaking": pending.breaking})
        yield Statement("fetchval", _ANNOUNCE, {"payload": payload})
        yield _Commit()
        applied.append(pending.id)
        logger.debug("applied graphile-worker migration %06d to schema %s", pending.id, schema)

    reached = current or 0
    wanted = [step for step in extensions if step.requires <= min(reached, up_to)]
    extensions_applied: list[str] = []
    if wanted:
        yield _Begin()
        yield lock
        # Created only when missing: "create table if not exists" needs CREATE on the schema
        # even when the table exists, which a worker running as a granted role has not.
        extension_ledger = f"{quote_identifier(schema)}._pyworker_migrations"
        if not (yield Statement("fetchval", _EXISTS, {"name": extension_ledger})):
            yield Statement("execute", sql(_EXTENSION_LEDGER))
        rows = yield Statement("fetch", sql(_EXTENSIONS_DONE))
        done = {row["id"] for row in rows}
        for step in wanted:
            if step.id in done:
                continue
            yield Statement("execute", sql(_RECORD_EXTENSION), {"id": step.id})
            yield Statement("script", step.render(schema))
            extensions_applied.append(step.id)
        yield _Commit()

    if applied or extensions_applied:
        # One line for the whole upgrade: twenty lines for a fresh schema only bury the
        # worker's own start-up messages (each migration is still logged at debug level).
        logger.info(
            "migrated graphile-worker schema %s from version %s to %s%s",
            schema,
            "none" if previous is None else previous,
            current,
            f" (extension steps: {', '.join(extensions_applied)})" if extensions_applied else "",
        )
    return MigrationReport(
        schema=schema,
        previous_version=previous,
        current_version=current,
        applied=tuple(applied),
        extensions_applied=tuple(extensions_applied),
    )


def _check_compatibility(schema: str, state: _LedgerState) -> None:
    if state.latest_breaking is not None and state.latest_breaking > LATEST_MIGRATION:
        raise IncompatibleSchemaError(
            f"schema {schema!r} is at graphile-worker migration {state.latest}, which includes "
            f"breaking migration {state.latest_breaking}, but this library only knows "
            f"migrations up to {LATEST_MIGRATION}; running against it is unsafe. Upgrade "
            "graphile-worker (Python) or align the versions of every worker sharing the database.",
            database_version=state.latest_breaking,
            library_version=LATEST_MIGRATION,
        )
    if state.latest is not None and state.latest > LATEST_MIGRATION:
        logger.warning(
            "schema %r is at graphile-worker migration %s but this library only knows up to %s; "
            "the newer migrations are not marked breaking, so continuing, but check that every "
            "worker sharing the database is compatible",
            schema,
            state.latest,
            LATEST_MIGRATION,
        )


def _next_migration(latest: int | None, up_to: int) -> Migration | None:
    for migration in MIGRATIONS:
        if migration.id > up_to:
            return None
        if latest is None or migration.id > latest:
            return migration
    return None


def _target(up_to: int | None) -> int:
    if up_to is None:
        return LATEST_MIGRATION
    if not 1 <= up_to <= LATEST_MIGRATION:
        raise ConfigurationError(f"up_to must be between 1 and {LATEST_MIGRATION}, not {up_to}")
    return up_to


def migrate_sync(
    executor: SyncExecutor,
    *,
    schema: str = DEFAULT_SCHEMA,
    up_to: int | None = None,
    in_transaction: bool = False,
    extensions: Sequence[ExtensionStep] = EXTENSION_STEPS,
) -> MigrationReport:
    """Migrate over a blocking connection.

    With ``in_transaction=False`` the executor must be in autocommit mode and each migration
    gets its own transaction. With ``in_transaction=True`` everything joins the caller's open
    transaction (Alembic, or a user's own session) and nothing is committed here.
    """
    quote_identifier(schema)
    plan = _migration_plan(schema, _target(up_to), extensions, not in_transaction)
    open_transaction = False

    def perform(step: _Step) -> Any:
        nonlocal open_transaction
        if isinstance(step, Statement):
            return perform_sync(step, executor)
        if not in_transaction:
            open_transaction = isinstance(step, _Begin)
            executor.execute(_BOUNDARY_SQL[type(step)])
        return None

    try:
        return drive_sync(plan, perform)
    except BaseException:
        if open_transaction:
            executor.execute("rollback")
        raise


async def migrate(
    executor: DatabaseDriver | AsyncExecutor,
    *,
    schema: str = DEFAULT_SCHEMA,
    up_to: int | None = None,
    in_transaction: bool = False,
    extensions: Sequence[ExtensionStep] = EXTENSION_STEPS,
) -> MigrationReport:
    """Migrate through an async driver, one transaction per migration.

    With ``in_transaction=True``, ``executor`` may be any async executor already inside a
    transaction (for example a SQLAlchemy ``AsyncConnection``); nothing is committed here.
    """
    quote_identifier(schema)
    if not in_transaction and not isinstance(executor, DatabaseDriver):
        raise ConfigurationError(
            "migrate() needs a DatabaseDriver to manage its own transactions; pass "
            "in_transaction=True to run inside a transaction you already opened"
        )
    plan = _migration_plan(schema, _target(up_to), extensions, not in_transaction)
    transaction: AbstractAsyncContextManager[AsyncExecutor] | None = None
    current: AsyncExecutor = executor

    async def perform(step: _Step) -> Any:
        nonlocal transaction, current
        if isinstance(step, Statement):
            return await perform_async(step, current)
        if in_transaction:
            return None
        if isinstance(step, _Begin):
            assert isinstance(executor, DatabaseDriver)
            transaction = executor.transaction()
            current = await transaction.__aenter__()
            return None
        finishing, transaction, current = transaction, None, executor
        assert finishing is not None
        if isinstance(step, _Commit):
            await finishing.__aexit__(None, None, None)
        else:
            await finishing.__aexit__(_RolledBack, _RolledBack(), None)
        return None

    try:
        return await drive_async(plan, perform)
    except BaseException as error:
        if transaction is not None:
            with anyio.CancelScope(shield=True):
                await transaction.__aexit__(type(error), error, error.__traceback__)
        raise


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Where a schema stands, read without changing anything (``graphile-worker migrate --check``).

    For deployments whose workers may not run DDL (``WorkerOptions(migrate=False)``): the
    deploy step migrates with a privileged role, and everything else can check first.
    """

    schema: str
    current_version: int | None
    """The newest migration id in the ledger (``None``: the schema is not installed)."""
    latest_version: int
    """The newest migration this library applies (:data:`LATEST_MIGRATION`)."""
    missing_extensions: tuple[str, ...]
    """Extension steps that :func:`migrate` would still apply, in order."""

    @property
    def behind(self) -> bool:
        """Whether numbered migrations are missing: this library's queries would fail."""
        return self.current_version is None or self.current_version < self.latest_version

    @property
    def up_to_date(self) -> bool:
        """Whether :func:`migrate` would change nothing."""
        return not self.behind and not self.missing_extensions

    def describe(self) -> str:
        """One line saying how far behind the schema is and what to do about it."""
        if self.up_to_date:
            return f"schema {self.schema!r} is up to date (version {self.current_version})"
        steps = ", ".join(self.missing_extensions)
        if self.current_version is None:
            where = f"schema {self.schema!r} is not installed"
        else:
            where = f"schema {self.schema!r} is at version {self.current_version}"
        if self.behind:
            needs = f"this library needs {self.latest_version}"
            if steps:
                needs += f" (and extension steps {steps})"
        else:
            needs = f"this library also needs its extension steps {steps}"
        return f"{where}, {needs}: run {migrate_hint(self.schema)}"


def migrate_hint(schema: str) -> str:
    """The command that brings ``schema`` up to date, quoted for error messages."""
    flag = "" if schema == DEFAULT_SCHEMA else f" --schema {schema}"
    return f"'graphile-worker migrate{flag}'"


_STATUS_TABLES = """
select to_regclass(:ledger) is not null as has_ledger,
       to_regclass(:extension_ledger) is not null as has_extension_ledger
"""
_LATEST_ONLY = "select max(id) as latest, null::int as latest_breaking from {schema}.migrations"


def _status_plan(
    schema: str, extensions: Sequence[ExtensionStep]
) -> Generator[Statement, Any, MigrationStatus]:
    """Read the ledgers only: no lock, no DDL, so a role without privileges can run it."""
    quoted = quote_identifier(schema)
    server = yield Statement("fetchrow", _SERVER_STATE, {"ledger": f"{quoted}.migrations"})
    tables = yield Statement(
        "fetchrow",
        _STATUS_TABLES,
        {"ledger": f"{quoted}.migrations", "extension_ledger": f"{quoted}._pyworker_migrations"},
    )
    current: int | None = None
    if tables["has_ledger"]:
        query = _LEDGER_STATE if server["has_breaking_column"] else _LATEST_ONLY
        row = yield Statement("fetchrow", render(query, schema))
        state = _LedgerState(row["latest"], row["latest_breaking"])
        _check_compatibility(schema, state)
        current = state.latest
    done: set[str] = set()
    if tables["has_extension_ledger"]:
        rows = yield Statement("fetch", render(_EXTENSIONS_DONE, schema))
        done = {row["id"] for row in rows}
    return MigrationStatus(
        schema=schema,
        current_version=current,
        latest_version=LATEST_MIGRATION,
        missing_extensions=tuple(step.id for step in extensions if step.id not in done),
    )


async def migration_status(
    executor: DatabaseDriver | AsyncExecutor,
    *,
    schema: str = DEFAULT_SCHEMA,
    extensions: Sequence[ExtensionStep] = EXTENSION_STEPS,
) -> MigrationStatus:
    """How far ``schema`` is behind this library, changing nothing.

    Raises:
        IncompatibleSchemaError: the schema holds a breaking migration this library does
            not know, as :func:`migrate` would.
    """

    async def perform(step: Statement) -> Any:
        return await perform_async(step, executor)

    return await drive_async(_status_plan(schema, extensions), perform)


def migration_status_sync(
    executor: SyncExecutor,
    *,
    schema: str = DEFAULT_SCHEMA,
    extensions: Sequence[ExtensionStep] = EXTENSION_STEPS,
) -> MigrationStatus:
    """The blocking twin of :func:`migration_status`."""
    return drive_sync(_status_plan(schema, extensions), lambda step: perform_sync(step, executor))


async def require_migrated(
    executor: DatabaseDriver | AsyncExecutor, *, schema: str = DEFAULT_SCHEMA
) -> MigrationStatus:
    """Refuse to start on a schema this library's queries would fail on.

    What a worker with ``migrate=False`` checks first, so that an unmigrated database is
    reported as such rather than as ``relation ... does not exist`` from the first query.
    Missing extension steps are allowed: the features needing them turn themselves off
    with a warning.

    Raises:
        MigrationError: numbered migrations are missing.
    """
    status = await migration_status(executor, schema=schema)
    if status.behind:
        raise MigrationError(status.describe())
    return status


class _RolledBack(Exception):
    """Passed to a transaction's ``__aexit__`` to make it roll back instead of committing."""


_BOUNDARY_SQL: dict[type[_Step], str] = {_Begin: "begin", _Commit: "commit", _Rollback: "rollback"}
