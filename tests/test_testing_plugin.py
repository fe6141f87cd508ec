"""graphile_worker.testing: the pytest plugin, its job runners and the standalone context.

Three layers. The runners and the context are tested here directly, on this suite's own
databases and every (runtime, driver) pair: the plugin's database fixture is pointed at
the suite's ``database_url`` and its driver fixture at ``driver_name``, which is also how
an application reuses a database it already makes. The plugin itself (the throwaway
server, the template, a database per test, loading through the entry point, laziness) is
tested the way users meet it: a small user test suite run by ``pytester``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.lowlevel
import psycopg
import pytest

from graphile_worker import JobSpec, task
from graphile_worker import testing as graphile_worker_testing
from graphile_worker.context import WorkerContext
from graphile_worker.errors import ConfigurationError, InvalidJobSpecError
from graphile_worker.hooks import JobFail, JobStart, Observer
from graphile_worker.task import TaskRegistry
from graphile_worker.testing import (
    JobRunner,
    StandaloneContext,
    SyncJobRunner,
    context_for_testing,
)
from graphile_worker.worker import WorkerOptions
from tests.conftest import RUNTIME_DRIVER_PAIRS

if TYPE_CHECKING:
    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.embedded import Cluster
    from graphile_worker.utils import SyncWorkerUtils, WorkerUtils

pytest_plugins = ["pytester"]

REPOSITORY = Path(__file__).resolve().parents[1]

# The plugin's fixtures, by name: pytest registers the plugin through its entry point once
# the package is installed, and naming them here makes them work from a source tree too.
graphile_worker_schema = graphile_worker_testing.graphile_worker_schema
graphile_worker_driver_name = graphile_worker_testing.graphile_worker_driver_name
graphile_worker_driver = graphile_worker_testing.graphile_worker_driver
graphile_worker_utils = graphile_worker_testing.graphile_worker_utils
graphile_worker_run_jobs = graphile_worker_testing.graphile_worker_run_jobs
graphile_worker_sync_utils = graphile_worker_testing.graphile_worker_sync_utils
graphile_worker_sync_run_jobs = graphile_worker_testing.graphile_worker_sync_run_jobs


@pytest.fixture
def graphile_worker_database_url(database_url: str) -> str:
    """The suite's own fresh database, instead of one on a server of the plugin's."""
    return database_url


# --------------------------------------------------------------------------------- tasks


class MailboxFull(Exception):
    """What the failing handlers raise, so a test can tell it from any other error."""


@task("testing_greet")
async def greet(payload: dict[str, Any], ctx: WorkerContext) -> None:
    ctx.logger.info("greeting %s", payload["name"])


@task("testing_bounce")
async def bounce(payload: dict[str, Any]) -> None:
    raise MailboxFull(f"mailbox of {payload['to']} is full")


@task("testing_flaky")
async def flaky(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """Fails its first ``fail_times`` attempts, then succeeds."""
    if ctx.job.attempts <= payload["fail_times"]:
        raise MailboxFull(f"attempt {ctx.job.attempts}")


@task("testing_fan_out")
async def fan_out(payload: dict[str, Any], ctx: WorkerContext) -> None:
    for name in payload["names"]:
        await ctx.add_job("testing_greet", {"name": name})


@task("testing_needs_extension")
async def needs_extension(payload: dict[str, Any], ctx: WorkerContext) -> None:
    if ctx.extensions.get("mailer") != "fake":
        raise MailboxFull(f"no fake mailer in {dict(ctx.extensions)!r}")


@task("testing_report")
def build_report(payload: dict[str, Any], ctx: WorkerContext) -> None:
    """A plain def handler: runs in a thread, reaches the loop through call_async."""
    ctx.call_async(ctx.add_job, "testing_greet", {"name": payload["customer"]})


@dataclass
class SendWelcome:
    IDENTIFIER: ClassVar[str] = "testing_send_welcome"
    email: str

    async def run(self, ctx: WorkerContext) -> None:
        if not self.email.endswith("@example.com"):
            raise MailboxFull(f"{self.email} is not ours")


def job_rows(connection: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """(id, task, attempts, last_error) of every job left, read past the code under test."""
    return connection.execute(
        "select job.id, task.identifier, job.attempts, job.last_error"
        " from graphile_worker._private_jobs as job"
        " join graphile_worker._private_tasks as task on task.id = job.task_id"
        " order by job.id"
    ).fetchall()


class OnEveryDriver:
    """Async tests whose fixtures run on every valid (runtime, driver) pair."""

    @pytest.fixture
    def graphile_worker_driver_name(self, driver_name: str) -> str:
        return driver_name


# ------------------------------------------------------------------------ the async runner


@pytest.mark.anyio
class TestJobRunner(OnEveryDriver):
    async def test_reports_each_job_and_leaves_the_rest(
        self,
        graphile_worker_utils: WorkerUtils,
        graphile_worker_run_jobs: JobRunner,
        sync_connection: psycopg.Connection[Any],
    ) -> None:
        ok = await graphile_worker_utils.add_job("testing_greet", {"name": "Ada"})
        bad = await graphile_worker_utils.add_job("testing_bounce", {"to": "bob@example.com"})
        other = await graphile_worker_utils.add_job("someone_elses_task", {})
        later = await graphile_worker_utils.add_job(
            "testing_greet",
            {"name": "Eve"},
            spec=JobSpec(run_at=datetime.now(timezone.utc) + timedelta(hours=1)),
        )

        outcomes = await graphile_worker_run_jobs(greet, bounce)

        assert [(o.id, o.task_identifier, o.status) for o in outcomes] == [
            (ok.id, "testing_greet", "completed"),
            (bad.id, "testing_bounce", "failed"),
        ]
        completed, failed = outcomes
        assert completed.succeeded and completed.error is None and completed.errors == ()
        assert completed.payload == {"name": "Ada"} and completed.attempts == 1
        assert isinstance(failed.error, MailboxFull)
        assert failed.errors == (failed.error,)
        assert failed.error_message == "mailbox of bob@example.com is full"
        assert failed.attempts == 1 and not failed.succeeded
        assert failed.next_run_at is not None and failed.next_run_at > failed.job.run_at
        assert "status='failed'" in repr(failed) and "MailboxFull" in repr(failed)
        # The table agrees: the failure is recorded with its back-off; the job of another
        # task and the one not due yet were never touched.
        assert job_rows(sync_connection) == [
            (bad.id, "testing_bounce", 1, "mailbox of bob@example.com is full"),
            (other.id, "someone_elses_task", 0, None),
            (later.id, "testing_greet", 0, None),
        ]

    async def test_retry_failed_runs_again_until_success(
        self, graphile_worker_utils: WorkerUtils, graphile_worker_run_jobs: JobRunner
    ) -> None:
        job = await graphile_worker_utils.add_job("testing_flaky", {"fail_times": 2})

        (outcome,) = await graphile_worker_run_jobs(flaky, retry_failed=True)

        assert outcome.id == job.id and outcome.status == "completed"
        assert outcome.attempts == 3
        assert [str(error) for error in outcome.errors] == ["attempt 1", "attempt 2"]
        assert outcome.error is None
        assert await graphile_worker_utils.get_job(job.id) is None

    async def test_retry_failed_stops_at_max_attempts(
        self,
        graphile_worker_utils: WorkerUtils,
        graphile_worker_run_jobs: JobRunner,
        sync_connection: psycopg.Connection[Any],
    ) -> None:
        job = await graphile_worker_utils.add_job(
            "testing_bounce", {"to": "eve@example.com"}, spec=JobSpec(max_attempts=3)
        )

        (outcome,) = await graphile_worker_run_jobs(bounce, retry_failed=True)

        assert outcome.status == "permanently_failed"
        assert outcome.attempts == 3 and len(outcome.errors) == 3
        assert outcome.next_run_at is None
        assert job_rows(sync_connection) == [
            (job.id, "testing_bounce", 3, "mailbox of eve@example.com is full")
        ]

    async def test_retry_failed_ends_when_a_job_put_back_cannot_run(
        self, graphile_worker_utils: WorkerUtils, graphile_worker_run_jobs: JobRunner
    ) -> None:
        class GiveUp(Observer):
            """Fails every failed job for good, after the worker reported it as retryable."""

            async def on_job_fail(self, event: JobFail) -> None:
                await graphile_worker_utils.permanently_fail_jobs([event.job.id])

        await graphile_worker_utils.add_job("testing_bounce", {"to": "bob@example.com"})
        options = WorkerOptions(tasks=[bounce], hooks=[GiveUp()], recovery=None)

        with anyio.fail_after(30):
            (outcome,) = await graphile_worker_run_jobs(options=options, retry_failed=True)

        assert (outcome.status, outcome.attempts) == ("failed", 1)

    async def test_retry_failed_with_a_count_retries_that_often(
        self, graphile_worker_utils: WorkerUtils, graphile_worker_run_jobs: JobRunner
    ) -> None:
        await graphile_worker_utils.add_job("testing_flaky", {"fail_times": 5})

        (outcome,) = await graphile_worker_run_jobs(flaky, retry_failed=2)

        assert outcome.status == "failed"
        assert outcome.attempts == 3
        assert [str(error) for error in outcome.errors] == [
            "attempt 1",
            "attempt 2",
            "attempt 3",
        ]

    async def test_without_retry_a_failure_waits_for_its_back_off(
        self, graphile_worker_utils: WorkerUtils, graphile_worker_run_jobs: JobRunner
    ) -> None:
        await graphile_worker_utils.add_job("testing_flaky", {"fail_times": 1})

        (first,) = await graphile_worker_run_jobs(flaky)
        again = await graphile_worker_run_jobs(flaky)

        assert first.status == "failed"
        assert again == []

    async def test_jobs_queued_by_handlers_run_and_are_reported(
        self, graphile_worker_utils: WorkerUtils, graphile_worker_run_jobs: JobRunner
    ) -> None:
        await graphile_worker_utils.add_job("testing_fan_out", {"names": ["Ada", "Bob"]})

        outcomes = await graphile_worker_run_jobs(TaskRegistry([fan_out, greet]))

        assert [(o.task_identifier, o.payload, o.status) for o in outcomes] == [
            ("testing_fan_out", {"names": ["Ada", "Bob"]}, "completed"),
            ("testing_greet", {"name": "Ada"}, "completed"),
            ("testing_greet", {"name": "Bob"}, "completed"),
        ]

    async def test_handler_classes_plain_def_handlers_and_extensions(
        self, graphile_worker_utils: WorkerUtils, graphile_worker_run_jobs: JobRunner
    ) -> None:
        await graphile_worker_utils.add_job(SendWelcome(email="ada@example.com"))
        await graphile_worker_utils.add_job(SendWelcome(email="mallory@evil.test"))
        await graphile_worker_utils.add_job("testing_report", {"customer": "acme"})
        await graphile_worker_utils.add_job("testing_needs_extension", {})

        outcomes = await graphile_worker_run_jobs(
            SendWelcome, build_report, needs_extension, greet, extensions={"mailer": "fake"}
        )

        assert [(o.task_identifier, o.status, o.error_message) for o in outcomes] == [
            ("testing_send_welcome", "completed", None),
            ("testing_send_welcome", "failed", "mallory@evil.test is not ours"),
            ("testing_report", "completed", None),
            ("testing_needs_extension", "completed", None),
            ("testing_greet", "completed", None),
        ]

    async def test_options_bring_hooks_and_keep_theirs(
        self, graphile_worker_utils: WorkerUtils, graphile_worker_run_jobs: JobRunner
    ) -> None:
        started: list[int] = []

        class Starts(Observer):
            def on_job_start(self, event: JobStart) -> None:
                started.append(event.job.id)

        job = await graphile_worker_utils.add_job("testing_greet", {"name": "Ada"})
        options = WorkerOptions(tasks=[greet], hooks=[Starts()], recovery=None)

        (outcome,) = await graphile_worker_run_jobs(options=options)

        assert outcome.status == "completed"
        assert started == [job.id]


# ------------------------------------------------------------------------- the sync runner


def test_sync_fixtures_queue_and_run_jobs(
    graphile_worker_sync_utils: SyncWorkerUtils,
    graphile_worker_sync_run_jobs: SyncJobRunner,
    sync_connection: psycopg.Connection[Any],
) -> None:
    graphile_worker_sync_utils.add_job("testing_flaky", {"fail_times": 1})
    graphile_worker_sync_utils.add_job("testing_bounce", {"to": "bob@example.com"})

    outcomes = graphile_worker_sync_run_jobs(flaky, bounce, retry_failed=1)

    assert [(o.task_identifier, o.status, o.attempts) for o in outcomes] == [
        ("testing_flaky", "completed", 2),
        ("testing_bounce", "failed", 2),
    ]
    assert [row[1:] for row in job_rows(sync_connection)] == [
        ("testing_bounce", 2, "mailbox of bob@example.com is full")
    ]


@pytest.mark.parametrize(
    ("backend", "name"),
    RUNTIME_DRIVER_PAIRS,
    ids=[f"{backend}-{name}" for backend, name in RUNTIME_DRIVER_PAIRS],
)
def test_sync_runner_on_every_runtime_and_driver(
    database_url: str, backend: str, name: str, sync_connection: psycopg.Connection[Any]
) -> None:
    sync_connection.execute(
        "select graphile_worker.add_job('testing_flaky', '{\"fail_times\": 1}'::json)"
    )
    runner = SyncJobRunner(database_url, driver=name, backend=backend)

    (outcome,) = runner(flaky, retry_failed=True)

    assert (outcome.status, outcome.attempts, len(outcome.errors)) == ("completed", 2, 1)
    assert job_rows(sync_connection) == []


def test_runners_refuse_a_call_without_tasks_or_a_bad_retry_count() -> None:
    # Checked before anything connects: the URL leads nowhere.
    runner = SyncJobRunner("postgresql://127.0.0.1:9/nothing")
    with pytest.raises(ConfigurationError, match=r"run_jobs\(send_email"):
        runner()
    for wrong in (-1, 1.5, "yes"):
        with pytest.raises(ConfigurationError, match="retry_failed must be"):
            runner(greet, retry_failed=wrong)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_sync_runner_refuses_to_run_inside_an_event_loop(database_url: str) -> None:
    runner = SyncJobRunner(database_url)
    with pytest.raises(RuntimeError, match="await a JobRunner instead"):
        runner(greet)


# --------------------------------------------------------------------- a standalone context


@pytest.mark.anyio
class TestStandaloneContext(OnEveryDriver):
    async def test_a_handler_runs_with_a_made_up_job(self) -> None:
        seen: list[WorkerContext] = []

        @task("testing_remember")
        async def remember(payload: dict[str, Any], ctx: WorkerContext) -> None:
            seen.append(ctx)

        ctx = context_for_testing({"name": "Ada"}, attempts=3, extensions={"mailer": "fake"})
        await remember({"name": "Ada"}, ctx)

        assert seen == [ctx]
        assert isinstance(ctx, WorkerContext) and isinstance(ctx, StandaloneContext)
        assert ctx.payload == {"name": "Ada"}
        assert (ctx.job.id, ctx.job.task_identifier, ctx.job.payload) == (
            1,
            "test_task",
            {"name": "Ada"},
        )
        assert (ctx.job.attempts, ctx.job.max_attempts) == (3, 25)
        assert ctx.job.locked_by == ctx.worker_id
        assert dict(ctx.extensions) == {"mailer": "fake"}
        with pytest.raises(TypeError):
            ctx.extensions["mailer"] = "real"  # type: ignore[index]
        assert not ctx.abort_requested

    async def test_a_typed_payload_names_its_task(self) -> None:
        payload = SendWelcome(email="mallory@evil.test")
        ctx = context_for_testing(payload, key="welcome-mallory", flags=["slow"])

        with pytest.raises(MailboxFull, match="is not ours"):
            await payload.run(ctx)
        assert ctx.job.task_identifier == "testing_send_welcome"
        assert ctx.job.payload == {"email": "mallory@evil.test"}
        assert (ctx.job.key, ctx.job.flags) == ("welcome-mallory", frozenset({"slow"}))
        assert ctx.payload is payload

    async def test_a_given_job_is_kept_except_for_what_is_overridden(
        self, graphile_worker_utils: WorkerUtils
    ) -> None:
        job = await graphile_worker_utils.add_job("testing_greet", {"name": "Ada"})

        ctx = context_for_testing(job.payload, job, max_attempts=2, queue_name="mail")

        assert ctx.job.id == job.id and ctx.job.payload == {"name": "Ada"}
        assert (ctx.job.max_attempts, ctx.job.queue_name) == (2, "mail")

    async def test_without_a_driver_the_database_is_refused_clearly(self) -> None:
        ctx = context_for_testing({"names": ["Ada"]})
        message = r"this WorkerContext has no database: it was built by context_for_testing\(\)"

        with pytest.raises(ConfigurationError, match=message):
            await fan_out({"names": ["Ada"]}, ctx)
        with pytest.raises(ConfigurationError, match=message):
            await ctx.utils.get_job(1)
        with pytest.raises(ConfigurationError, match=message):
            ctx.transaction()
        with pytest.raises(ConfigurationError, match=message):
            await ctx.add_jobs([("testing_greet", {"name": "Ada"})])
        # Arguments are still checked first, as with a database.
        with pytest.raises(InvalidJobSpecError):
            await ctx.add_job("testing_greet", {"not json": float("nan")})

    async def test_with_a_driver_the_handler_uses_the_database(
        self,
        graphile_worker_driver: DatabaseDriver,
        graphile_worker_utils: WorkerUtils,
        sync_connection: psycopg.Connection[Any],
    ) -> None:
        ctx = context_for_testing({"names": ["Ada"]}, driver=graphile_worker_driver)

        await fan_out({"names": ["Ada"]}, ctx)
        welcome = await ctx.add_job(SendWelcome(email="bob@example.com"))
        await ctx.add_jobs([("testing_greet", {"name": "Cy"})])
        async with ctx.transaction() as executor:
            await ctx.add_job("testing_greet", {"name": "Dee"}, executor=executor)

        assert welcome is not None
        assert await ctx.utils.get_job(welcome.id) == await graphile_worker_utils.get_job(
            welcome.id
        )

        assert [row[1] for row in job_rows(sync_connection)] == [
            "testing_greet",
            "testing_send_welcome",
            "testing_greet",
            "testing_greet",
        ]
        rejected = context_for_testing({}, driver=graphile_worker_driver)
        with pytest.raises(TypeError, match="typed payload"):
            await rejected.add_job(SendWelcome(email="x@example.com"), {})  # type: ignore[call-overload]

    async def test_a_plain_def_handler_reaches_the_loop_from_its_thread(
        self, graphile_worker_driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
    ) -> None:
        ctx = context_for_testing({"customer": "acme"}, driver=graphile_worker_driver)

        await anyio.to_thread.run_sync(build_report, {"customer": "acme"}, ctx)

        assert [row[1] for row in job_rows(sync_connection)] == ["testing_greet"]

    async def test_request_abort_wakes_a_waiting_handler(self, anyio_backend: str) -> None:
        ctx = context_for_testing()
        async with anyio.create_task_group() as group:
            group.start_soon(ctx.wait_for_abort)
            await anyio.lowlevel.checkpoint()
            ctx.request_abort()
        assert ctx.abort_requested
        with anyio.fail_after(5):
            await ctx.wait_for_abort()  # already requested: returns at once

    def test_logger_names_the_job_as_the_worker_does(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        ctx = context_for_testing({"name": "Ada"}, task_identifier="testing_greet", attempts=2)
        with caplog.at_level(logging.INFO, logger="graphile_worker.worker"):
            ctx.logger.info("greeting %s", "Ada", extra={"step": "hello"})
        (record,) = caplog.records
        assert record.getMessage() == "[job 1 testing_greet] greeting Ada"
        fields = ("job_id", "task_identifier", "attempt", "max_attempts", "worker_id", "step")
        assert [getattr(record, name) for name in fields] == [
            1,
            "testing_greet",
            2,
            25,
            ctx.worker_id,
            "hello",
        ]


# ----------------------------------------------------------------- the plugin, as users see it

USER_SUITE = """
import pytest

from graphile_worker import JobSpec, task
from graphile_worker.testing import context_for_testing

databases = []


@task("send_email")
async def send_email(payload, ctx):
    if "@" not in payload["to"]:
        raise ValueError(f"bad address {payload['to']!r}")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.mark.anyio
async def test_async_fixtures(graphile_worker_utils, graphile_worker_run_jobs):
    await graphile_worker_utils.add_job("send_email", {"to": "ada@example.com"})
    await graphile_worker_utils.add_job("send_email", {"to": "nobody"})
    outcomes = await graphile_worker_run_jobs(send_email)
    assert [o.status for o in outcomes] == ["completed", "failed"]
    assert outcomes[1].error_message == "bad address 'nobody'"


def test_sync_fixtures(graphile_worker_cluster, graphile_worker_database_url,
                       graphile_worker_sync_utils, graphile_worker_sync_run_jobs):
    assert type(graphile_worker_cluster).__name__ == "ExistingServer"
    databases.append(graphile_worker_database_url.rsplit("/", 1)[1])
    graphile_worker_sync_utils.add_job("send_email", {"to": "x"}, spec=JobSpec(max_attempts=2))
    (outcome,) = graphile_worker_sync_run_jobs(send_email, retry_failed=True)
    assert (outcome.status, outcome.attempts) == ("permanently_failed", 2)


def test_each_test_gets_a_fresh_database(graphile_worker_cluster, graphile_worker_sync_utils):
    counts = graphile_worker_sync_utils.stats().total
    assert (counts.ready, counts.failed) == (0, 0)
    import psycopg
    with psycopg.connect(graphile_worker_cluster.admin_url) as connection:
        left = connection.execute(
            "select datname from pg_database where datname = any(%s)", (databases,)
        ).fetchall()
    assert databases and left == []


@pytest.mark.anyio
async def test_a_handler_without_a_database():
    ctx = context_for_testing({"to": "nobody"}, attempts=2)
    with pytest.raises(ValueError, match="bad address"):
        await send_email({"to": "nobody"}, ctx)
"""


def entry_point_distribution(directory: Path) -> None:
    """Install, on ``directory``, a distribution declaring the plugin as pyproject does.

    The source tree's own installed metadata may predate the entry point; this one makes
    pytest load the plugin exactly as an installed graphile-worker does.
    """
    dist_info = directory / "graphile_worker_entry_point-0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: graphile-worker-entry-point\nVersion: 0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[pytest11]\ngraphile_worker.testing = graphile_worker.testing\n"
    )


def test_pyproject_declares_the_entry_point() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    # Named after the module, so that pytest_plugins = ["graphile_worker.testing"] and
    # -p graphile_worker.testing find the plugin already registered.
    assert project["entry-points"]["pytest11"] == {
        "graphile_worker.testing": "graphile_worker.testing"
    }


def test_a_user_suite_on_the_server_in_database_url(
    pytester: pytest.Pytester, pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed, the plugin is loaded by its entry point and needs no configuration."""
    monkeypatch.setenv("DATABASE_URL", pg_cluster.admin_url)
    entry_point_distribution(pytester.path)
    pytester.makepyfile(test_user_suite=USER_SUITE)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")

    result.assert_outcomes(passed=6)


def test_without_a_server_a_throwaway_one_is_started_and_removed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    pytester.makepyfile(
        test_throwaway="""
        from pathlib import Path

        def test_cluster(graphile_worker_cluster):
            assert type(graphile_worker_cluster).__name__ == "TemporaryCluster"
            Path("directory.txt").write_text(str(graphile_worker_cluster.directory))
        """
    )

    result = pytester.runpytest_inprocess("-p", "graphile_worker.testing")

    result.assert_outcomes(passed=1)
    directory = Path((pytester.path / "directory.txt").read_text())
    assert directory.name.startswith("graphile-worker-pg-")
    assert not directory.exists()


def test_an_existing_server_from_the_option(
    pytester: pytest.Pytester, pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--graphile-worker-database-url`` names the server; the plugin cleans up after itself.

    Naming the plugin twice (``-p`` and ``pytest_plugins``) registers it once.
    """
    monkeypatch.delenv("DATABASE_URL", raising=False)
    pytester.makeconftest('pytest_plugins = ["graphile_worker.testing"]')
    pytester.makepyfile(
        test_on_a_server="""
        from pathlib import Path

        def test_server(graphile_worker_cluster, graphile_worker_template_database,
                        graphile_worker_database_url, graphile_worker_sync_utils):
            assert type(graphile_worker_cluster).__name__ == "ExistingServer"
            name = graphile_worker_database_url.rsplit("/", 1)[1]
            Path("databases.txt").write_text(f"{graphile_worker_template_database} {name}")
            assert graphile_worker_sync_utils.add_job("send_email", {}).attempts == 0
        """
    )

    result = pytester.runpytest_inprocess(
        "-p", "graphile_worker.testing", f"--graphile-worker-database-url={pg_cluster.admin_url}"
    )

    result.assert_outcomes(passed=1)
    names = (pytester.path / "databases.txt").read_text().split()
    assert len(names) == 2
    with psycopg.connect(pg_cluster.admin_url) as connection:
        left = connection.execute(
            "select datname from pg_database where datname = any(%s)", (names,)
        ).fetchall()
    assert left == []


def test_loading_the_plugin_starts_nothing(pytester: pytest.Pytester) -> None:
    """A suite that uses no fixture never reaches for the server, even a missing one."""
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")

    result = pytester.runpytest_inprocess(
        "-p", "graphile_worker.testing", "--graphile-worker-database-url=postgresql://127.0.0.1:9/x"
    )

    result.assert_outcomes(passed=1)
