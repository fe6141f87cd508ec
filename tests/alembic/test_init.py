"""``graphile-worker alembic init`` and the env.py hook behind a plain ``alembic revision``.

Projects are written by the command itself into ``tmp_path`` and driven the way a user
drives them: through Alembic's own command line, in-process (``alembic.config.main``, with
the same arguments a shell passes) where speed matters and as a subprocess where the exact
output does. In-process runs turn off env.py's ``fileConfig`` call, which would otherwise
replace the test session's logging set-up.
"""

from __future__ import annotations

import configparser
import logging.config
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.config import main as alembic_main
from alembic.script import ScriptDirectory
from click.testing import CliRunner, Result

from graphile_worker import alembic_support
from graphile_worker.alembic_support import (
    BRANCH_LABEL,
    HEAD_REVISION,
    SCHEMA_OPTION,
    VERSION_LOCATION,
    LineageRefusalError,
)
from graphile_worker.cli import _alembic as init_module
from graphile_worker.cli import main as graphile_worker_main
from graphile_worker.migrations import EXTENSION_STEPS, LATEST_MIGRATION
from graphile_worker.sql.recovery import WORKER_REGISTRY_TABLE

from .project import run_shell

LINEAGE_FILES = Path(alembic_support.__file__).parent / "alembic" / "versions"

Alembic = Callable[..., None]


def graphile_worker(*arguments: str, expect: int = 0) -> Result:
    result = CliRunner().invoke(graphile_worker_main, list(arguments))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture
def alembic(monkeypatch: pytest.MonkeyPatch, empty_database_url: str) -> Alembic:
    """``alembic("upgrade", "heads", cwd=project)``: Alembic's command line, in-process."""
    monkeypatch.setattr(logging.config, "fileConfig", lambda *args, **kwargs: None)
    monkeypatch.setenv("DATABASE_URL", empty_database_url)

    def run(*arguments: str, cwd: Path) -> None:
        monkeypatch.chdir(cwd)
        alembic_main(list(arguments), prog="alembic")

    return run


def own_scripts(project: Path) -> dict[str, Any]:
    """The application's revisions: id -> module, read from its versions folder."""
    script = ScriptDirectory.from_config(Config(str(project / "alembic.ini")))
    versions = (project / "alembic" / "versions").resolve()
    return {
        rev.revision: rev.module
        for rev in script.walk_revisions()
        if Path(rev.path).resolve().parent == versions
    }


def alembic_versions(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as connection:
        return {row[0] for row in connection.execute("select version_num from alembic_version")}


def schema_state(url: str, schema: str) -> tuple[list[int], list[str], bool]:
    """The ledger's ids, the extension steps applied, and whether the registry exists."""
    quoted = '"' + schema.replace('"', '""') + '"'
    with psycopg.connect(url, autocommit=True) as connection:
        ids = [row[0] for row in connection.execute(f"select id from {quoted}.migrations")]
        steps = [
            row[0] for row in connection.execute(f"select id from {quoted}._pyworker_migrations")
        ]
        registry = connection.execute(
            "select to_regclass(%s) is not null", (f"{quoted}.{WORKER_REGISTRY_TABLE}",)
        ).fetchone()
    return sorted(ids), sorted(steps), bool(registry and registry[0])


NODE_HEAD = f"graphile_worker_{LATEST_MIGRATION:06d}"

FULL_SCHEMA = (
    list(range(1, LATEST_MIGRATION + 1)),
    sorted(step.id for step in EXTENSION_STEPS),
    True,
)


# ------------------------------------------------------------------------- new projects


def test_a_new_project_works_first_time(
    tmp_path: Path, alembic: Alembic, empty_database_url: str
) -> None:
    project = tmp_path / "app"
    output = graphile_worker("alembic", "init", str(project)).output
    assert "alembic upgrade heads" in output
    assert sorted(str(path.relative_to(project)) for path in project.rglob("*")) == [
        "alembic",
        "alembic.ini",
        "alembic/env.py",
        "alembic/script.py.mako",
        "alembic/versions",
    ]
    lineage_before = sorted(LINEAGE_FILES.iterdir())

    alembic("upgrade", "heads", cwd=project)
    assert schema_state(empty_database_url, "graphile_worker") == FULL_SCHEMA
    # The first revision, without --autogenerate: the case Alembic alone gets wrong.
    alembic("revision", "-m", "first", cwd=project)
    alembic("upgrade", "heads", cwd=project)
    # The user points target_metadata at a model; autogenerate sees it and nothing of ours.
    env = project / "alembic" / "env.py"
    env.write_text(
        env.read_text().replace(
            "target_metadata = MetaData()\n",
            "target_metadata = MetaData()\n"
            "from sqlalchemy import Column, Integer, Table\n"
            'Table("users", target_metadata, Column("id", Integer, primary_key=True))\n',
        )
    )
    alembic("revision", "--autogenerate", "-m", "create users", cwd=project)
    alembic("upgrade", "heads", cwd=project)

    revisions = own_scripts(project)
    (first,) = [rev for rev, module in revisions.items() if module.down_revision is None]
    (second,) = [rev for rev, module in revisions.items() if module.down_revision == first]
    assert revisions[first].branch_labels == ("app",)
    source = Path(str(revisions[second].__file__)).read_text()
    assert 'op.create_table(\n        "users"' in source or "op.create_table('users'" in source
    assert "graphile_worker" not in source
    assert alembic_versions(empty_database_url) == {second, HEAD_REVISION}
    # Nothing was written into the package's own lineage.
    assert sorted(LINEAGE_FILES.iterdir()) == lineage_before

    alembic("downgrade", "app@-1", cwd=project)
    assert alembic_versions(empty_database_url) == {first, HEAD_REVISION}


def test_async_project_with_a_custom_schema_and_label(
    tmp_path: Path, alembic: Alembic, empty_database_url: str
) -> None:
    project = tmp_path / "svc"
    graphile_worker(
        "alembic", "init", str(project), "--async", "--schema", "App Jobs", "--branch-label", "svc"
    )
    assert f"{SCHEMA_OPTION} = App Jobs" in (project / "alembic.ini").read_text()

    alembic("upgrade", "heads", cwd=project)
    alembic("revision", "-m", "first", cwd=project)

    assert schema_state(empty_database_url, "App Jobs") == FULL_SCHEMA
    (module,) = own_scripts(project).values()
    assert module.branch_labels == ("svc",)
    assert "asyncpg" in (project / "alembic" / "env.py").read_text()


def test_the_hook_keeps_what_the_user_spelled_out(
    tmp_path: Path, alembic: Alembic, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "app"
    graphile_worker("alembic", "init", str(project))
    # The README's recipe for a project without the hook, verbatim: the hook leaves it alone.
    alembic(
        *("revision", "--head", "base", "--branch-label", "app"),
        *("--version-path", "alembic/versions", "-m", "first"),
        cwd=project,
    )
    # A second branch of the user's own, spelled out too.
    alembic(
        *("revision", "-m", "reports", "--head", "base", "--branch-label", "reports"),
        *("--version-path", str(project / "alembic" / "versions")),
        cwd=project,
    )
    labels = sorted(module.branch_labels for module in own_scripts(project).values())
    assert labels == [("app",), ("reports",)]

    # Now "the head of your branch" is ambiguous, and the hook says so.
    config = Config(str(project / "alembic.ini"))
    with pytest.raises(LineageRefusalError, match="several heads"):
        command.revision(config, "third")
    command.revision(config, "third", head="reports@head")
    assert len(own_scripts(project)) == 3

    # The README's way to render the application's branch alone, offline.
    capsys.readouterr()
    alembic("upgrade", "app@head", "--sql", cwd=project)
    rendered = capsys.readouterr().out
    assert "INSERT INTO alembic_version" in rendered
    assert "graphile_worker" not in rendered


# ------------------------------------------------------------------ existing projects


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    project = tmp_path / "app"
    graphile_worker("alembic", "init", str(project))
    (project / "alembic" / "env.py").write_text("# mine\n")

    output = graphile_worker("alembic", "init", str(project)).output
    assert output.startswith("An Alembic project already exists here")
    assert "nothing was written" in output
    assert (project / "alembic" / "env.py").read_text() == "# mine\n"

    (project / "alembic.ini").unlink()
    refused = graphile_worker("alembic", "init", str(project), expect=1)
    assert refused.output == (
        f"Error: alembic/env.py and alembic/script.py.mako already exist in {project}; "
        "pass --force to overwrite\n"
    )
    assert not (project / "alembic.ini").exists()

    graphile_worker("alembic", "init", str(project), "--force")
    assert "make_process_revision_directives('app')" in (project / "alembic" / "env.py").read_text()


def _apply_instructions(project: Path, printed: str) -> None:
    """Do what the printed instructions say, as a user would, to Alembic's own template."""
    settings_block = printed.split("1. ")[1].split("2. ")[0]
    settings = {}
    for line in settings_block.splitlines():
        key, separator, value = line.partition(" = ")
        if separator:
            settings[key.strip()] = value.strip()
    parser = configparser.RawConfigParser()
    parser.read(project / "alembic.ini")
    for key, value in settings.items():
        parser.set("alembic", key, value)
    with (project / "alembic.ini").open("w") as ini:
        parser.write(ini)

    env_block = printed.split("2. In env.py:")[1].split("If you pass")[0]
    lines = [line[4:] for line in env_block.splitlines()]
    marker = next(line for line in lines if line.startswith("# in every context.configure"))
    imports = "\n".join(lines[: lines.index(marker)])
    keywords = " ".join(line.strip() for line in lines if line.startswith("    ") and "=" in line)
    keywords = keywords.rstrip(",")
    env = project / "alembic" / "env.py"
    text = env.read_text()
    text = text.replace("config = context.config\n", f"config = context.config\n{imports}\n")
    text = text.replace(
        "target_metadata=target_metadata", f"target_metadata=target_metadata, {keywords}"
    )
    env.write_text(text)


def test_instructions_for_an_existing_project_work(
    tmp_path: Path, alembic: Alembic, empty_database_url: str
) -> None:
    project = tmp_path / "existing"
    project.mkdir()
    config = Config(str(project / "alembic.ini"))
    command.init(config, str(project / "alembic"))
    parser = configparser.RawConfigParser()
    parser.read(project / "alembic.ini")
    url = empty_database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    parser.set("alembic", "sqlalchemy.url", url.replace("%", "%%"))
    with (project / "alembic.ini").open("w") as ini:
        parser.write(ini)
    before = (project / "alembic.ini").read_text()

    printed = graphile_worker("alembic", "init", str(project), "--schema", "jobs").output

    assert (project / "alembic.ini").read_text() == before
    assert f"version_locations = {project}/alembic/versions {VERSION_LOCATION}" in printed
    _apply_instructions(project, printed)
    alembic("upgrade", "heads", cwd=project)
    alembic("revision", "-m", "first", cwd=project)
    assert schema_state(empty_database_url, "jobs") == FULL_SCHEMA
    assert alembic_versions(empty_database_url) == {HEAD_REVISION}
    (module,) = own_scripts(project).values()
    assert module.branch_labels == ("app",)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--branch-label", "my-app"], "is not a usable branch label"),
        (["--branch-label", "heads"], "is reserved"),
        (["--branch-label", BRANCH_LABEL], "is reserved"),
    ],
)
def test_bad_branch_labels_are_usage_errors(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    result = graphile_worker("alembic", "init", str(tmp_path / "x"), *arguments, expect=2)
    assert message in result.output
    assert not (tmp_path / "x").exists()


def test_bad_schema_is_refused_before_writing(tmp_path: Path) -> None:
    result = graphile_worker("alembic", "init", str(tmp_path / "x"), "--schema", "pg_x", expect=1)
    assert result.output.startswith("Error: ")
    assert not (tmp_path / "x").exists()


def test_command_line_mirrors_the_support_module() -> None:
    """The CLI spells these out to keep `graphile-worker --help` free of Alembic imports."""
    assert init_module._VERSION_LOCATION == VERSION_LOCATION
    assert init_module._SCHEMA_OPTION == SCHEMA_OPTION
    assert init_module._OUR_BRANCH_LABEL == BRANCH_LABEL


# --------------------------------------------------------------------- refusals


def test_downgrade_into_our_branch_is_one_line_and_rolled_back(
    tmp_path: Path, alembic: Alembic, empty_database_url: str
) -> None:
    project = tmp_path / "app"
    graphile_worker("alembic", "init", str(project))
    alembic("upgrade", "heads", cwd=project)

    completed = run_shell("alembic downgrade -1", project, empty_database_url)

    message = (
        f"cannot downgrade graphile-worker revision '{HEAD_REVISION}': its migrations only go "
        "forward (Node graphile-worker has no down migrations). Downgrade your own branch "
        "instead, e.g. `alembic downgrade <your branch label>@-1`; a bare `-1` or `base` can "
        "reach this branch. To remove graphile-worker, drop its schema (CASCADE) and delete "
        "the 'graphile_worker_*' rows from your alembic_version table."
    )
    doc = "graphile-worker extension steps up to 0002: queue-order index and worker registry."
    assert completed.returncode == 255
    assert completed.stdout == f"FAILED: {message}\n"
    assert completed.stderr.splitlines() == [
        "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.",
        "INFO  [alembic.runtime.migration] Will assume transactional DDL.",
        f"INFO  [alembic.runtime.migration] Running downgrade {HEAD_REVISION} -> {NODE_HEAD}, {doc}",
        f"ERROR [alembic.util.messaging] {message}",
    ]
    assert alembic_versions(empty_database_url) == {HEAD_REVISION}
    assert schema_state(empty_database_url, "graphile_worker") == FULL_SCHEMA
