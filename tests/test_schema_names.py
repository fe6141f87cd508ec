"""Awkward schema names: each one either works end to end or is refused before any SQL runs.

PostgreSQL takes almost anything as a quoted identifier. The migrations put the schema name
inside dollar-quoted function bodies and the statements carry ``:name`` placeholders, so a
name may clash with either; the names that can are handled (dollar quotes) or refused with
a message naming the problem (placeholders). Every name that passes validation is migrated,
given a job and run by a worker on the real server, on every runtime and driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import psycopg
import pytest
from psycopg import sql

from graphile_worker.errors import InvalidSchemaNameError
from graphile_worker.migrations import LATEST_MIGRATION, migrate
from graphile_worker.sql import quote_identifier, render, validate_schema_name
from graphile_worker.task import task
from graphile_worker.utils import WorkerUtils
from graphile_worker.worker import Worker, WorkerOptions

if TYPE_CHECKING:
    from graphile_worker.drivers import DatabaseDriver

WORKING_NAMES: dict[str, str] = {
    "single-quote": "o'brien",
    "double-quotes": 'say "hi"',
    "dollar-dollar": "a$$b",
    "dollar-body-tag": "x$body$y",
    "only-a-tag": "$body$",
    "dollar-tags-and-renamed-tag": "$$ $_gw0$ $body_gw0$",
    "ends-in-dollar": "jobs$",
    "starts-with-dollar": "$jobs",
    "space": "my jobs",
    "unicode": "tâches_日本",
    "emoji": "jobs 🚀",
    "63-bytes": "j" * 63,
    "63-utf8-bytes": "é" * 31 + "j",
    "uppercase": "GraphileJobs",
    "percent": "100%_sure %s %(x)s",
    "colon-after-letter": "a:b",
    "double-colon": "a::b",
    "sql-comment-marks": "x--y/*z*/",
    "semicolon": "a;b",
    "dot": "a.b",
    "backslash": "back\\slash",
    "newline": "two\nlines",
    "braces": "{schema}",
    "numbered-parameter": "$1",
    "question-mark": "why?",
}

REFUSED_NAMES: dict[str, tuple[str, str]] = {
    "empty": ("", "must not be empty"),
    "nul": ("a\x00b", "NUL character"),
    "64-bytes": ("j" * 64, "longer than 63 bytes"),
    "64-utf8-bytes": ("é" * 32, "longer than 63 bytes"),
    "pg-prefix": ("pg_jobs", "starts with 'pg_'"),
    "leading-space": (" jobs", "leading or trailing whitespace"),
    "trailing-newline": ("jobs\n", "leading or trailing whitespace"),
    "lone-surrogate": ("jobs\ud800", "unpaired surrogate"),
    "leading-placeholder": (":jobs", "':jobs'"),
    "placeholder-after-space": ("my :id", "':id'"),
    "placeholder-after-quote": ('a":b', "':b'"),
    "numbered-placeholder": ("a-:1", "':1'"),
    "escaped-colon": ("a\\:b", "backslash before a colon"),
}


class TestValidation:
    @pytest.mark.parametrize("name", WORKING_NAMES.values(), ids=WORKING_NAMES.keys())
    def test_accepted(self, name: str) -> None:
        assert validate_schema_name(name) == name
        assert quote_identifier(name) == '"' + name.replace('"', '""') + '"'

    @pytest.mark.parametrize(("name", "message"), REFUSED_NAMES.values(), ids=REFUSED_NAMES.keys())
    def test_refused_with_the_reason(self, name: str, message: str) -> None:
        with pytest.raises(InvalidSchemaNameError, match="schema name") as caught:
            validate_schema_name(name)
        assert message in str(caught.value)
        with pytest.raises(InvalidSchemaNameError):
            WorkerOptions(tasks=[echo], schema=name)

    def test_placeholder_message_names_the_fix(self) -> None:
        with pytest.raises(InvalidSchemaNameError, match=r"placeholder .*; choose another name"):
            validate_schema_name("my :id")


class TestRender:
    TEMPLATE = "create function {schema}.f() returns int as $$ select 1 from {schema}.t $$;"

    def test_names_without_dollars_keep_the_template_as_it_is(self) -> None:
        assert render(self.TEMPLATE, "a:b") == (
            'create function "a:b".f() returns int as $$ select 1 from "a:b".t $$;'
        )

    def test_a_name_holding_a_tag_gets_tags_it_does_not_hold(self) -> None:
        rendered = render(self.TEMPLATE, "a$$b")
        assert rendered == (
            'create function "a$$b".f() returns int as $_gw0$ select 1 from "a$$b".t $_gw0$;'
        )

    def test_renamed_tags_avoid_the_name_and_keep_nesting(self) -> None:
        template = "do $body$ begin perform $$x$$; perform {schema}.f(); end $body$;"
        name = "$$ $_gw0$ $body_gw0$"
        rendered = render(template, name)
        quoted = quote_identifier(name)
        assert rendered == (
            f"do $body_gw1$ begin perform $_gw1$x$_gw1$; perform {quoted}.f(); end $body_gw1$;"
        )


@task("echo")
async def echo(payload: dict[str, Any]) -> None:
    _ran.append(payload["name"])


_ran: list[str] = []


async def _run_end_to_end(driver: DatabaseDriver, name: str) -> str | None:
    """Migrate ``name``, add a job there and run it; what went wrong, or None."""
    report = await migrate(driver, schema=name)
    if report.current_version != LATEST_MIGRATION:
        return f"migrated to {report.current_version}"
    job = await WorkerUtils(driver, schema=name).add_job("echo", {"name": name})
    if job is None:
        return "add_job returned None"
    _ran.clear()
    options = WorkerOptions(
        tasks=[echo], driver=driver, schema=name, install_signal_handlers=False, migrate=False
    )
    with anyio.fail_after(10):
        summary = await Worker(options).run_once()
    if summary.completed != 1 or _ran != [name]:
        return f"the worker ran {_ran!r} ({summary})"
    return None


def _jobs_left(url: str, name: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        query = sql.SQL("select count(*) from {}._private_jobs").format(sql.Identifier(name))
        row = connection.execute(query).fetchone()
    assert row is not None
    count: int = row[0]
    return count


@pytest.mark.anyio
async def test_every_accepted_name_migrates_and_runs_a_job(
    driver: DatabaseDriver, database_url: str
) -> None:
    failures: dict[str, str] = {}
    for label, name in WORKING_NAMES.items():
        try:
            problem = await _run_end_to_end(driver, name)
        except Exception as error:  # noqa: BLE001 - collected, so that one report names them all
            problem = f"{type(error).__name__}: {error}"
        if problem is None and _jobs_left(database_url, name):
            problem = "the job is still in the table"
        if problem is not None:
            failures[label] = problem
    assert failures == {}


@pytest.mark.anyio
async def test_a_refused_name_writes_nothing(driver: DatabaseDriver, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        before = connection.execute("select count(*) from pg_namespace").fetchone()
    for name, _ in REFUSED_NAMES.values():
        with pytest.raises(InvalidSchemaNameError):
            await migrate(driver, schema=name)
        with pytest.raises(InvalidSchemaNameError):
            WorkerUtils(driver, schema=name)
    with psycopg.connect(database_url, autocommit=True) as connection:
        after = connection.execute("select count(*) from pg_namespace").fetchone()
    assert after == before
