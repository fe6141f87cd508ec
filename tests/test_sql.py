"""Identifier quoting and placeholder translation: the pure helpers under every query."""

from __future__ import annotations

import pytest

from graphile_worker.errors import ConfigurationError, InvalidSchemaNameError
from graphile_worker.sql import (
    quote_identifier,
    render,
    to_numbered,
    to_pyformat,
    validate_schema_name,
)


class TestSchemaNames:
    @pytest.mark.parametrize(
        ("name", "quoted"),
        [
            ("graphile_worker", '"graphile_worker"'),
            ("Custom Jobs", '"Custom Jobs"'),
            ('we"ird', '"we""ird"'),
            ("ünïcode", '"ünïcode"'),
            ("a" * 63, '"' + "a" * 63 + '"'),
        ],
    )
    def test_valid_names_are_quoted(self, name: str, quoted: str) -> None:
        assert quote_identifier(name) == quoted

    @pytest.mark.parametrize(
        "name",
        ["", " leading", "trailing ", "nul\x00byte", "a" * 64, "é" * 32, "pg_jobs", "PG_x"],
    )
    def test_invalid_names_are_refused(self, name: str) -> None:
        with pytest.raises(InvalidSchemaNameError):
            validate_schema_name(name)
        with pytest.raises(InvalidSchemaNameError):
            quote_identifier(name)

    def test_non_string_is_refused(self) -> None:
        with pytest.raises(InvalidSchemaNameError, match="must be a string"):
            validate_schema_name(42)  # type: ignore[arg-type]

    def test_schema_errors_are_configuration_errors_and_value_errors(self) -> None:
        assert issubclass(InvalidSchemaNameError, ConfigurationError)
        assert issubclass(InvalidSchemaNameError, ValueError)


class TestRender:
    def test_fills_every_schema_marker_with_the_quoted_name(self) -> None:
        template = "select * from {schema}.jobs join {schema}.tasks using (id) where x = '{}'"
        assert render(template, "My Jobs") == (
            'select * from "My Jobs".jobs join "My Jobs".tasks using (id) where x = \'{}\''
        )

    def test_refuses_a_bad_schema_before_producing_sql(self) -> None:
        with pytest.raises(InvalidSchemaNameError):
            render("select 1 from {schema}.jobs", "")


class TestPlaceholders:
    def test_numbered_reuses_numbers_for_repeated_names(self) -> None:
        sql, names = to_numbered("select :a, :b, :a, CAST(:c AS json)")
        assert sql == "select $1, $2, $1, CAST($3 AS json)"
        assert names == ("a", "b", "c")

    def test_casts_and_dollar_quotes_are_left_alone(self) -> None:
        sql, names = to_numbered("select :x::int, now()::text, $$ :: $$")
        assert sql == "select $1::int, now()::text, $$ :: $$"
        assert names == ("x",)

    def test_pyformat_escapes_percent_signs(self) -> None:
        assert to_pyformat("select 5 % 2, :value::text") == "select 5 %% 2, %(value)s::text"

    def test_no_placeholders(self) -> None:
        assert to_numbered("select 1") == ("select 1", ())
        assert to_pyformat("select 1") == "select 1"
