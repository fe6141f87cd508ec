"""The README's Alembic steps, run verbatim in a fresh directory against a real database.

The commands are read from README.md, between ``<!-- alembic-steps:start -->`` and
``<!-- alembic-steps:end -->``, and each line is run by a shell, as a user pasting them
would, with this environment's ``graphile-worker`` and ``alembic`` first on ``PATH`` and
``DATABASE_URL`` naming an empty database. Whatever the steps become, they must succeed
first time, install the whole schema, and leave the application's revisions in its own
folder on its own branch.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from graphile_worker import alembic_support
from graphile_worker.alembic_support import BRANCH_LABEL, HEAD_REVISION
from graphile_worker.migrations import EXTENSION_STEPS, LATEST_MIGRATION

from .project import run_shell

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- alembic-steps:start -->", "<!-- alembic-steps:end -->"
LINEAGE_FILES = Path(alembic_support.__file__).parent / "alembic" / "versions"


def readme_steps(text: str) -> list[str]:
    """The command lines of the fenced shell block between the markers, comments left out."""
    if START not in text or END not in text:
        pytest.fail(
            f"README.md has no {START} ... {END} block around the Alembic steps",
            pytrace=False,
        )
    block = text.split(START, 1)[1].split(END, 1)[0]
    fenced = re.search(r"```(?:sh|bash|console)\n(.*?)```", block, re.DOTALL)
    assert fenced is not None, "the Alembic steps block holds no ```sh fence"
    lines = [line.strip() for line in fenced.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_readme_alembic_steps_work_first_time(tmp_path: Path, empty_database_url: str) -> None:
    steps = readme_steps(README.read_text())
    assert steps[0].startswith("graphile-worker alembic init")
    assert any(step.startswith("alembic revision") for step in steps)
    lineage_before = sorted(LINEAGE_FILES.iterdir())

    for step in steps:
        completed = run_shell(step, tmp_path, empty_database_url)
        output = f"$ {step}\n{completed.stdout}{completed.stderr}"
        assert completed.returncode == 0, output
        assert "Traceback" not in output, output

    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        ledger = [row[0] for row in connection.execute("select id from graphile_worker.migrations")]
        steps_applied = {
            row[0]
            for row in connection.execute("select id from graphile_worker._pyworker_migrations")
        }
        versions = {row[0] for row in connection.execute("select version_num from alembic_version")}
    assert sorted(ledger) == list(range(1, LATEST_MIGRATION + 1))
    assert steps_applied == {step.id for step in EXTENSION_STEPS}

    # The application's revisions: in its own folder, on one branch of its own, applied.
    script = ScriptDirectory.from_config(Config(str(tmp_path / "alembic.ini")))
    folder = (tmp_path / "alembic" / "versions").resolve()
    own = [rev for rev in script.walk_revisions() if Path(rev.path).resolve().parent == folder]
    assert own, "the steps wrote no revision of the application's"
    (base,) = [rev for rev in own if rev.down_revision is None]
    assert base.module.branch_labels
    assert BRANCH_LABEL not in base.branch_labels
    (head,) = [rev for rev in own if rev.is_head]
    assert versions == {head.revision, HEAD_REVISION}
    assert sorted(LINEAGE_FILES.iterdir()) == lineage_before
