"""SQL text and the small pure helpers every query shares.

Every statement in ``graphile_worker.sql`` is written once, with ``:name`` placeholders and a
``{schema}`` marker for the (already quoted) schema name. :func:`render` fills in the schema
and :func:`to_numbered` / :func:`to_pyformat` translate the placeholders for asyncpg and
psycopg; SQLAlchemy's ``text()`` understands ``:name`` as it is. Each translation is cached,
so the per-call cost on the hot path is a dictionary lookup.

Write casts as ``CAST(:x AS json)``, never ``:x::json``: the translators leave ``::`` alone,
but SQLAlchemy's bind parser does not.

The operations in the submodules are generators of statements (``_statement``), run by
``run_sync`` or ``run_async`` on any executor with the five calls; this package never
imports the drivers that run them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..errors import InvalidSchemaNameError

__all__ = [
    "DEFAULT_SCHEMA",
    "quote_identifier",
    "render",
    "to_numbered",
    "to_pyformat",
    "validate_schema_name",
]

DEFAULT_SCHEMA = "graphile_worker"

# PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes (63 by default); a
# truncated schema name would silently point at a different schema, so we refuse it.
_MAX_IDENTIFIER_BYTES = 63
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


def validate_schema_name(name: str) -> str:
    """Return ``name`` if it can be used as a schema name, else raise.

    Any non-empty string of at most 63 bytes without a NUL character is a valid quoted
    identifier in PostgreSQL; we also refuse leading/trailing whitespace and names starting
    with ``pg_`` (reserved for system schemas), which are always mistakes here.
    """
    if not isinstance(name, str):
        raise InvalidSchemaNameError(f"schema name must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidSchemaNameError("schema name must not be empty")
    if "\x00" in name:
        raise InvalidSchemaNameError("schema name must not contain a NUL character")
    if name != name.strip():
        raise InvalidSchemaNameError(f"schema name {name!r} has leading or trailing whitespace")
    if len(name.encode("utf-8")) > _MAX_IDENTIFIER_BYTES:
        raise InvalidSchemaNameError(
            f"schema name {name!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes"
        )
    if name.lower().startswith("pg_"):
        raise InvalidSchemaNameError(
            f"schema name {name!r} starts with 'pg_', which PostgreSQL reserves"
        )
    return name


@lru_cache(maxsize=64)
def quote_identifier(name: str) -> str:
    """Quote ``name`` as a PostgreSQL identifier after validating it."""
    validate_schema_name(name)
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=1024)
def render(template: str, schema: str) -> str:
    """Fill the ``{schema}`` marker of ``template`` with the quoted schema name."""
    return template.replace("{schema}", quote_identifier(schema))


@lru_cache(maxsize=1024)
def to_numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """Translate ``:name`` placeholders to ``$1, $2, ...`` (asyncpg).

    Returns the new text and the parameter names in positional order; a name used twice
    keeps one number.
    """
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, sql), tuple(names)


@lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """Translate ``:name`` placeholders to ``%(name)s`` (psycopg), escaping literal ``%``."""
    escaped = sql.replace("%", "%%")
    return _PLACEHOLDER.sub(r"%(\1)s", escaped)
