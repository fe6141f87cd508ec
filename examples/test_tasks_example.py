"""Testing tasks: the quickstart's handlers, tested with the graphile_worker.testing plugin.

The plugin comes with graphile-worker and pytest loads it by itself. Run::

    pytest examples/test_tasks_example.py

Each test gets a fresh, migrated database of its own. They live on the server named by
``DATABASE_URL`` (or ``--graphile-worker-database-url``) when one is set, and otherwise on a
throwaway PostgreSQL the plugin starts once for the session (from the system's binaries,
or ``pip install 'graphile-worker[embedded]'`` where there are none). The database in the
URL itself is never touched.
"""

from __future__ import annotations

import pytest
from quickstart import SendWelcome, hello  # examples/quickstart.py

from graphile_worker import PayloadDecodeError, SyncWorkerUtils, WorkerUtils
from graphile_worker.testing import JobRunner, SyncJobRunner, context_for_testing


# Async tests run on asyncio and trio alike (anyio's pytest plugin).
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.mark.anyio
async def test_hello_greets(
    graphile_worker_utils: WorkerUtils,
    graphile_worker_run_jobs: JobRunner,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await graphile_worker_utils.add_job("quickstart_hello", {"name": "tests"})

    (outcome,) = await graphile_worker_run_jobs(hello)

    assert outcome.succeeded
    assert "Hello, tests!" in capsys.readouterr().out


@pytest.mark.anyio
async def test_a_payload_that_does_not_fit_fails_the_job(
    graphile_worker_utils: WorkerUtils, graphile_worker_run_jobs: JobRunner
) -> None:
    await graphile_worker_utils.add_job("quickstart_send_welcome", {"e_mail": "ada@example.com"})

    (outcome,) = await graphile_worker_run_jobs(SendWelcome)

    # A payload that cannot be decoded would fail the same way on every attempt, so the
    # job fails for good at once (it stays in the table); the outcome carries the exception.
    assert outcome.status == "permanently_failed"
    assert isinstance(outcome.error, PayloadDecodeError)
    assert "email" in str(outcome.error)


def test_from_plain_def_tests(
    graphile_worker_sync_utils: SyncWorkerUtils,
    graphile_worker_sync_run_jobs: SyncJobRunner,
    capsys: pytest.CaptureFixture[str],
) -> None:
    graphile_worker_sync_utils.add_job(SendWelcome(email="ada@example.com"))

    outcomes = graphile_worker_sync_run_jobs(SendWelcome, hello)

    assert [outcome.status for outcome in outcomes] == ["completed"]
    assert "Sending a welcome email to ada@example.com (attempt 1)" in capsys.readouterr().out


@pytest.mark.anyio
async def test_a_handler_alone_without_a_database(capsys: pytest.CaptureFixture[str]) -> None:
    # A unit test calls the handler directly; the context says which attempt this is.
    welcome = SendWelcome(email="ada@example.com")

    await welcome.run(context_for_testing(welcome, attempts=3))

    assert "(attempt 3)" in capsys.readouterr().out
