"""Connection URLs: accept the spellings users already have, hand every driver a libpq URL.

People copy URLs from Heroku-style environments (``postgres://``), from libpq
(``postgresql://``) and from SQLAlchemy settings (``postgresql+asyncpg://``,
``postgresql+psycopg://``...). All of them name the same server, so each is rewritten to the
plain ``postgresql://`` form, which libpq, psycopg and asyncpg all understand. Only the scheme
(and SQLAlchemy's asyncpg-only ``ssl=`` option) is touched: the rest of the URL, including
percent-encoded passwords and hosts, is passed on byte for byte.
"""

from __future__ import annotations

import os
import re

from ..errors import ConfigurationError

__all__ = ["DATABASE_URL_VARIABLE", "normalize_url", "resolve_url"]

DATABASE_URL_VARIABLE = "DATABASE_URL"
"""Environment variable read when no URL is given, as Node graphile-worker does."""

# postgres, postgresql, or postgresql+<SQLAlchemy DBAPI name>, e.g. postgresql+psycopg2.
_SCHEME = re.compile(r"(?i)^(?:postgres|postgresql)(?:\+[a-z0-9_]+)?://")

# libpq's sslmode values; SQLAlchemy's asyncpg dialect spells the option ``ssl=``.
_SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_SSL_TRUE = frozenset({"true", "1", "on", "yes"})
_SSL_FALSE = frozenset({"false", "0", "off", "no"})


def resolve_url(url: str | None) -> str:
    """Return the libpq URL to connect to: ``url``, else ``$DATABASE_URL``, normalised.

    Raises:
        ConfigurationError: neither is set, or the URL is not a PostgreSQL URL.
    """
    if url is None:
        url = os.environ.get(DATABASE_URL_VARIABLE) or None
        if url is None:
            raise ConfigurationError(
                f"no database URL given and ${DATABASE_URL_VARIABLE} is not set; pass a URL "
                f"such as 'postgresql://user:password@localhost:5432/mydb' or set "
                f"{DATABASE_URL_VARIABLE}"
            )
    return normalize_url(url)


def normalize_url(url: str) -> str:
    """Rewrite any accepted spelling of a PostgreSQL URL to ``postgresql://...``.

    Raises:
        ConfigurationError: ``url`` is not a string starting with one of the accepted schemes.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"database URL must be a string, not {type(url).__name__}")
    match = _SCHEME.match(url)
    if match is None:
        raise ConfigurationError(
            f"unsupported database URL {_redact(url)!r}; expected one starting with "
            f"postgresql://, postgres://, postgresql+asyncpg:// or postgresql+psycopg://"
        )
    rest = url[match.end() :]
    base, question, query = rest.partition("?")
    if question:
        query = _translate_query(query)
    return "postgresql://" + base + ("?" + query if query else "")


def _translate_query(query: str) -> str:
    """Turn SQLAlchemy/asyncpg's ``ssl=<mode>`` into libpq's ``sslmode=<mode>``.

    Other options are left exactly as written: re-encoding them could change their meaning
    (libpq does not decode ``+`` as a space, for instance).
    """
    items = [item for item in query.split("&") if item]
    if any(item.startswith("sslmode=") for item in items):
        return "&".join(item for item in items if not item.startswith("ssl="))
    translated = []
    for item in items:
        key, _, value = item.partition("=")
        if key == "ssl":
            lowered = value.lower()
            if lowered in _SSL_MODES:
                item = "sslmode=" + lowered
            elif lowered in _SSL_TRUE:
                item = "sslmode=require"
            elif lowered in _SSL_FALSE:
                item = "sslmode=disable"
            else:
                raise ConfigurationError(
                    f"unsupported ssl={value!r} in the database URL; use sslmode= with one "
                    f"of {', '.join(sorted(_SSL_MODES))}"
                )
        translated.append(item)
    return "&".join(translated)


def _redact(url: str) -> str:
    """Hide a password in ``url`` so that error messages can show the rest of it."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
