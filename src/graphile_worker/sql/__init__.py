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

import itertools
import re
from functools import lru_cache

from .._validate import check_encodable
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
_DOLLAR_QUOTE_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
# What _PLACEHOLDER (and SQLAlchemy's text(), whose rule also takes ":1" and unescapes
# "\:") would find inside a quoted schema name; see validate_schema_name.
_COLON_PROBLEM = re.compile(r"(?<![:\w]):\w+|\\:")


def validate_schema_name(name: str) -> str:
    """Return ``name`` if it can be used as a schema name, else raise.

    Any non-empty string of at most 63 bytes without a NUL character is a valid quoted
    identifier in PostgreSQL, and every such name works here (quoted, and with the
    migrations' dollar quotes kept apart from it by :func:`render`) except:

    * leading or trailing whitespace and names starting with ``pg_`` (reserved for system
      schemas), which are always mistakes;
    * an unpaired surrogate, which UTF-8 cannot encode;
    * a colon that reads as a ``:name`` placeholder: one before a letter, digit or
      underscore, unless it follows a letter, digit, underscore or colon (``a:b`` is fine,
      ``:b`` and ``a :b`` are not); and a backslash before a colon, which SQLAlchemy's
      ``text()`` removes. The placeholder translators, ours and SQLAlchemy's, cannot tell
      a quoted identifier from the rest of a statement.

    Raises:
        InvalidSchemaNameError: the name breaks one of those rules (the message says which).
    """
    if not isinstance(name, str):
        raise InvalidSchemaNameError(f"schema name must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidSchemaNameError("schema name must not be empty")
    if "\x00" in name:
        raise InvalidSchemaNameError("schema name must not contain a NUL character")
    if name != name.strip():
        raise InvalidSchemaNameError(f"schema name {name!r} has leading or trailing whitespace")
    check_encodable("schema name", name, error=InvalidSchemaNameError)
    if len(name.encode("utf-8")) > _MAX_IDENTIFIER_BYTES:
        raise InvalidSchemaNameError(
            f"schema name {name!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes"
        )
    if name.lower().startswith("pg_"):
        raise InvalidSchemaNameError(
            f"schema name {name!r} starts with 'pg_', which PostgreSQL reserves"
        )
    colon = _COLON_PROBLEM.search(name)
    if colon is not None:
        if colon.group() == "\\:":
            why = "SQLAlchemy reads a backslash before a colon as an escape and drops it"
        else:
            why = (
                "statements would read it as a :name parameter placeholder (a colon right "
                "after a letter, digit or underscore is fine)"
            )
        raise InvalidSchemaNameError(
            f"schema name {name!r} contains {colon.group()!r}: {why}; choose another name"
        )
    return name


@lru_cache(maxsize=64)
def quote_identifier(name: str) -> str:
    """Quote ``name`` as a PostgreSQL identifier after validating it."""
    validate_schema_name(name)
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=1024)
def render(template: str, schema: str) -> str:
    """Fill the ``{schema}`` marker of ``template`` with the quoted schema name.

    For a name containing ``$``, the template's dollar-quote tags are first renamed where
    needed, so that the name cannot end a dollar-quoted function body early.
    """
    if "$" in schema:
        template = _dollar_quotes_apart_from(template, schema)
    return template.replace("{schema}", quote_identifier(schema))


def _dollar_quotes_apart_from(template: str, name: str) -> str:
    """``template`` with its dollar-quote tags renamed, if need be, to ones absent from ``name``.

    The migrations' function bodies are dollar-quoted (``$$ ... $$``, ``$body$ ... $body$``,
    as in Node) and name the schema inside. A body ends at the first copy of its opening
    tag, so a name containing that tag (``a$$b``) would end it early: the script fails
    half-way with "unterminated quoted identifier". A tag has no ``"``, so in the rendered
    text a copy of one can only come from inside the quoted name, never straddle its
    quotes; tags absent from the name (and from the template, to keep nesting intact) are
    therefore safe. Templates use ``$`` only in such tags and in ``$1``-style parameters,
    which the pattern does not match. Names without the tags keep Node's text exactly.
    """
    tags = set(_DOLLAR_QUOTE_TAG.findall(template))
    if not any(tag in name for tag in tags):
        return template
    suffix = next(
        suffix
        for suffix in (f"_gw{attempt}" for attempt in itertools.count())
        if not any(f"{tag[:-1]}{suffix}$" in text for tag in tags for text in (name, template))
    )
    renamed = {tag: f"{tag[:-1]}{suffix}$" for tag in tags}
    return _DOLLAR_QUOTE_TAG.sub(lambda match: renamed[match.group()], template)


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
