"""Where the lineage reads its schema name from: ``-x``, then the config file, else the default."""

from __future__ import annotations

import inspect
from argparse import Namespace
from pathlib import Path

import pytest
from alembic.config import Config

from graphile_worker.alembic_support import SCHEMA_OPTION, configured_schema
from graphile_worker.errors import InvalidSchemaNameError


def _config(main_option: str | None = None, *x_arguments: str) -> Config:
    config = Config(cmd_opts=Namespace(x=list(x_arguments)) if x_arguments else None)
    if main_option is not None:
        config.set_main_option(SCHEMA_OPTION, main_option)
    return config


def test_default_schema_without_configuration() -> None:
    assert configured_schema(None) == "graphile_worker"
    assert configured_schema(Config()) == "graphile_worker"
    assert configured_schema(_config("  ")) == "graphile_worker"


def test_main_option() -> None:
    assert configured_schema(_config("my_jobs")) == "my_jobs"


def test_command_line_wins_over_the_config_file() -> None:
    config = _config("from_ini", "dbname=other", f"{SCHEMA_OPTION}=From CLI")
    assert configured_schema(config) == "From CLI"


def test_unrelated_x_arguments_are_ignored() -> None:
    assert configured_schema(_config("from_ini", "verbose", "dbname=x")) == "from_ini"


def test_ini_file(tmp_path: Path) -> None:
    ini = tmp_path / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = migrations\n{SCHEMA_OPTION} = ini_jobs\n")
    assert configured_schema(Config(str(ini))) == "ini_jobs"


def test_pyproject_toml(tmp_path: Path) -> None:
    if "toml_file" not in inspect.signature(Config).parameters:
        pytest.skip("pyproject.toml configuration needs Alembic 1.16 or newer")
    toml = tmp_path / "pyproject.toml"
    toml.write_text(
        f'[tool.alembic]\nscript_location = "migrations"\n{SCHEMA_OPTION} = "toml_jobs"\n'
    )
    assert configured_schema(Config(toml_file=str(toml))) == "toml_jobs"


@pytest.mark.parametrize("bad", ["pg_jobs", "PG_Temp", "x" * 64])
def test_invalid_names_are_refused_before_any_sql(bad: str) -> None:
    with pytest.raises(InvalidSchemaNameError):
        configured_schema(_config(None, f"{SCHEMA_OPTION}={bad}"))
