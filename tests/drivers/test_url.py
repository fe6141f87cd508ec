"""Connection URLs: every accepted spelling becomes one libpq URL; bad ones fail early."""

from __future__ import annotations

import pytest

from graphile_worker.drivers._url import normalize_url, resolve_url
from graphile_worker.errors import ConfigurationError


@pytest.mark.parametrize(
    "url",
    [
        "postgres://user:pw@db.example:5432/app",
        "postgresql://user:pw@db.example:5432/app",
        "postgresql+asyncpg://user:pw@db.example:5432/app",
        "postgresql+psycopg://user:pw@db.example:5432/app",
        "postgresql+psycopg2://user:pw@db.example:5432/app",
        "PostgreSQL+AsyncPG://user:pw@db.example:5432/app",
    ],
)
def test_schemes_are_normalised(url: str) -> None:
    assert normalize_url(url) == "postgresql://user:pw@db.example:5432/app"


def test_rest_of_the_url_is_kept_byte_for_byte() -> None:
    url = "postgres://us%40er:p%2Fw%3F@[::1]:6543/my%20db?options=-c%20search_path%3Dx+y&x=1"
    assert normalize_url(url) == "postgresql" + url[len("postgres") :]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ssl=require", "sslmode=require"),
        ("ssl=verify-full&application_name=a", "sslmode=verify-full&application_name=a"),
        ("ssl=true", "sslmode=require"),
        ("ssl=false", "sslmode=disable"),
        ("sslmode=prefer&ssl=require", "sslmode=prefer"),
        ("application_name=a", "application_name=a"),
    ],
)
def test_sqlalchemy_ssl_option_becomes_sslmode(query: str, expected: str) -> None:
    url = normalize_url(f"postgresql+asyncpg://localhost/app?{query}")
    assert url == f"postgresql://localhost/app?{expected}"


def test_unknown_ssl_value_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="sslmode"):
        normalize_url("postgresql://localhost/app?ssl=maybe")


@pytest.mark.parametrize(
    "url",
    ["mysql://localhost/app", "host=localhost dbname=app", "", "postgresql:/localhost/app"],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="postgresql://"):
        normalize_url(url)


def test_password_is_hidden_in_errors() -> None:
    with pytest.raises(ConfigurationError) as caught:
        normalize_url("mysql://user:secret@localhost/app")
    assert "secret" not in str(caught.value)


def test_none_reads_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://from-env/app")
    assert resolve_url(None) == "postgresql://from-env/app"
    assert resolve_url("postgresql://given/app") == "postgresql://given/app"


@pytest.mark.parametrize("value", [None, ""])
def test_no_url_anywhere(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", value)
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        resolve_url(None)
