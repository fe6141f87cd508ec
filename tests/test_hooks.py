"""Hooks: observer dispatch and isolation, interceptor chains and their results, plugins.

Hooks are pure orchestration, so these tests need no database: they build :class:`Job`
values directly and pass a plain object as the worker context, which hooks only hand on.
Every test runs on asyncio and trio.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import typing
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from anyio.lowlevel import checkpoint

from graphile_worker.errors import ConfigurationError, HookError
from graphile_worker.hooks import (
    UNCHANGED,
    BeforeJobSchedule,
    CronScheduled,
    CronTick,
    Event,
    Failed,
    FailRun,
    FailSchedule,
    JobComplete,
    JobFail,
    JobFetch,
    JobInterrupted,
    JobPermanentlyFail,
    JobsClaimed,
    JobStart,
    LocalQueueFetched,
    LocalQueueInit,
    LocalQueueModeChange,
    LocalQueueRefetchDelay,
    LocalQueueReturned,
    Observer,
    Outcome,
    OutcomesWritten,
    Plugin,
    Run,
    RunDecision,
    Schedule,
    ScheduleDecision,
    ScheduleRequest,
    SkipRun,
    SkipSchedule,
    Succeeded,
    WorkerInit,
    WorkerRecovered,
    WorkerShutdown,
    WorkerStart,
)
from graphile_worker.hooks._dispatch import Hooks
from graphile_worker.recovery import FailJob, RecoverLater, RecoverNow, StaleJob
from graphile_worker.spec import JSON, Job, JobSpec

pytestmark = pytest.mark.anyio

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
WORKER = "graphile_worker_abc123"
# Hooks never look inside the context; any object proves it is handed on untouched.
CTX: Any = SimpleNamespace(name="ctx")


def make_job(job_id: int = 42, task: str = "send_email") -> Job:
    return Job(
        id=job_id,
        task_identifier=task,
        queue_name=None,
        payload={"to": "a@example.com"},
        priority=0,
        run_at=NOW,
        attempts=1,
        max_attempts=25,
        last_error=None,
        created_at=NOW,
        updated_at=NOW,
        key=None,
        locked_at=NOW,
        locked_by=WORKER,
        revision=0,
        flags=frozenset(),
    )


JOB = make_job()
ERROR = RuntimeError("handler broke")

# One instance of every event, with the Observer method it must reach. Written out by hand
# (not derived from the module) so that a wrong routing table fails here.
EVENTS: list[tuple[Event, str]] = [
    (WorkerInit(WORKER), "on_worker_init"),
    (WorkerStart(WORKER), "on_worker_start"),
    (WorkerShutdown(WORKER, "SIGTERM"), "on_worker_shutdown"),
    (JobFetch(WORKER, JOB), "on_job_fetch"),
    (JobStart(WORKER, JOB), "on_job_start"),
    (JobComplete(WORKER, JOB, 0.25), "on_job_complete"),
    (JobFail(WORKER, JOB, ERROR, NOW + timedelta(seconds=3)), "on_job_fail"),
    (JobPermanentlyFail(WORKER, JOB, ERROR), "on_job_permanently_fail"),
    (JobInterrupted(WORKER, JOB, NOW + timedelta(seconds=30)), "on_job_interrupted"),
    (JobsClaimed(WORKER, 10, (JOB,), False, 1, 2), "on_jobs_claimed"),
    (OutcomesWritten(WORKER, "complete", (42,), 1, 1, 2), "on_outcomes_written"),
    (CronTick(WORKER, NOW, ("a",)), "on_cron_tick"),
    (CronScheduled(WORKER, NOW, False, {"a": 1}, ()), "on_cron_scheduled"),
    (WorkerRecovered(WORKER, "graphile_worker_dead", (), ("q",)), "on_worker_recovered"),
    (LocalQueueInit(WORKER, 100, 60.0), "on_local_queue_init"),
    (LocalQueueModeChange(WORKER, "POLLING", "WAITING"), "on_local_queue_mode_change"),
    (LocalQueueFetched(WORKER, 100, 7, 7), "on_local_queue_fetched"),
    (LocalQueueReturned(WORKER, (1, 2), "the worker is stopping"), "on_local_queue_returned"),
    (LocalQueueRefetchDelay(WORKER, "started", 3.5, 12.0), "on_local_queue_refetch_delay"),
]


class RecordingObserver(Observer):
    """Overrides every event (sync), appending ``(name, method, event)`` to a shared log."""

    def __init__(self, name: str, log: list[tuple[str, str, Event]]) -> None:
        self.name = name
        self.log = log

    def _record(self, method: str, event: Event) -> None:
        self.log.append((self.name, method, event))

    def on_worker_init(self, event: WorkerInit) -> None:
        self._record("on_worker_init", event)

    def on_worker_start(self, event: WorkerStart) -> None:
        self._record("on_worker_start", event)

    def on_worker_shutdown(self, event: WorkerShutdown) -> None:
        self._record("on_worker_shutdown", event)

    def on_job_fetch(self, event: JobFetch) -> None:
        self._record("on_job_fetch", event)

    def on_job_start(self, event: JobStart) -> None:
        self._record("on_job_start", event)

    def on_job_complete(self, event: JobComplete) -> None:
        self._record("on_job_complete", event)

    def on_job_fail(self, event: JobFail) -> None:
        self._record("on_job_fail", event)

    def on_job_permanently_fail(self, event: JobPermanentlyFail) -> None:
        self._record("on_job_permanently_fail", event)

    def on_cron_tick(self, event: CronTick) -> None:
        self._record("on_cron_tick", event)

    def on_cron_scheduled(self, event: CronScheduled) -> None:
        self._record("on_cron_scheduled", event)

    def on_job_interrupted(self, event: JobInterrupted) -> None:
        self._record("on_job_interrupted", event)

    def on_jobs_claimed(self, event: JobsClaimed) -> None:
        self._record("on_jobs_claimed", event)

    def on_outcomes_written(self, event: OutcomesWritten) -> None:
        self._record("on_outcomes_written", event)

    def on_worker_recovered(self, event: WorkerRecovered) -> None:
        self._record("on_worker_recovered", event)

    def on_local_queue_init(self, event: LocalQueueInit) -> None:
        self._record("on_local_queue_init", event)

    def on_local_queue_mode_change(self, event: LocalQueueModeChange) -> None:
        self._record("on_local_queue_mode_change", event)

    def on_local_queue_fetched(self, event: LocalQueueFetched) -> None:
        self._record("on_local_queue_fetched", event)

    def on_local_queue_returned(self, event: LocalQueueReturned) -> None:
        self._record("on_local_queue_returned", event)

    def on_local_queue_refetch_delay(self, event: LocalQueueRefetchDelay) -> None:
        self._record("on_local_queue_refetch_delay", event)


class AsyncCompleteObserver(Observer):
    """Overrides one event with ``async def``, yielding to the loop before it records."""

    def __init__(self, name: str, log: list[tuple[str, str, Event]]) -> None:
        self.name = name
        self.log = log

    async def on_job_complete(self, event: JobComplete) -> None:
        await checkpoint()
        self.log.append((self.name, "on_job_complete", event))


class TestObservers:
    @pytest.mark.parametrize(("event", "method"), EVENTS, ids=[m for _, m in EVENTS])
    async def test_each_event_reaches_its_method_only(self, event: Event, method: str) -> None:
        log: list[tuple[str, str, Event]] = []
        await Hooks([RecordingObserver("r", log)]).notify(event)
        assert log == [("r", method, event)]

    def test_every_event_type_is_covered(self) -> None:
        assert {type(event) for event, _ in EVENTS} == set(typing.get_args(Event))

    async def test_sync_and_async_observers_run_in_registration_order(self) -> None:
        log: list[tuple[str, str, Event]] = []

        class SelfObserving(Plugin, Observer):
            name = "self_observing"

            async def on_job_complete(self, event: JobComplete) -> None:
                log.append(("plugin itself", "on_job_complete", event))

        hooks = Hooks(
            [
                AsyncCompleteObserver("first", log),
                Plugin("bundle", observers=[RecordingObserver("second", log)]),
                RecordingObserver("third", log),
                SelfObserving(observers=[AsyncCompleteObserver("fifth", log)]),
            ]
        )
        event = JobComplete(WORKER, JOB, 1.5)
        await hooks.notify(event)
        assert [name for name, _, _ in log] == [
            "first",
            "second",
            "third",
            "plugin itself",
            "fifth",
        ]
        assert all(seen is event for _, _, seen in log)

    async def test_events_nobody_overrides_call_nothing(self) -> None:
        log: list[tuple[str, str, Event]] = []
        hooks = Hooks([AsyncCompleteObserver("only_complete", log)])
        for event, _ in EVENTS:
            await hooks.notify(event)
        assert [method for _, method, _ in log] == ["on_job_complete"]
        # Dispatch is worked out once, at construction: only the overridden event is listed.
        assert "observed=['on_job_complete']" in repr(hooks)

    async def test_raising_observers_are_logged_and_the_rest_still_run(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        log: list[tuple[str, str, Event]] = []
        sync_error = ValueError("sync observer broke")
        async_error = KeyError("async observer broke")

        class SyncBroken(Observer):
            def on_job_fail(self, event: JobFail) -> None:
                raise sync_error

        class AsyncBroken(Observer):
            async def on_job_fail(self, event: JobFail) -> None:
                await checkpoint()
                raise async_error

        hooks = Hooks(
            [
                SyncBroken(),
                Plugin("metrics", observers=[AsyncBroken()]),
                RecordingObserver("ok", log),
            ]
        )
        event = JobFail(WORKER, JOB, ERROR, None)
        with caplog.at_level(logging.ERROR, logger="graphile_worker.hooks"):
            await hooks.notify(event)  # must not raise

        assert log == [("ok", "on_job_fail", event)]
        assert len(caplog.records) == 2
        first, second = caplog.records
        assert first.exc_info is not None and first.exc_info[1] is sync_error
        assert second.exc_info is not None and second.exc_info[1] is async_error
        for record, label in ((first, "SyncBroken"), (second, "metrics/AsyncBroken")):
            message = record.getMessage()
            assert label in message
            assert "on_job_fail" in message
            assert "JobFail" in message
            assert "job 42 (send_email)" in message

    async def test_observer_errors_go_to_the_given_logger(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        class Broken(Observer):
            def on_worker_start(self, event: WorkerStart) -> None:
                raise RuntimeError("nope")

        custom = logging.getLogger("tests.hooks.custom")
        with caplog.at_level(logging.ERROR):
            await Hooks([Broken()], logger=custom).notify(WorkerStart(WORKER))
        assert [record.name for record in caplog.records] == ["tests.hooks.custom"]
        assert "Broken" in caplog.records[0].getMessage()

    async def test_cancellation_is_not_swallowed(self) -> None:
        log: list[tuple[str, str, Event]] = []
        reached_after_notify = False
        with anyio.CancelScope() as scope:

            class Cancelling(Observer):
                async def on_worker_start(self, event: WorkerStart) -> None:
                    scope.cancel()
                    await anyio.sleep_forever()

            hooks = Hooks([Cancelling(), RecordingObserver("later", log)])
            await hooks.notify(WorkerStart(WORKER))
            reached_after_notify = True
        assert scope.cancelled_caught
        assert not reached_after_notify
        assert log == []

    def test_events_are_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            JobStart(WORKER, JOB).worker_id = "other"  # type: ignore[misc]


def recorder(calls: list[ScheduleRequest]) -> BeforeJobSchedule:
    """A ``before_job_schedule`` interceptor that records the requests it sees."""

    def record(request: ScheduleRequest) -> ScheduleDecision:
        calls.append(request)
        return Schedule()

    return record


class TestBeforeJobSchedule:
    REQUEST = ScheduleRequest("send_email", {"to": "a@example.com"}, JobSpec())

    async def test_interceptors_chain_and_see_each_others_changes(self) -> None:
        seen: list[ScheduleRequest] = []

        def add_tenant(request: ScheduleRequest) -> ScheduleDecision:
            seen.append(request)
            assert isinstance(request.payload, dict)
            return Schedule(payload={**request.payload, "tenant": 7})

        async def low_priority(request: ScheduleRequest) -> ScheduleDecision:
            await checkpoint()
            seen.append(request)
            return Schedule(spec=JobSpec(priority=10))

        def unchanged(request: ScheduleRequest) -> ScheduleDecision:
            seen.append(request)
            return Schedule()

        hooks = Hooks(
            [
                Plugin("tenancy", before_job_schedule=[add_tenant]),
                Plugin("priorities", before_job_schedule=[low_priority, unchanged]),
            ]
        )
        result = await hooks.before_job_schedule(self.REQUEST)

        expected_payload: JSON = {"to": "a@example.com", "tenant": 7}
        assert result == ScheduleRequest("send_email", expected_payload, JobSpec(priority=10))
        assert seen[0] is self.REQUEST
        assert seen[1].payload == expected_payload
        assert seen[2] == result

    async def test_a_null_payload_is_a_change_not_unchanged(self) -> None:
        hooks = Hooks([Plugin("p", before_job_schedule=[lambda request: Schedule(payload=None)])])
        result = await hooks.before_job_schedule(self.REQUEST)
        assert result == ScheduleRequest("send_email", None, JobSpec())
        assert Schedule().payload is UNCHANGED

    async def test_skip_schedule_returns_none_and_stops_the_chain(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        later: list[ScheduleRequest] = []
        hooks = Hooks(
            [
                Plugin("dedupe", before_job_schedule=[lambda request: SkipSchedule()]),
                Plugin("later", before_job_schedule=[recorder(later)]),
            ]
        )
        with caplog.at_level(logging.INFO, logger="graphile_worker.hooks"):
            assert await hooks.before_job_schedule(self.REQUEST) is None
        assert later == []
        assert "dedupe/<lambda>" in caplog.text
        assert "'send_email'" in caplog.text

    async def test_fail_schedule_raises_hook_error_naming_the_hook(self) -> None:
        later: list[ScheduleRequest] = []

        async def refuse(request: ScheduleRequest) -> ScheduleDecision:
            return FailSchedule("tenant is suspended")

        hooks = Hooks(
            [
                Plugin("tenancy", before_job_schedule=[refuse]),
                Plugin("later", before_job_schedule=[recorder(later)]),
            ]
        )
        with pytest.raises(HookError) as caught:
            await hooks.before_job_schedule(self.REQUEST)
        message = str(caught.value)
        assert "before_job_schedule" in message
        assert "tenancy/" in message and "refuse" in message
        assert "tenant is suspended" in message
        assert "'send_email'" in message
        assert later == []

    @pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
    async def test_a_raising_interceptor_becomes_hook_error_with_cause(
        self, is_async: bool
    ) -> None:
        original = ZeroDivisionError("division by zero")

        def sync_boom(request: ScheduleRequest) -> ScheduleDecision:
            raise original

        async def async_boom(request: ScheduleRequest) -> ScheduleDecision:
            await checkpoint()
            raise original

        hooks = Hooks([Plugin("math", before_job_schedule=[async_boom if is_async else sync_boom])])
        with pytest.raises(HookError) as caught:
            await hooks.before_job_schedule(self.REQUEST)
        assert caught.value.__cause__ is original
        message = str(caught.value)
        assert "math/" in message and "boom" in message
        assert "ZeroDivisionError: division by zero" in message

    async def test_a_result_of_the_wrong_type_is_a_hook_error(self) -> None:
        # Any: the protocols reject this when type-checked; untyped code gets a clear error.
        returns_none: Any = lambda request: None
        hooks = Hooks([Plugin("sloppy", before_job_schedule=[returns_none])])
        with pytest.raises(HookError, match=r"sloppy/<lambda> returned None; it must return"):
            await hooks.before_job_schedule(self.REQUEST)


class TestBeforeJobRun:
    async def test_all_run_continues_and_passes_job_and_ctx_through(self) -> None:
        calls: list[tuple[str, Job, object]] = []

        def first(job: Job, ctx: Any) -> RunDecision:
            calls.append(("first", job, ctx))
            return Run()

        async def second(job: Job, ctx: Any) -> RunDecision:
            await checkpoint()
            calls.append(("second", job, ctx))
            return Run()

        hooks = Hooks([Plugin("a", before_job_run=[first]), Plugin("b", before_job_run=[second])])
        assert await hooks.before_job_run(JOB, CTX) == Run()
        assert calls == [("first", JOB, CTX), ("second", JOB, CTX)]
        assert all(job is JOB and ctx is CTX for _, job, ctx in calls)

    async def test_first_skip_wins_and_later_interceptors_are_not_called(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[str] = []

        async def skip(job: Job, ctx: Any) -> RunDecision:
            calls.append("skip")
            return SkipRun()

        def never(job: Job, ctx: Any) -> RunDecision:
            calls.append("never")
            return FailRun("must not be reached")

        hooks = Hooks([Plugin("maintenance", before_job_run=[skip, never])])
        with caplog.at_level(logging.INFO, logger="graphile_worker.hooks"):
            assert await hooks.before_job_run(JOB, CTX) == SkipRun()
        assert calls == ["skip"]
        assert "job 42 (send_email)" in caplog.text
        assert "maintenance/" in caplog.text

    async def test_first_fail_wins_as_hook_error_and_later_are_not_called(self) -> None:
        calls: list[str] = []

        def check_quota(job: Job, ctx: Any) -> RunDecision:
            calls.append("check_quota")
            return FailRun("quota exceeded")

        def never(job: Job, ctx: Any) -> RunDecision:
            calls.append("never")
            return SkipRun()

        hooks = Hooks(
            [
                Plugin("open", before_job_run=[lambda job, ctx: Run()]),
                Plugin("quota", before_job_run=[check_quota]),
                Plugin("later", before_job_run=[never]),
            ]
        )
        with pytest.raises(HookError) as caught:
            await hooks.before_job_run(JOB, CTX)
        assert calls == ["check_quota"]
        message = str(caught.value)
        assert "before_job_run" in message
        assert "quota/" in message and "check_quota" in message
        assert "quota exceeded" in message

    async def test_a_raising_interceptor_becomes_hook_error_with_cause(self) -> None:
        original = ConnectionError("rate limiter unreachable")

        class Limiter:
            async def __call__(self, job: Job, ctx: Any) -> RunDecision:
                raise original

        hooks = Hooks([Plugin("limits", before_job_run=[Limiter()])])
        with pytest.raises(HookError) as caught:
            await hooks.before_job_run(JOB, CTX)
        assert caught.value.__cause__ is original
        assert "limits/Limiter" in str(caught.value)
        assert "ConnectionError: rate limiter unreachable" in str(caught.value)

    async def test_a_result_of_the_wrong_type_is_a_hook_error(self) -> None:
        returns_bool: Any = lambda job, ctx: True
        hooks = Hooks([Plugin("sloppy", before_job_run=[returns_bool])])
        with pytest.raises(HookError, match=r"returned True; it must return Run\(\), SkipRun\(\)"):
            await hooks.before_job_run(JOB, CTX)


class TestAfterJobRun:
    async def test_outcomes_chain_and_can_flip_both_ways(self) -> None:
        seen: list[Outcome] = []
        late_error = TimeoutError("result arrived too late")

        def fail_slow_jobs(job: Job, ctx: Any, outcome: Outcome) -> Outcome:
            seen.append(outcome)
            return Failed(late_error)

        async def forgive(job: Job, ctx: Any, outcome: Outcome) -> Outcome:
            await checkpoint()
            seen.append(outcome)
            return Succeeded()

        def observe(job: Job, ctx: Any, outcome: Outcome) -> Outcome:
            seen.append(outcome)
            return outcome

        flip = Hooks([Plugin("sla", after_job_run=[fail_slow_jobs])])
        assert await flip.after_job_run(JOB, CTX, Succeeded()) == Failed(late_error)

        flip_back = Hooks(
            [
                Plugin("sla", after_job_run=[fail_slow_jobs]),
                Plugin("amnesty", after_job_run=[forgive, observe]),
            ]
        )
        assert await flip_back.after_job_run(JOB, CTX, Succeeded()) == Succeeded()
        assert seen == [Succeeded(), Succeeded(), Failed(late_error), Succeeded()]

    async def test_a_failed_outcome_can_become_a_success(self) -> None:
        hooks = Hooks([Plugin("amnesty", after_job_run=[lambda job, ctx, outcome: Succeeded()])])
        assert await hooks.after_job_run(JOB, CTX, Failed(ERROR)) == Succeeded()

    async def test_a_raising_interceptor_becomes_hook_error_with_cause(self) -> None:
        original = ValueError("bad metric")
        calls: list[str] = []

        def boom(job: Job, ctx: Any, outcome: Outcome) -> Outcome:
            raise original

        def never(job: Job, ctx: Any, outcome: Outcome) -> Outcome:
            calls.append("never")
            return outcome

        hooks = Hooks([Plugin("stats", after_job_run=[boom, never])])
        with pytest.raises(HookError) as caught:
            await hooks.after_job_run(JOB, CTX, Succeeded())
        assert caught.value.__cause__ is original
        assert "after_job_run hook stats/" in str(caught.value)
        assert "boom raised ValueError: bad metric" in str(caught.value)
        assert calls == []

    async def test_a_result_of_the_wrong_type_is_a_hook_error(self) -> None:
        returns_run: Any = lambda job, ctx, outcome: Run()
        hooks = Hooks([Plugin("sloppy", after_job_run=[returns_run])])
        with pytest.raises(HookError, match=r"returned Run\(\); it must return Succeeded\(\)"):
            await hooks.after_job_run(JOB, CTX, Succeeded())


STALE = StaleJob(
    id=7,
    task_identifier="charge_card",
    queue_name=None,
    worker_id="graphile_worker_dead",
    locked_at=NOW,
    attempts=1,
    max_attempts=25,
    last_error=None,
    long_running=False,
    started=True,
    previously_recovered=False,
)


class TestRecoverJobChain:
    async def test_without_interceptors_every_job_is_recovered_now(self) -> None:
        hooks = Hooks([])
        assert not hooks.intercepts_recovery
        assert await hooks.recover_job(STALE) == RecoverNow()

    async def test_the_first_decision_other_than_recover_now_wins(self) -> None:
        calls: list[str] = []

        def lenient(job: StaleJob) -> RecoverNow:
            calls.append("lenient")
            return RecoverNow()

        async def strict(job: StaleJob) -> FailJob:
            calls.append("strict")
            return FailJob("charged twice is worse")

        def never(job: StaleJob) -> RecoverLater:
            calls.append("never")
            return RecoverLater(60)

        hooks = Hooks(
            [Plugin("a", recover_job=[lenient, strict]), Plugin("b", recover_job=[never])]
        )
        assert hooks.intercepts_recovery
        assert await hooks.recover_job(STALE) == FailJob("charged twice is worse")
        assert calls == ["lenient", "strict"]

    async def test_a_broken_interceptor_is_logged_and_the_job_recovered(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def boom(job: StaleJob) -> RecoverNow:
            raise ValueError("bug in the policy")

        wrong: Any = lambda job: "later"
        for interceptor, message in (
            (boom, "raised ValueError: bug in the policy"),
            (wrong, "returned 'later'"),
        ):
            caplog.clear()
            hooks = Hooks([Plugin("policy", recover_job=[interceptor])])
            with caplog.at_level(logging.ERROR, logger="graphile_worker.hooks"):
                assert await hooks.recover_job(STALE) == RecoverNow()
            assert message in caplog.text
            assert "recovering job 7 as usual" in caplog.text


class TestPlugin:
    async def test_a_plugin_bundles_observers_and_every_interceptor(self) -> None:
        log: list[tuple[str, str, Event]] = []
        calls: list[str] = []

        def schedule(request: ScheduleRequest) -> ScheduleDecision:
            calls.append("schedule")
            return Schedule(payload={"wrapped": request.payload})

        def before(job: Job, ctx: Any) -> RunDecision:
            calls.append("before")
            return Run()

        def after(job: Job, ctx: Any, outcome: Outcome) -> Outcome:
            calls.append("after")
            return outcome

        plugin = Plugin(
            "everything",
            observers=[RecordingObserver("obs", log)],
            before_job_schedule=[schedule],
            before_job_run=[before],
            after_job_run=[after],
        )
        hooks = Hooks([plugin])
        assert hooks
        request = await hooks.before_job_schedule(ScheduleRequest("t", 1, JobSpec()))
        assert request is not None and request.payload == {"wrapped": 1}
        assert await hooks.before_job_run(JOB, CTX) == Run()
        assert await hooks.after_job_run(JOB, CTX, Succeeded()) == Succeeded()
        await hooks.notify(JobStart(WORKER, JOB))
        assert calls == ["schedule", "before", "after"]
        assert [method for _, method, _ in log] == ["on_job_start"]
        assert repr(plugin) == "<Plugin 'everything'>"

    async def test_a_subclass_names_itself_and_registers_bound_methods(self) -> None:
        class Quota(Plugin, Observer):
            name = "quota"

            def __init__(self, limit: int) -> None:
                super().__init__(before_job_run=[self.check])
                self.limit = limit
                self.completed = 0

            def check(self, job: Job, ctx: Any) -> RunDecision:
                return Run() if self.completed < self.limit else FailRun("limit reached")

            def on_job_complete(self, event: JobComplete) -> None:
                self.completed += 1

        hooks = Hooks([Quota(limit=1)])
        assert await hooks.before_job_run(JOB, CTX) == Run()
        await hooks.notify(JobComplete(WORKER, JOB, 0.1))
        with pytest.raises(HookError, match=r"before_job_run hook quota/.*Quota\.check failed"):
            await hooks.before_job_run(JOB, CTX)

    async def test_hook_names_read_well_for_partials_and_local_functions(self) -> None:
        def limit(job: Job, ctx: Any, *, most: int) -> RunDecision:
            return FailRun(f"more than {most} attempts")

        hooks = Hooks([Plugin("limits", before_job_run=[functools.partial(limit, most=3)])])
        with pytest.raises(HookError) as caught:
            await hooks.before_job_run(JOB, CTX)
        assert str(caught.value) == (
            "before_job_run hook limits/limit failed the job: more than 3 attempts"
        )

    def test_a_plugin_needs_a_name(self) -> None:
        with pytest.raises(ConfigurationError, match="non-empty name"):
            Plugin()
        with pytest.raises(ConfigurationError, match="non-empty name"):
            Plugin("")

    def test_an_observer_class_instead_of_an_instance_is_explained(self) -> None:
        with pytest.raises(ConfigurationError, match=r"pass an instance, RecordingObserver\(\)"):
            Plugin("p", observers=[RecordingObserver])  # type: ignore[list-item]

    def test_a_non_callable_interceptor_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="before_job_run interceptor must be callable"):
            Plugin("p", before_job_run=["not a function"])  # type: ignore[list-item]

    def test_items_must_be_plugins_or_observers(self) -> None:
        def check(job: Job, ctx: Any) -> RunDecision:
            return Run()

        with pytest.raises(ConfigurationError, match=r"wrap interceptors in a Plugin"):
            Hooks([check])  # type: ignore[list-item]
        with pytest.raises(ConfigurationError, match=r"pass an instance, Observer\(\)"):
            Hooks([Observer])  # type: ignore[list-item]
        with pytest.raises(ConfigurationError, match="not a single Plugin"):
            Hooks(Plugin("p"))  # type: ignore[arg-type]

    def test_two_plugins_may_not_share_a_name(self) -> None:
        with pytest.raises(ConfigurationError, match="two plugins are named 'metrics'"):
            Hooks([Plugin("metrics"), Plugin("metrics")])


class TestEmptyHooks:
    @pytest.mark.parametrize(
        "items",
        [(), (Observer(),), (Plugin("nothing"),), (Plugin("inert", observers=[Observer()]),)],
        ids=["no items", "bare observer", "empty plugin", "plugin of a bare observer"],
    )
    async def test_nothing_to_call_is_falsy_and_passes_everything_through(
        self, items: tuple[Plugin | Observer, ...]
    ) -> None:
        hooks = Hooks(items)
        assert not hooks
        assert hooks.empty
        request = ScheduleRequest("t", {"a": 1}, JobSpec())
        assert await hooks.before_job_schedule(request) is request
        assert await hooks.before_job_run(JOB, CTX) == Run()
        outcome = Failed(ERROR)
        assert await hooks.after_job_run(JOB, CTX, outcome) is outcome
        for event, _ in EVENTS:
            await hooks.notify(event)

    @pytest.mark.parametrize(
        "items",
        [
            (AsyncCompleteObserver("o", []),),
            (Plugin("p", before_job_schedule=[lambda request: Schedule()]),),
            (Plugin("p", before_job_run=[lambda job, ctx: Run()]),),
            (Plugin("p", after_job_run=[lambda job, ctx, outcome: outcome]),),
            (Plugin("p", recover_job=[lambda job: RecoverNow()]),),
        ],
        ids=["observer", "before_job_schedule", "before_job_run", "after_job_run", "recover_job"],
    )
    def test_anything_to_call_is_truthy(self, items: tuple[Plugin | Observer, ...]) -> None:
        hooks = Hooks(items)
        assert hooks
        assert not hooks.empty
