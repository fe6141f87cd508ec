"""The cron scheduler inside a running worker, driven by a clock the test moves.

No test waits for a real minute: every worker runs on a
:class:`~graphile_worker.worker._cron_clock.ManualCronClock`, the test moves it, waits for
the scheduler's :class:`~graphile_worker.hooks.CronTick` / ``CronScheduled`` events, and
then reads ``_private_jobs`` and ``_private_known_crontabs`` over a separate connection.
The jobs' tasks are unknown to the workers (unless a test says otherwise), so every
scheduled job stays in the table to be counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from psycopg.rows import dict_row

from graphile_worker.crontab import cron, parse_crontab
from graphile_worker.drivers import create_driver
from graphile_worker.errors import ConfigurationError, CrontabError
from graphile_worker.hooks import CronScheduled, CronTick, Observer
from graphile_worker.sql.cron import KnownCrontab
from graphile_worker.task import task
from graphile_worker.worker import Worker, WorkerContext
from graphile_worker.worker._cron_clock import ManualCronClock
from graphile_worker.worker._cron_plan import (
    backfill_steps,
    ceil_minute,
    floor_minute,
    iso_minute,
    timer_check,
)

from .conftest import eventually, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver

pytestmark = pytest.mark.anyio

UTC = timezone.utc
START = datetime(2030, 1, 1, 9, 59, 30, tzinfo=UTC)
"""Half a minute before 10:00, so each whole-minute move crosses exactly one boundary."""


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2030, 1, 1, hour, minute, second, tzinfo=UTC)


def minutes(first: datetime, count: int) -> list[datetime]:
    return [first + timedelta(minutes=n) for n in range(count)]


@task("idle")
async def idle(payload: Any) -> None:
    """The only task the workers know: cron jobs are for other tasks and stay queued."""


class CronEvents(Observer):
    """Records every cron event one worker reports."""

    def __init__(self) -> None:
        self.ticks: list[CronTick] = []
        self.scheduled: list[CronScheduled] = []

    def on_cron_tick(self, event: CronTick) -> None:
        self.ticks.append(event)

    def on_cron_scheduled(self, event: CronScheduled) -> None:
        self.scheduled.append(event)

    def offered(self, minute: datetime, *, backfilled: bool = False) -> bool:
        return any(
            event.timestamp == minute and event.backfilled == backfilled for event in self.scheduled
        )

    async def until_offered(self, minute: datetime, *, backfilled: bool = False) -> None:
        """Wait until this worker has offered ``minute``'s jobs to the database."""
        await eventually(lambda: self.offered(minute, backfilled=backfilled))


def offered_by_any(workers: list[CronEvents], minute: datetime) -> bool:
    """Whether any of ``workers`` offered ``minute`` in a backfill."""
    return any(events.offered(minute, backfilled=True) for events in workers)


def cron_jobs(connection: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every job with its task and queue, oldest ``run_at`` first."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            """
            select tasks.identifier as task_identifier, jobs.run_at, jobs.payload,
              jobs.priority, jobs.max_attempts, jobs.key, queues.queue_name
            from graphile_worker._private_jobs as jobs
            join graphile_worker._private_tasks as tasks on tasks.id = jobs.task_id
            left join graphile_worker._private_job_queues as queues
              on queues.id = jobs.job_queue_id
            order by jobs.run_at, jobs.id
            """
        )
        return cursor.fetchall()


def schedule_of(connection: psycopg.Connection[Any], task_identifier: str) -> list[datetime]:
    """The ``run_at`` of every job of one task, oldest first (duplicates kept)."""
    return [
        row["run_at"] for row in cron_jobs(connection) if row["task_identifier"] == task_identifier
    ]


def known_crontabs(connection: psycopg.Connection[Any]) -> dict[str, tuple[datetime, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "select identifier, known_since, last_execution "
            "from graphile_worker._private_known_crontabs"
        )
        return {identifier: (since, last) for identifier, since, last in cursor.fetchall()}


@asynccontextmanager
async def running(
    driver: DatabaseDriver, crontab: object, clock: ManualCronClock, **overrides: Any
) -> AsyncIterator[CronEvents]:
    """A worker running ``crontab`` on ``clock``; yields its cron events."""
    events = CronEvents()
    settings: dict[str, Any] = {"tasks": [idle], "hooks": [events]}
    settings.update(overrides)
    async with Worker(options(driver, crontab=crontab, cron_clock=clock, **settings)):
        yield events


async def step_through(clock: ManualCronClock, workers: list[CronEvents], count: int) -> None:
    """Move ``clock`` one minute at a time, ``count`` times, waiting for every worker."""
    for _ in range(count):
        clock.advance(timedelta(minutes=1))
        due = clock.now().replace(second=0, microsecond=0)
        for events in workers:
            await events.until_offered(due)


# ----------------------------------------------------------------------------- scheduling


async def test_schedules_one_job_per_due_minute_with_node_payload(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    clock = ManualCronClock(START)
    crontab = '* * * * * every_minute {"greeting": "hi"}\n*/2 * * * * even_minutes\n'
    async with running(driver, crontab, clock) as events:
        await step_through(clock, [events], 4)

    assert schedule_of(sync_connection, "every_minute") == minutes(at(10, 0), 4)
    assert schedule_of(sync_connection, "even_minutes") == [at(10, 0), at(10, 2)]
    first = cron_jobs(sync_connection)[0]
    assert first["task_identifier"] == "every_minute"
    assert first["payload"] == {
        "greeting": "hi",
        "_cron": {"ts": "2030-01-01T10:00:00.000Z", "backfilled": False},
    }
    even = [row for row in cron_jobs(sync_connection) if row["task_identifier"] == "even_minutes"]
    assert even[1]["payload"] == {"_cron": {"ts": "2030-01-01T10:02:00.000Z", "backfilled": False}}
    assert [tick.timestamp for tick in events.ticks] == minutes(at(10, 0), 4)
    assert [tick.due for tick in events.ticks] == [
        ("every_minute", "even_minutes"),
        ("every_minute",),
        ("every_minute", "even_minutes"),
        ("every_minute",),
    ]
    last_execution = known_crontabs(sync_connection)["every_minute"][1]
    assert last_execution == at(10, 3)


async def test_a_start_on_the_minute_schedules_that_minute(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    # Node rounds the start up to a minute only when it has seconds: 10:00:00.000 is due.
    clock = ManualCronClock(at(10, 0))
    async with running(driver, "* * * * * every_minute", clock) as events:
        await events.until_offered(at(10, 0))
    assert schedule_of(sync_connection, "every_minute") == [at(10, 0)]


async def test_two_workers_schedule_each_minute_once(
    driver: DatabaseDriver,
    driver_name: str,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
) -> None:
    clock = ManualCronClock(START)
    crontab = "* * * * * every_minute ?fill=1h\n*/5 * * * * five ?id=every_five&fill=1h"
    async with (
        create_driver(database_url, driver=driver_name) as second_driver,
        running(driver, crontab, clock) as first,
        running(second_driver, crontab, clock) as second,
    ):
        await step_through(clock, [first, second], 6)
        clock.advance(timedelta(minutes=4))  # a jump: both catch up on four minutes
        for minute in minutes(at(10, 6), 4):
            await first.until_offered(minute)
            await second.until_offered(minute)

    assert schedule_of(sync_connection, "every_minute") == minutes(at(10, 0), 10)
    assert schedule_of(sync_connection, "five") == [at(10, 0), at(10, 5)]
    # Every offer was made by both; the database let exactly one of them add each job.
    added: Counter[tuple[str, datetime]] = Counter()
    for events in (first, second):
        for event in events.scheduled:
            for identifier in event.scheduled:
                added[identifier, event.timestamp] += 1
            assert set(event.scheduled).isdisjoint(event.already_scheduled)
    assert len(added) == 12
    assert set(added.values()) == {1}


async def test_a_worker_with_a_slow_clock_adds_nothing_twice(
    driver: DatabaseDriver,
    driver_name: str,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
) -> None:
    ahead = ManualCronClock(START)
    behind = ManualCronClock(START - timedelta(minutes=3))
    async with (
        create_driver(database_url, driver=driver_name) as second_driver,
        running(driver, "* * * * * every_minute", ahead) as fast,
    ):
        await step_through(ahead, [fast], 3)  # 10:00 .. 10:02
        async with running(second_driver, "* * * * * every_minute", behind) as slow:
            behind.set(at(10, 2, 30))  # catches up on 09:57 .. 10:02
            await slow.until_offered(at(10, 2))
    assert schedule_of(sync_connection, "every_minute") == minutes(at(10, 0), 3)
    # The slow worker's loop starts at 09:57 and catches up to 10:02; the database refuses
    # every one of those minutes, all older than or equal to last_execution (10:02).
    assert [event.timestamp for event in slow.scheduled] == minutes(at(9, 57), 6)
    assert all(not event.scheduled for event in slow.scheduled)
    assert all(event.already_scheduled == ("every_minute",) for event in slow.scheduled)


# ----------------------------------------------------------------------- clocks and ticks


async def test_a_late_wake_up_schedules_its_minute_once(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    clock = ManualCronClock(START)
    async with running(driver, "* * * * * every_minute", clock) as events:
        clock.set(at(10, 0, 59))  # the timer fired 59 seconds late
        await events.until_offered(at(10, 0))
        clock.set(at(10, 1, 0))  # and the next one exactly on time
        await events.until_offered(at(10, 1))
    assert schedule_of(sync_connection, "every_minute") == [at(10, 0), at(10, 1)]
    assert [tick.timestamp for tick in events.ticks] == [at(10, 0), at(10, 1)]


@pytest.mark.parametrize("jump", [3, 45], ids=["within-fill", "beyond-fill"])
async def test_a_clock_jumping_forward_catches_up_every_minute(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any], jump: int
) -> None:
    # Node catches up minute by minute however far the clock jumped, and these jobs are
    # not backfilled ones: the scheduler was running all along.
    clock = ManualCronClock(START)
    async with running(driver, "* * * * * every_minute ?fill=10m", clock) as events:
        await step_through(clock, [events], 1)
        clock.advance(timedelta(minutes=jump))
        for minute in minutes(at(10, 1), jump):
            await events.until_offered(minute)
    assert schedule_of(sync_connection, "every_minute") == minutes(at(10, 0), jump + 1)
    assert all(not row["payload"]["_cron"]["backfilled"] for row in cron_jobs(sync_connection))
    assert [tick.timestamp for tick in events.ticks] == minutes(at(10, 0), jump + 1)


async def test_a_clock_set_back_repeats_no_minute(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    clock = ManualCronClock(START)
    async with running(driver, "* * * * * every_minute", clock) as events:
        await step_through(clock, [events], 4)  # 10:00 .. 10:03
        clock.set(at(10, 1, 10))  # back by two and a half minutes
        clock.set(at(10, 2, 40))
        clock.set(at(10, 4, 5))
        await events.until_offered(at(10, 4))
    assert schedule_of(sync_connection, "every_minute") == minutes(at(10, 0), 5)
    assert [tick.timestamp for tick in events.ticks] == minutes(at(10, 0), 5)


# --------------------------------------------------------------------------------- backfill


async def test_backfill_after_an_outage_schedules_missed_minutes_once(
    driver: DatabaseDriver,
    driver_name: str,
    database_url: str,
    sync_connection: psycopg.Connection[Any],
) -> None:
    crontab = "* * * * * every_minute ?fill=10m"
    clock = ManualCronClock(START)
    async with running(driver, crontab, clock) as events:
        await step_through(clock, [events], 2)  # 10:00, 10:01
    clock.set(at(10, 6, 30))  # every worker was down for 10:02 .. 10:06
    async with (
        create_driver(database_url, driver=driver_name) as second_driver,
        running(driver, crontab, clock) as first,
        running(second_driver, crontab, clock) as second,
    ):
        # Both backfill; whichever reads last_execution later skips what the other has
        # done already, so wait for each minute from either.
        for minute in minutes(at(10, 2), 5):
            await eventually(partial(offered_by_any, [first, second], minute))
        await step_through(clock, [first, second], 1)  # 10:07, live again

    rows = cron_jobs(sync_connection)
    assert [row["run_at"] for row in rows] == minutes(at(10, 0), 8)
    assert [row["payload"]["_cron"]["backfilled"] for row in rows] == (
        [False] * 2 + [True] * 5 + [False]
    )
    assert rows[2]["payload"]["_cron"]["ts"] == "2030-01-01T10:02:00.000Z"


async def test_backfill_reaches_back_no_further_than_fill(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    crontab = "* * * * * every_minute ?fill=3m"
    clock = ManualCronClock(START)
    async with running(driver, crontab, clock) as events:
        await step_through(clock, [events], 1)  # 10:00
    clock.set(at(10, 9, 30))  # down for 10:01 .. 10:09; fill reaches back to 10:06:30
    async with running(driver, crontab, clock) as events:
        for minute in minutes(at(10, 7), 3):
            await events.until_offered(minute, backfilled=True)
        await step_through(clock, [events], 1)  # 10:10
    assert schedule_of(sync_connection, "every_minute") == [at(10, 0), *minutes(at(10, 7), 4)]


async def test_backfill_starts_after_the_last_execution(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    clock = ManualCronClock(START)
    async with running(driver, "* * * * * every_minute", clock) as events:
        await step_through(clock, [events], 3)  # 10:00 .. 10:02, without fill
    clock.set(at(10, 4, 30))
    # A fill of an hour reaches back before 10:00, but nothing before last_execution is
    # offered, and last_execution (10:02) itself is refused by the database.
    async with running(driver, "* * * * * every_minute ?fill=1h", clock) as events:
        await events.until_offered(at(10, 4), backfilled=True)
        await step_through(clock, [events], 1)
    assert schedule_of(sync_connection, "every_minute") == minutes(at(10, 0), 6)
    assert [event.timestamp for event in events.scheduled if event.backfilled] == [
        at(10, 2),
        at(10, 3),
        at(10, 4),
    ]
    assert events.scheduled[0].already_scheduled == ("every_minute",)


async def test_a_new_entry_is_not_backfilled(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    clock = ManualCronClock(START)
    async with running(driver, "* * * * * old_task ?fill=1h", clock) as events:
        await step_through(clock, [events], 1)  # 10:00
    clock.set(at(10, 3, 30))
    crontab = "* * * * * old_task ?fill=1h\n* * * * * new_task ?fill=1h"
    async with running(driver, crontab, clock) as events:
        await events.until_offered(at(10, 3), backfilled=True)
        await step_through(clock, [events], 1)  # 10:04
    assert schedule_of(sync_connection, "old_task") == minutes(at(10, 0), 5)
    assert schedule_of(sync_connection, "new_task") == [at(10, 4)]
    assert known_crontabs(sync_connection)["new_task"] == (at(10, 3, 30), at(10, 4))


async def test_an_outage_while_running_is_backfilled_after_the_restart(
    driver: DatabaseDriver,
    sync_connection: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualCronClock(START)
    async with running(driver, "* * * * * every_minute ?fill=5m", clock) as events:
        await step_through(clock, [events], 1)  # 10:00
        # A real failure: the table the scheduler needs disappears for a while.
        sync_connection.execute(
            "alter table graphile_worker._private_known_crontabs rename to cron_hidden"
        )
        clock.advance(timedelta(minutes=1))
        await eventually(lambda: "Cron scheduling failed" in caplog.text)
        sync_connection.execute(
            "alter table graphile_worker.cron_hidden rename to _private_known_crontabs"
        )
        # The scheduler restarts (with Node's back-off), backfilling what it missed.
        await events.until_offered(at(10, 1), backfilled=True)
        await step_through(clock, [events], 1)  # 10:02
    rows = cron_jobs(sync_connection)
    assert [row["run_at"] for row in rows] == minutes(at(10, 0), 3)
    assert [row["payload"]["_cron"]["backfilled"] for row in rows] == [False, True, False]


# ----------------------------------------------------------------------------- job options


async def test_crontab_options_become_job_options(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    crontab = (
        "0 10 * * * report ?queue=reports&priority=3&max=7\n"
        "* * * * * digest ?jobKey=the-digest {kind: 'daily'}\n"
        "* * * * * debounced ?jobKey=debounce&jobKeyMode=preserve_run_at\n"
    )
    clock = ManualCronClock(START)
    async with running(driver, crontab, clock) as events:
        await step_through(clock, [events], 3)  # 10:00 .. 10:02

    rows = {row["task_identifier"]: row for row in cron_jobs(sync_connection)}
    assert len(cron_jobs(sync_connection)) == 3
    report = rows["report"]
    assert (report["queue_name"], report["priority"], report["max_attempts"]) == ("reports", 3, 7)
    assert report["run_at"] == at(10, 0)
    # jobKey (replace mode by default): each minute's job replaced the waiting one.
    digest = rows["digest"]
    assert digest["key"] == "the-digest"
    assert digest["run_at"] == at(10, 2)
    assert digest["payload"] == {
        "kind": "daily",
        "_cron": {"ts": "2030-01-01T10:02:00.000Z", "backfilled": False},
    }
    # preserve_run_at: the payload moves on, the run_at stays the first minute's.
    debounced = rows["debounced"]
    assert debounced["run_at"] == at(10, 0)
    assert debounced["payload"]["_cron"]["ts"] == "2030-01-01T10:02:00.000Z"
    assert (digest["priority"], digest["max_attempts"], digest["queue_name"]) == (0, 25, None)


async def test_the_handler_sees_the_cron_payload(driver: DatabaseDriver) -> None:
    seen: list[tuple[object, datetime]] = []

    @task("tick")
    async def tick(payload: Any, ctx: WorkerContext) -> None:
        seen.append((payload, ctx.job.run_at))

    # A clock an hour behind the database's, so the scheduled job is runnable at once.
    now = datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(hours=1)
    clock = ManualCronClock(now)
    async with running(driver, "* * * * * tick", clock, tasks=[tick], poll_interval=0.05):
        clock.advance(timedelta(minutes=1))
        await eventually(lambda: bool(seen))
    minute = now.replace(second=0) + timedelta(minutes=1)
    stamp = minute.strftime("%Y-%m-%dT%H:%M:00.000Z")
    assert seen == [({"_cron": {"ts": stamp, "backfilled": False}}, minute)]


async def test_run_once_schedules_nothing(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    clock = ManualCronClock(at(10, 0))
    worker = Worker(
        options(driver, [idle], crontab="* * * * * every_minute ?fill=1h", cron_clock=clock)
    )
    await worker.run_once()
    assert cron_jobs(sync_connection) == []
    assert known_crontabs(sync_connection) == {}


# ------------------------------------------------------------------------ the crontab option


def test_a_bad_crontab_fails_when_the_options_are_built() -> None:
    with pytest.raises(CrontabError, match="line 2"):
        options("auto", [idle], crontab="* * * * * fine\n* * * * bad_line\n")


def test_a_crontab_file_is_read_when_the_options_are_built(tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("# comment\n0 4 * * * nightly ?fill=1d\n")
    built = options("auto", [idle], crontab=path)
    path.unlink()  # already read
    assert [item.identifier for item in built.cron_items] == ["nightly"]


def test_a_missing_crontab_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CrontabError, match="does not exist"):
        options("auto", [idle], crontab=tmp_path / "missing")


def test_a_file_name_passed_as_text_gets_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crontab").write_text("* * * * * tick\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CrontabError, match=r"pathlib\.Path\('crontab'\)"):
        options("auto", [idle], crontab="crontab")


def test_builders_and_parsed_items_mix() -> None:
    built = options(
        "auto",
        [idle],
        crontab=[cron("tick").every_minute().fill(minutes=5), *parse_crontab("0 4 * * * nightly")],
    )
    assert [item.to_line() for item in built.cron_items] == [
        "* * * * * tick ?fill=5m",
        "0 4 * * * nightly",
    ]


def test_items_with_one_identifier_are_refused() -> None:
    items = parse_crontab("* * * * * tick") + parse_crontab("0 * * * * tick")
    with pytest.raises(CrontabError, match="duplicate cron identifier 'tick'"):
        options("auto", [idle], crontab=items)


def test_the_clock_must_be_a_clock() -> None:
    with pytest.raises(ConfigurationError, match="cron_clock"):
        options("auto", [idle], cron_clock=datetime.now)


# ------------------------------------------------------------------- decisions, without I/O


class TestPlan:
    """The pure decisions behind the scheduler, on edge cases the clock tests do not reach."""

    def test_minutes_round_like_node(self) -> None:
        assert ceil_minute(at(10, 0)) == at(10, 0)
        assert ceil_minute(at(10, 0) + timedelta(microseconds=1)) == at(10, 1)
        assert floor_minute(at(10, 0, 59)) == at(10, 0)
        assert iso_minute(at(10, 0)) == "2030-01-01T10:00:00.000Z"

    def test_timer_checks(self) -> None:
        assert timer_check(at(10, 1), at(10, 0, 59)) == "early"
        assert timer_check(at(10, 1), at(10, 1, 0)) == "on_time"
        assert timer_check(at(10, 1), at(10, 1, 59)) == "on_time"
        assert timer_check(at(10, 1), at(10, 2)) == "late"

    def test_backfill_window_counts_seconds_of_fill(self) -> None:
        [item] = parse_crontab("* * * * * tick ?fill=90s")
        known = {"tick": KnownCrontab("tick", at(9, 0), None)}
        steps = list(backfill_steps([item], known, at(10, 5, 30)))
        # 10:05:30 minus 90 s is 10:04:00, a whole minute: it is in, as in Node.
        assert [step.minute for step in steps] == [at(10, 4), at(10, 5)]

    def test_backfill_walks_each_item_within_its_own_fill(self) -> None:
        short, long = parse_crontab("* * * * * short ?fill=2m\n*/5 * * * * long ?fill=1h")
        known = {
            "short": KnownCrontab("short", at(9, 0), at(9, 58)),
            "long": KnownCrontab("long", at(9, 0), at(9, 40)),
        }
        steps = [
            (step.minute, [item.identifier for item in step.items])
            for step in backfill_steps([short, long], known, at(10, 0, 30))
        ]
        assert steps == [
            (at(9, 40), ["long"]),
            (at(9, 45), ["long"]),
            (at(9, 50), ["long"]),
            (at(9, 55), ["long"]),
            (at(9, 59), ["short"]),
            (at(10, 0), ["short", "long"]),
        ]

    def test_no_backfill_without_fill_or_for_unknown_items(self) -> None:
        items = parse_crontab("* * * * * plain\n* * * * * new ?fill=1h")
        known = {"plain": KnownCrontab("plain", at(9, 0), at(9, 30))}
        assert list(backfill_steps(items, known, at(10, 0, 30))) == []
