"""What a role that does not own the schema needs, the SQL that grants it, and the start-up check.

Node's migrations enable row-level security on ``_private_jobs``, ``_private_job_queues``,
``_private_tasks`` and ``_private_known_crontabs`` (ours on ``_pyworker_workers`` too) and
create no policy. The owner of a table is exempt, and Node always runs as the owner, so Node
never notices. Any other role sees no row, however many grants it holds: selects and claims
find nothing, updates and deletes change nothing, only inserts fail. A worker running as
such a role would run no job and report nothing, which is why :func:`check_worker_access`
runs before a worker's first claim.

The model for a runtime role (``graphile-worker grant ROLE``, :func:`grant`):

* ``USAGE`` on the schema; ``SELECT, INSERT, UPDATE, DELETE`` on the job, queue and task
  tables and on our worker registry; ``SELECT, INSERT, UPDATE`` on the cron ledger
  (``_private_known_crontabs``: nothing deletes from it); ``SELECT`` on both migration
  ledgers (a worker reads them at start-up) and on Node's ``jobs`` view; ``USAGE`` on the
  schema's sequences (the id defaults); ``EXECUTE`` on Node's functions (``add_job`` and
  the other job functions; they run with the caller's rights, so the table grants are
  needed as well). ``LISTEN``, ``NOTIFY`` and advisory locks need no grant.
* One permissive policy per row-secured table, ``for all to ROLE using (true) with check
  (true)``, named ``graphile_worker_<role>``. Policies are the owner's to create (no
  superuser needed), name one role and these tables only, and leave the owner, and so
  Node's workers and migrator, exactly as they were. The alternative, ``ALTER ROLE ...
  BYPASSRLS``, needs a superuser and lifts row-level security for that role on every
  table of the cluster, so the command never does it; the check accepts it.
* ``read_only`` (a dashboard or monitoring role): ``USAGE`` on the schema, ``SELECT`` on
  the same tables and the view, and policies ``for select`` only. No function of the
  schema only reads, so none is granted; ``add_job`` then fails on the table grants.

Granting never takes anything away, so it is safe to repeat, and it should be repeated
after a migration that adds tables. The statements are plain SQL (no ``DO`` blocks), so
``--dry-run`` output can go into an application's own migrations.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import final

from .._validate import check_encodable
from ..errors import ConfigurationError, InsufficientPrivilegeError
from . import DEFAULT_SCHEMA, quote_identifier
from ._statement import Operation, Row, Statement
from .recovery import WORKER_REGISTRY_TABLE

__all__ = [
    "FUNCTIONS",
    "TABLES",
    "GrantReport",
    "TableGrant",
    "access_problems",
    "check_role_name",
    "check_worker_access",
    "grant",
    "grant_hint",
    "grant_statements",
    "policy_name",
    "quote_role",
    "worker_needs",
]

_ALL = ("SELECT", "INSERT", "UPDATE", "DELETE")
_MAX_IDENTIFIER_BYTES = 63
_POLICY_PREFIX = "graphile_worker_"


@dataclass(frozen=True, slots=True, kw_only=True)
class TableGrant:
    """One table (or view) of the schema and what a runtime role is granted on it."""

    name: str
    privileges: tuple[str, ...]
    row_security: bool
    """Whether the migrations enable row-level security on it, so a policy is needed too."""


TABLES: tuple[TableGrant, ...] = (
    TableGrant(name="_private_jobs", privileges=_ALL, row_security=True),
    TableGrant(name="_private_job_queues", privileges=_ALL, row_security=True),
    TableGrant(name="_private_tasks", privileges=_ALL, row_security=True),
    TableGrant(
        name="_private_known_crontabs", privileges=("SELECT", "INSERT", "UPDATE"), row_security=True
    ),
    TableGrant(name=WORKER_REGISTRY_TABLE, privileges=_ALL, row_security=True),
    TableGrant(name="migrations", privileges=("SELECT",), row_security=False),
    TableGrant(name="_pyworker_migrations", privileges=("SELECT",), row_security=False),
    # Node's view over the jobs (migration 17); it reads as its owner, so no policy.
    TableGrant(name="jobs", privileges=("SELECT",), row_security=False),
)
"""Every table a runtime role is granted something on, in the order statements name them."""

FUNCTIONS = (
    "add_job",
    "add_jobs",
    "complete_jobs",
    "permanently_fail_jobs",
    "remove_job",
    "reschedule_jobs",
    "force_unlock_workers",
)
"""Node's functions in the schema (migration 20); each name has one signature."""

# What the worker itself uses, checked at its start. Less than a grant gives: deleting
# tasks and queues is only for WorkerUtils.cleanup, which a worker never runs by itself.
_WORKER_USES: dict[str, tuple[str, ...]] = {
    "_private_jobs": _ALL,
    "_private_job_queues": ("SELECT", "INSERT", "UPDATE"),
    "_private_tasks": ("SELECT", "INSERT"),
    "migrations": ("SELECT",),
    "_pyworker_migrations": ("SELECT",),
}
# Jobs added from tasks (ctx.add_job) and by cron go through these; the other functions
# are for WorkerUtils.
_WORKER_FUNCTIONS = ("add_job", "add_jobs")
_CRON_USES: dict[str, tuple[str, ...]] = {"_private_known_crontabs": ("SELECT", "INSERT", "UPDATE")}
_RECOVERY_USES: dict[str, tuple[str, ...]] = {WORKER_REGISTRY_TABLE: _ALL}


def check_role_name(role: str) -> str:
    """Return ``role`` if PostgreSQL can hold it as a role name, else raise.

    Any text works once quoted; what PostgreSQL would not keep as given is refused, above
    all a name longer than 63 bytes, which it would silently cut to another role's name.

    Raises:
        ConfigurationError: empty, too long, or with a NUL or an unpaired surrogate.
    """
    if not isinstance(role, str):
        raise ConfigurationError(f"role name must be a string, not {type(role).__name__}")
    if not role:
        raise ConfigurationError("role name must not be empty")
    if "\x00" in role:
        raise ConfigurationError("role name must not contain a NUL character")
    check_encodable("role name", role, error=ConfigurationError)
    if len(role.encode("utf-8")) > _MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"role name {role!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes, which PostgreSQL "
            "would cut short"
        )
    return role


def quote_role(role: str) -> str:
    """``role`` as a quoted identifier: any quotes doubled, case and spaces kept."""
    return '"' + check_role_name(role).replace('"', '""') + '"'


def policy_name(role: str) -> str:
    """The name of the policy :func:`grant` creates for ``role`` on each row-secured table.

    ``graphile_worker_<role>``; when that would pass 63 bytes, the role is shortened and a
    digest of the full name added, so two long names sharing a prefix still differ.
    """
    name = _POLICY_PREFIX + check_role_name(role)
    if len(name.encode("utf-8")) <= _MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha256(role.encode("utf-8")).hexdigest()[:8]
    room = _MAX_IDENTIFIER_BYTES - len(_POLICY_PREFIX) - len(digest) - 1
    shortened = role.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return f"{_POLICY_PREFIX}{shortened}_{digest}"


def grant_hint(role: str, schema: str = DEFAULT_SCHEMA) -> str:
    """The command that grants ``role`` what a worker needs, quoted for a POSIX shell."""
    flag = "" if schema == DEFAULT_SCHEMA else f" --schema {shlex.quote(schema)}"
    return f"graphile-worker grant {shlex.quote(role)}{flag}"


# ------------------------------------------------------------------------------ granting


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class GrantReport:
    """What :meth:`~graphile_worker.WorkerUtils.grant` ran or, with ``dry_run``, would run."""

    role: str
    schema: str
    read_only: bool
    statements: tuple[str, ...]
    """The SQL, one statement each, in order: the grants, then any policy to create."""
    applied: bool
    """False for a dry run: nothing was changed."""

    @property
    def sql(self) -> str:
        """The statements as one script, one per line."""
        return "".join(f"{statement}\n" for statement in self.statements)


def grant_statements(
    schema: str,
    role: str,
    *,
    read_only: bool = False,
    present: Collection[str] | None = None,
    policies: Mapping[str, str] | None = None,
) -> list[str]:
    """The SQL that grants ``role`` a runtime role's rights (or a read-only role's) on ``schema``.

    Args:
        present: Names of the tables that exist (``None``: all of :data:`TABLES`); absent
            ones, such as the worker registry before its migration, are left out.
        policies: For each table that already has a policy named :func:`policy_name`, its
            command as ``pg_policy.polcmd`` spells it (``*`` for all, ``r`` for select). A
            policy that already covers what is wanted is kept; a narrower one is replaced.
    """
    quoted_schema = quote_identifier(schema)
    grantee = quote_role(role)
    policy = '"' + policy_name(role).replace('"', '""') + '"'
    existing = policies or {}
    tables = [t for t in TABLES if present is None or t.name in present]
    statements = [f"grant usage on schema {quoted_schema} to {grantee};"]
    for table in tables:
        privileges = ("SELECT",) if read_only else table.privileges
        statements.append(
            f"grant {', '.join(privileges).lower()} on table {quoted_schema}.{table.name} "
            f"to {grantee};"
        )
    if not read_only:
        statements.append(f"grant usage on all sequences in schema {quoted_schema} to {grantee};")
        functions = ", ".join(f"{quoted_schema}.{name}" for name in FUNCTIONS)
        statements.append(f"grant execute on function {functions} to {grantee};")
    wanted = "r" if read_only else "*"
    for table in tables:
        if not table.row_security:
            continue
        have = existing.get(table.name)
        if have == "*" or have == wanted:
            continue
        target = f"{quoted_schema}.{table.name}"
        if have is not None:
            statements.append(f"drop policy {policy} on {target};")
        if read_only:
            rule = f"for select to {grantee} using (true)"
        else:
            rule = f"for all to {grantee} using (true) with check (true)"
        statements.append(f"create policy {policy} on {target} as permissive {rule};")
    return statements


# One row per object grant() looks at: the role, the schema, its tables and functions, who
# owns each (only the owner may grant on it) and any policy already named for the role.
_GRANT_STATE = """
with target as (
  select n.oid, n.nspname, n.nspowner from pg_catalog.pg_namespace as n
  where n.nspname = CAST(:schema AS text)
)
select 'connected' as kind, current_user::text as name, null::text as owner,
       true as owned, null::text as policy
union all
select 'role', r.rolname::text, null, null, null
from pg_catalog.pg_roles as r where r.rolname = CAST(:role AS text)
union all
select 'schema', target.nspname::text, pg_catalog.pg_get_userbyid(target.nspowner)::text,
       pg_catalog.pg_has_role(target.nspowner, 'USAGE'), null
from target
union all
select 'table', c.relname::text, pg_catalog.pg_get_userbyid(c.relowner)::text,
       pg_catalog.pg_has_role(c.relowner, 'USAGE'),
       (select p.polcmd::text from pg_catalog.pg_policy as p
        where p.polrelid = c.oid and p.polname = CAST(:policy AS text))
from pg_catalog.pg_class as c join target on c.relnamespace = target.oid
where c.relname::text = any(CAST(:tables AS text[])) and c.relkind in ('r', 'p', 'v')
union all
select 'function', p.proname::text, pg_catalog.pg_get_userbyid(p.proowner)::text,
       pg_catalog.pg_has_role(p.proowner, 'USAGE'), null
from pg_catalog.pg_proc as p join target on p.pronamespace = target.oid
where p.proname::text = any(CAST(:functions AS text[]))
"""


def grant(
    schema: str, role: str, *, read_only: bool = False, dry_run: bool = False
) -> Operation[GrantReport]:
    """Grant ``role`` what :func:`grant_statements` lists, as one script (one transaction).

    Reads the catalog first, so that only existing tables are named and policies already
    in place are kept; with ``dry_run`` it stops there.

    Raises:
        ConfigurationError: the role does not exist, or the schema is not installed.
        InsufficientPrivilegeError: the connected role does not own the schema's objects
            (not raised for a dry run, which an unprivileged role may want to print).
    """
    quote_identifier(schema)
    check_role_name(role)
    rows: list[Row] = yield Statement(
        "fetch",
        _GRANT_STATE,
        {
            "schema": schema,
            "role": role,
            "policy": policy_name(role),
            "tables": [table.name for table in TABLES],
            "functions": list(FUNCTIONS),
        },
    )
    by_kind: dict[str, list[Row]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    if "role" not in by_kind:
        raise ConfigurationError(
            f"role {role!r} does not exist; create it first (for example: create role "
            f"{quote_role(role)} login password '...'), then grant again"
        )
    tables = {row["name"]: row for row in by_kind.get("table", [])}
    if "schema" not in by_kind or "_private_jobs" not in tables:
        raise ConfigurationError(
            f"schema {schema!r} holds no graphile-worker tables; install it first with "
            "'graphile-worker migrate' as the role that is to own it, then grant"
        )
    if not dry_run:
        _require_owner(schema, by_kind)
    statements = grant_statements(
        schema,
        role,
        read_only=read_only,
        present=tables,
        policies={name: row["policy"] for name, row in tables.items() if row["policy"]},
    )
    if not dry_run:
        yield Statement("script", "\n".join(statements))
    return GrantReport(
        role=role,
        schema=schema,
        read_only=read_only,
        statements=tuple(statements),
        applied=not dry_run,
    )


def _require_owner(schema: str, by_kind: Mapping[str, Sequence[Row]]) -> None:
    """Refuse, naming the owner, when the connected role may not grant on every object."""
    connected = by_kind["connected"][0]["name"]
    foreign = [row for kind in ("schema", "table", "function") for row in by_kind.get(kind, [])]
    foreign = [row for row in foreign if not row["owned"]]
    if not foreign:
        return
    owners = sorted({row["owner"] for row in foreign})
    names = ", ".join(row["name"] for row in foreign)
    raise InsufficientPrivilegeError(
        f"role {connected!r} may not grant on schema {schema!r}: it does not own {names}; "
        f"connect as the owner ({', '.join(repr(owner) for owner in owners)}) or a superuser, "
        "or print the SQL with --dry-run for them to run",
        role=connected,
        schema=schema,
        problems=[f"does not own {row['name']}" for row in foreign],
    )


# ------------------------------------------------------------------------ start-up check


def worker_needs(*, cron: bool, recovery: bool) -> dict[str, tuple[str, ...]]:
    """Table name -> the privileges a worker with these features uses on it."""
    needs = dict(_WORKER_USES)
    if cron:
        needs.update(_CRON_USES)
    if recovery:
        needs.update(_RECOVERY_USES)
    return needs


# One row per object the worker needs, for the connected role: what it holds, whether
# row-level security applies to it on that table (it owns none of them, or security is
# forced, and it is neither superuser nor BYPASSRLS), and the commands of the permissive
# policies that name it, PUBLIC, or a role whose rights it inherits. Only catalogs are
# read, which every role may, so it works before any grant, even without USAGE.
_ACCESS_STATE = """
with target as (
  select n.oid, n.nspname from pg_catalog.pg_namespace as n
  where n.nspname = CAST(:schema AS text)
),
me as (
  select coalesce(bool_or(r.rolsuper or r.rolbypassrls), false) as bypasses
  from pg_catalog.pg_roles as r where r.rolname = current_user
),
needed as (
  select c.oid, c.relname, c.relrowsecurity, c.relforcerowsecurity,
         pg_catalog.pg_has_role(c.relowner, 'USAGE') as owned
  from pg_catalog.pg_class as c join target on c.relnamespace = target.oid
  where c.relname::text = any(CAST(:tables AS text[])) and c.relkind in ('r', 'p')
)
select 'schema' as kind, target.nspname::text as name, current_user::text as role,
       case when pg_catalog.has_schema_privilege(target.oid, 'USAGE')
            then array['USAGE'] else array[]::text[] end as privileges,
       false as row_security, array[]::text[] as policies
from target
union all
select 'table', t.relname::text, current_user::text,
       array_remove(array[
         case when pg_catalog.has_table_privilege(t.oid, 'SELECT') then 'SELECT' end,
         case when pg_catalog.has_table_privilege(t.oid, 'INSERT') then 'INSERT' end,
         case when pg_catalog.has_table_privilege(t.oid, 'UPDATE') then 'UPDATE' end,
         case when pg_catalog.has_table_privilege(t.oid, 'DELETE') then 'DELETE' end
       ], null),
       t.relrowsecurity and not me.bypasses and (t.relforcerowsecurity or not t.owned),
       array(
         select case p.polcmd when 'r' then 'SELECT' when 'a' then 'INSERT'
                              when 'w' then 'UPDATE' when 'd' then 'DELETE' else 'ALL' end
         from pg_catalog.pg_policy as p
         where p.polrelid = t.oid and p.polpermissive
           and exists (
             select 1 from unnest(p.polroles) as grantee(oid)
             where case when grantee.oid = 0 then true
                        else pg_catalog.pg_has_role(grantee.oid, 'USAGE') end
           )
       )
from needed as t cross join me
union all
select 'sequence', s.relname::text, current_user::text,
       case when pg_catalog.has_sequence_privilege(s.oid, 'USAGE')
            then array['USAGE'] else array[]::text[] end,
       false, array[]::text[]
from needed as t
join pg_catalog.pg_depend as d
  on d.refclassid = 'pg_catalog.pg_class'::regclass and d.refobjid = t.oid
 and d.classid = 'pg_catalog.pg_class'::regclass and d.deptype in ('a', 'i')
join pg_catalog.pg_class as s on s.oid = d.objid and s.relkind = 'S'
union all
select 'function', p.proname::text, current_user::text,
       case when pg_catalog.has_function_privilege(p.oid, 'EXECUTE')
            then array['EXECUTE'] else array[]::text[] end,
       false, array[]::text[]
from pg_catalog.pg_proc as p join target on p.pronamespace = target.oid
where p.proname::text = any(CAST(:functions AS text[]))
"""


def access_problems(rows: Iterable[Row], needs: Mapping[str, Sequence[str]]) -> list[str]:
    """Each thing the connected role lacks, in words, from the rows of the access query.

    Empty when the schema does not exist yet (migrating it is the migrator's business) and
    when nothing is missing. Row-level security that hides every row of a table comes
    first: it is the failure nobody would otherwise see.
    """
    rows = list(rows)
    if not any(row["kind"] == "schema" for row in rows):
        return []
    order = {name: position for position, name in enumerate(needs)}
    tables = sorted(
        (row for row in rows if row["kind"] == "table"), key=lambda row: order.get(row["name"], 0)
    )
    hidden: list[str] = []
    ungranted: list[str] = []
    partly: list[str] = []
    narrow: list[str] = []
    for row in tables:
        wanted = tuple(needs.get(row["name"], ()))
        held = set(row["privileges"] or ())
        missing = [privilege for privilege in wanted if privilege not in held]
        if missing and len(missing) == len(wanted):
            ungranted.append(row["name"])
        elif missing:
            partly.append(f"no {', '.join(missing)} on {row['name']}")
        if row["row_security"]:
            covered = _covered(row["policies"] or ())
            uncovered = [privilege for privilege in wanted if privilege not in covered]
            if uncovered and len(uncovered) == len(wanted):
                hidden.append(row["name"])
            elif uncovered:
                narrow.append(f"no policy lets it {', '.join(uncovered)} rows of {row['name']}")
    problems: list[str] = []
    if hidden:
        problems.append(
            f"row-level security hides every row of {', '.join(hidden)} from it (no policy "
            "names it, and it neither owns them nor has BYPASSRLS), so it would run no job "
            "and say nothing"
        )
    problems.extend(narrow)
    if any(row["kind"] == "schema" and "USAGE" not in (row["privileges"] or ()) for row in rows):
        problems.append("no USAGE on the schema")
    if ungranted:
        problems.append(f"no grants on {', '.join(ungranted)}")
    problems.extend(partly)
    for kind, privilege in (("sequence", "USAGE"), ("function", "EXECUTE")):
        lacking = sorted(
            row["name"]
            for row in rows
            if row["kind"] == kind and privilege not in (row["privileges"] or ())
        )
        if lacking:
            problems.append(f"no {privilege} on {kind}s {', '.join(lacking)}")
    return problems


def _covered(commands: Iterable[str]) -> set[str]:
    covered: set[str] = set()
    for command in commands:
        covered.update(_ALL if command == "ALL" else (command,))
    return covered


def check_worker_access(schema: str, *, cron: bool, recovery: bool) -> Operation[None]:
    """Refuse to start a worker whose role cannot do its work in ``schema``: one query.

    Raises:
        InsufficientPrivilegeError: a grant or a row-level security policy is missing; the
            message names the role, the schema, everything missing and the command to run.
    """
    needs = worker_needs(cron=cron, recovery=recovery)
    rows: list[Row] = yield Statement(
        "fetch",
        _ACCESS_STATE,
        {"schema": schema, "tables": list(needs), "functions": list(_WORKER_FUNCTIONS)},
    )
    problems = access_problems(rows, needs)
    if not problems:
        return
    role: str = rows[0]["role"]
    raise InsufficientPrivilegeError(
        f"role {role!r} cannot run the jobs in schema {schema!r}: {'; '.join(problems)}. "
        f"As the schema's owner, run: {grant_hint(role, schema)} (with --dry-run it prints "
        "the SQL instead)",
        role=role,
        schema=schema,
        problems=problems,
    )
