"""Snapshot the shape of one schema from ``pg_catalog``, so two databases can be compared.

A snapshot is what a schema *is* to its users: relations, columns, constraints, indexes,
triggers, sequences, functions (signatures and attributes, never bodies), views, types,
policies and comments. It holds no OIDs, and every occurrence of the schema's own name is
replaced by :data:`SCHEMA_MARKER`, so a snapshot of ``graphile_worker`` compares equal to one
of ``"Custom Jobs"`` when both were built by the same migrations.

Physical details that differ between two equivalent histories are left out on purpose:
column numbers (a dropped column leaves a hole; we keep the logical order instead), OIDs,
owners, and sequence positions.

The layout is ``{category: {object key: {property: value}}}``; :func:`diff_catalogs` walks it
and prints one line per difference.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from graphile_worker.migrations.catalog import QUEUE_ORDER_INDEX, WORKER_REGISTRY_TABLE

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "EXTENSION_OBJECTS",
    "SCHEMA_MARKER",
    "Snapshot",
    "catalog_snapshot",
    "catalog_without_extensions",
    "diff_catalogs",
    "ledger_rows",
]

SCHEMA_MARKER = "<schema>"
"""Stands for the snapshotted schema's (quoted) name in every piece of SQL text."""

Snapshot = dict[str, dict[str, dict[str, Any]]]

# Each query takes the schema's OID as :nsp and returns a "key" column plus properties.
# Relations: every kind except indexes (they have their own category) and TOAST tables.
_RELATIONS = """
select c.relname as key,
       c.relkind::text as kind,
       c.relpersistence::text as persistence,
       c.reloptions as options,
       c.relrowsecurity as row_security,
       c.relforcerowsecurity as force_row_security,
       c.relreplident::text as replica_identity,
       c.relispartition as is_partition,
       c.relacl::text[] as acl,
       (select array_agg(p.relname order by i.inhseqno)
          from pg_inherits i join pg_class p on p.oid = i.inhparent
         where i.inhrelid = c.oid) as inherits
  from pg_class c
 where c.relnamespace = %(nsp)s and c.relkind not in ('i', 'I', 't')
"""

# Columns of tables, views and composite types, numbered in their logical order.
_COLUMNS = """
select c.relname || '.' || a.attname as key,
       row_number() over (partition by c.oid order by a.attnum) as position,
       pg_catalog.format_type(a.atttypid, a.atttypmod) as type,
       a.attnotnull as not_null,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid) as default,
       a.attidentity::text as identity,
       a.attgenerated::text as generated,
       case when a.attcollation <> t.typcollation then co.collname end as collation,
       a.attacl::text[] as acl
  from pg_class c
  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  join pg_type t on t.oid = a.atttypid
  left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
  left join pg_collation co on co.oid = a.attcollation
 where c.relnamespace = %(nsp)s and c.relkind in ('r', 'p', 'v', 'm', 'f', 'c')
"""

# Constraints of relations (domain constraints are listed with their domain).
_CONSTRAINTS = """
select c.relname || '.' || k.conname as key,
       k.contype::text as type,
       pg_catalog.pg_get_constraintdef(k.oid, true) as definition
  from pg_constraint k
  join pg_class c on c.oid = k.conrelid
 where c.relnamespace = %(nsp)s
"""

_INDEXES = """
select ic.relname as key,
       tc.relname as "table",
       pg_catalog.pg_get_indexdef(i.indexrelid) as definition,
       i.indisclustered as clustered,
       i.indisreplident as replica_identity,
       i.indisvalid as valid
  from pg_index i
  join pg_class ic on ic.oid = i.indexrelid
  join pg_class tc on tc.oid = i.indrelid
 where ic.relnamespace = %(nsp)s
"""

_TRIGGERS = """
select c.relname || '.' || t.tgname as key,
       pg_catalog.pg_get_triggerdef(t.oid, true) as definition,
       t.tgenabled::text as enabled
  from pg_trigger t
  join pg_class c on c.oid = t.tgrelid
 where c.relnamespace = %(nsp)s and not t.tgisinternal
"""

_POLICIES = """
select c.relname || '.' || p.polname as key,
       p.polcmd::text as command,
       p.polpermissive as permissive,
       array(select case when r = 0 then 'public' else pg_catalog.pg_get_userbyid(r)::text end
               from unnest(p.polroles) r order by 1) as roles,
       pg_catalog.pg_get_expr(p.polqual, p.polrelid) as using_expression,
       pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) as check_expression
  from pg_policy p
  join pg_class c on c.oid = p.polrelid
 where c.relnamespace = %(nsp)s
"""

# Rewrite rules other than the ones that implement views.
_RULES = """
select r.tablename || '.' || r.rulename as key, r.definition
  from pg_rules r
  join pg_namespace n on n.nspname = r.schemaname
 where n.oid = %(nsp)s
"""

_SEQUENCES = """
select c.relname as key,
       pg_catalog.format_type(s.seqtypid, null) as type,
       s.seqstart as start,
       s.seqincrement as increment,
       s.seqmin as minimum,
       s.seqmax as maximum,
       s.seqcache as cache,
       s.seqcycle as cycle,
       (select oc.relname || '.' || a.attname || ' (' || d.deptype::text || ')'
          from pg_depend d
          join pg_class oc on oc.oid = d.refobjid
          join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
         where d.classid = 'pg_class'::regclass and d.objid = c.oid
           and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')) as owned_by
  from pg_sequence s
  join pg_class c on c.oid = s.seqrelid
 where c.relnamespace = %(nsp)s
"""

_FUNCTIONS = """
select p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')' as key,
       pg_catalog.pg_get_function_arguments(p.oid) as arguments,
       pg_catalog.pg_get_function_result(p.oid) as result,
       p.prokind::text as kind,
       p.provolatile::text as volatility,
       p.proisstrict as strict,
       p.prosecdef as security_definer,
       p.proleakproof as leakproof,
       p.proparallel::text as parallel,
       p.proconfig as config,
       l.lanname as language,
       p.procost as cost,
       p.prorows as rows,
       p.proacl::text[] as acl
  from pg_proc p
  join pg_language l on l.oid = p.prolang
 where p.pronamespace = %(nsp)s
"""

_VIEWS = """
select c.relname as key,
       pg_catalog.pg_get_viewdef(c.oid, true) as definition
  from pg_class c
 where c.relnamespace = %(nsp)s and c.relkind in ('v', 'm')
"""

# Types a migration declares: composite, enum, domain, range, base. Array types PostgreSQL
# creates alongside another type, and the row types of tables and views, come for free.
_TYPES = """
select t.typname as key,
       t.typtype::text as type_kind,
       t.typacl::text[] as acl
  from pg_type t
  left join pg_class c on c.oid = t.typrelid
 where t.typnamespace = %(nsp)s
   and (t.typrelid = 0 or c.relkind = 'c')
   and not exists (select 1 from pg_type e where e.typarray = t.oid)
"""

_ENUMS = """
select t.typname as key,
       array_agg(e.enumlabel::text order by e.enumsortorder) as labels
  from pg_type t
  join pg_enum e on e.enumtypid = t.oid
 where t.typnamespace = %(nsp)s
 group by t.typname
"""

_DOMAINS = """
select t.typname as key,
       pg_catalog.format_type(t.typbasetype, t.typtypmod) as base_type,
       t.typnotnull as not_null,
       t.typdefault as default,
       case when t.typcollation <> b.typcollation then co.collname end as collation,
       array(select k.conname || ': ' || pg_catalog.pg_get_constraintdef(k.oid, true)
               from pg_constraint k where k.contypid = t.oid order by k.conname) as constraints
  from pg_type t
  join pg_type b on b.oid = t.typbasetype
  left join pg_collation co on co.oid = t.typcollation
 where t.typnamespace = %(nsp)s and t.typtype = 'd'
"""

# Comments on the schema and on everything inside it, keyed by PostgreSQL's own description
# of the object ("function graphile_worker.add_job(...)", "column ... of table ...").
_COMMENTS = """
select pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid) as key,
       d.description
  from pg_description d
 where (d.classoid = 'pg_namespace'::regclass and d.objoid = %(nsp)s)
    or (d.classoid = 'pg_class'::regclass
        and d.objoid in (select oid from pg_class where relnamespace = %(nsp)s))
    or (d.classoid = 'pg_proc'::regclass
        and d.objoid in (select oid from pg_proc where pronamespace = %(nsp)s))
    or (d.classoid = 'pg_type'::regclass
        and d.objoid in (select oid from pg_type where typnamespace = %(nsp)s))
    or (d.classoid = 'pg_constraint'::regclass
        and d.objoid in (select oid from pg_constraint where connamespace = %(nsp)s))
    or (d.classoid = 'pg_trigger'::regclass
        and d.objoid in (select t.oid from pg_trigger t join pg_class c on c.oid = t.tgrelid
                          where c.relnamespace = %(nsp)s))
    or (d.classoid = 'pg_policy'::regclass
        and d.objoid in (select p.oid from pg_policy p join pg_class c on c.oid = p.polrelid
                          where c.relnamespace = %(nsp)s))
    or (d.classoid = 'pg_rewrite'::regclass
        and d.objoid in (select r.oid from pg_rewrite r join pg_class c on c.oid = r.ev_class
                          where c.relnamespace = %(nsp)s))
"""

_SCHEMA = """
select 'schema' as key, n.nspacl::text[] as acl
  from pg_namespace n
 where n.oid = %(nsp)s
"""

_QUERIES: dict[str, str] = {
    "schema": _SCHEMA,
    "relations": _RELATIONS,
    "columns": _COLUMNS,
    "constraints": _CONSTRAINTS,
    "indexes": _INDEXES,
    "triggers": _TRIGGERS,
    "policies": _POLICIES,
    "rules": _RULES,
    "sequences": _SEQUENCES,
    "functions": _FUNCTIONS,
    "views": _VIEWS,
    "types": _TYPES,
    "enums": _ENUMS,
    "domains": _DOMAINS,
    "comments": _COMMENTS,
}

# Categories whose keys start with the name of the relation the object belongs to, so that
# excluding a relation also excludes its columns, constraints, triggers, policies and rules.
_KEYED_BY_RELATION = frozenset({"columns", "constraints", "triggers", "policies", "rules"})


def catalog_snapshot(
    connection: psycopg.Connection[Any],
    schema: str,
    *,
    exclude: Collection[str] = (),
) -> Snapshot:
    """Describe every object of ``schema``, with the schema's name normalised.

    ``exclude`` names relations, functions or types to leave out (for example objects only
    one side is expected to have). The connection may be in autocommit mode or inside a
    transaction; its ``search_path`` is set to ``pg_catalog`` while the snapshot is taken, so
    that every name from another schema comes out qualified, and then restored.

    Raises:
        LookupError: ``schema`` does not exist.
    """
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            "select n.oid, pg_catalog.quote_ident(n.nspname) as quoted,"
            " current_setting('search_path') as search_path"
            " from pg_namespace n where n.nspname = %(name)s",
            {"name": schema},
        )
        found = cursor.fetchone()
        if found is None:
            raise LookupError(f"schema {schema!r} does not exist")
        cursor.execute("select set_config('search_path', 'pg_catalog', false)")
        try:
            snapshot: Snapshot = {}
            for category, query in _QUERIES.items():
                cursor.execute(query, {"nsp": found["oid"]})
                snapshot[category] = {
                    _normalise(row.pop("key"), found["quoted"]): {
                        name: _normalise(value, found["quoted"]) for name, value in row.items()
                    }
                    for row in cursor.fetchall()
                }
        finally:
            cursor.execute(
                "select set_config('search_path', %(path)s, false)",
                {"path": found["search_path"]},
            )
    for view in snapshot["views"].values():
        view["definition"] = _squash_whitespace(view["definition"])
    return _without(snapshot, exclude) if exclude else snapshot


EXTENSION_OBJECTS = ("_pyworker_migrations", QUEUE_ORDER_INDEX, WORKER_REGISTRY_TABLE)
"""What our default extension steps add to a schema; Node never has these."""


def catalog_without_extensions(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` less :data:`EXTENSION_OBJECTS`: what Node's migrations alone would leave."""
    return _without(snapshot, EXTENSION_OBJECTS)


def ledger_rows(connection: psycopg.Connection[Any], schema: str) -> list[tuple[int, bool]]:
    """The ``(id, breaking)`` rows of ``<schema>.migrations``, in id order."""
    quoted = '"' + schema.replace('"', '""') + '"'
    with connection.cursor() as cursor:
        cursor.execute(f"select id, breaking from {quoted}.migrations order by id")
        return [(row[0], row[1]) for row in cursor.fetchall()]


def diff_catalogs(expected: Snapshot, actual: Snapshot) -> list[str]:
    """List, one line each, how ``actual`` differs from ``expected``.

    An empty list means the two schemas have the same shape. Lines look like
    ``functions add_job(...): volatility: expected 'v', got 's'`` or
    ``columns _private_jobs.flags: missing``.
    """
    lines: list[str] = []
    for category in sorted(expected.keys() | actual.keys()):
        want = expected.get(category, {})
        have = actual.get(category, {})
        for key in sorted(want.keys() | have.keys()):
            if key not in have:
                lines.append(f"{category} {key}: missing (expected {_brief(want[key])})")
            elif key not in want:
                lines.append(f"{category} {key}: unexpected ({_brief(have[key])})")
            else:
                lines.extend(
                    f"{category} {key}: {name}: expected {want[key].get(name)!r}, "
                    f"got {have[key].get(name)!r}"
                    for name in sorted(want[key].keys() | have[key].keys())
                    if want[key].get(name) != have[key].get(name)
                )
    return lines


def _normalise(value: Any, quoted_schema: str) -> Any:
    """Replace the schema's name in SQL text (also inside lists) by :data:`SCHEMA_MARKER`."""
    if isinstance(value, str):
        return value.replace(quoted_schema + ".", SCHEMA_MARKER + ".")
    if isinstance(value, list):
        return [_normalise(item, quoted_schema) for item in value]
    if isinstance(value, Mapping):
        return {key: _normalise(item, quoted_schema) for key, item in value.items()}
    return value


_WHITESPACE = re.compile(r"\s+")


def _squash_whitespace(text: str | None) -> str | None:
    return None if text is None else _WHITESPACE.sub(" ", text).strip()


def _without(snapshot: Snapshot, names: Collection[str]) -> Snapshot:
    """Drop objects called ``names`` (and everything keyed under a dropped relation)."""
    wanted = set(names)

    def keep(category: str, key: str) -> bool:
        if category in _KEYED_BY_RELATION:
            return key.split(".", 1)[0] not in wanted
        if category == "functions":
            return key.split("(", 1)[0] not in wanted
        if category == "indexes":
            return key not in wanted
        if category == "comments":
            return not any(
                re.search(re.escape(f"{SCHEMA_MARKER}.{name}") + r"(?![\w$])", key)
                for name in wanted
            )
        return key not in wanted

    filtered: Snapshot = {
        category: {key: value for key, value in objects.items() if keep(category, key)}
        for category, objects in snapshot.items()
    }
    filtered["indexes"] = {
        key: value for key, value in filtered["indexes"].items() if value["table"] not in wanted
    }
    return filtered


def _brief(properties: Mapping[str, Any]) -> str:
    """A one-line rendering of an object's properties for a missing/unexpected line."""
    text = ", ".join(f"{name}={value!r}" for name, value in properties.items())
    return text if len(text) <= 300 else text[:297] + "..."
