"""Two Python workers and one Node worker share a crontab file, a database and a clock.

Every scheduler runs on the same simulated time, moved by the test: our workers on a
:class:`~graphile_worker.worker._cron_clock.ManualCronClock`, Node's through
``cron_worker.mjs``, which gives graphile-worker's ``cron.js`` (and nothing else in Node) a
simulated ``Date`` and timers. No test waits for a real minute.

1. **Live**: the clock moves minute by minute (and once by several minutes, which every
   scheduler catches up on); after each move the test waits until all three schedulers
   have offered the minute's jobs. Each minute's job exists exactly once.
2. **Outage and backfill**: all three stop, the clock jumps past several minutes, all three
   start again and backfill what the outage missed (the crontab has ``fill``), racing one
   another for every missed minute; then a few live minutes more. Still one job per
   minute, the missed ones marked ``backfilled``.

Nobody knows the scheduled tasks, so every job stays in the table to be counted.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from graphile_worker.hooks import CronScheduled, Observer
from graphile_worker.task import task
from graphile_worker.worker import Worker, WorkerOptions
from graphile_worker.worker._cron_clock import ManualCronClock

from .conftest import CUSTOM_SCHEMA, DEFAULT_SCHEMA
from .node import INTEROP_DIR
from .processes import WorkerProcess
from .tables import eventually, jobs

pytestmark = [pytest.mark.anyio, pytest.mark.node]

UTC = timezone.utc
START = datetime(2030, 1, 1, 9, 59, 30, tzinfo=UTC)
"""Moves always land half-way through a minute: Node's simulated time also runs at the
real rate between moves, and half a minute of slack keeps it inside the intended one."""

CRONTAB = """\
# Shared by every worker of the fleet.
* * * * * fleet_minute ?fill=30m {source: 'crontab'}
*/3 * * * * fleet_third ?id=fleet-third&fill=30m&queue=fleet-cron&priority=2&max=4
"""


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2030, 1, 1, hour, minute, second, tzinfo=UTC)


def minutes(first: datetime, last: datetime) -> list[datetime]:
    count = int((last - first) / timedelta(minutes=1)) + 1
    return [first + timedelta(minutes=n) for n in range(count)]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture
def schema(anyio_backend: str) -> str:
    """One schema per runtime (custom on asyncio, default on trio), to keep the fleet short."""
    return CUSTOM_SCHEMA if anyio_backend == "asyncio" else DEFAULT_SCHEMA


@task("cron_fleet_unused")
async def unused(payload: Any) -> None:
    """Our workers' only task; the scheduled ones are left alone."""


class Offers(Observer):
    """The minutes one of our workers offered, live and backfilled, and what it added."""

    def __init__(self) -> None:
        self.events: list[CronScheduled] = []

    def on_cron_scheduled(self, event: CronScheduled) -> None:
        self.events.append(event)

    def offered(self, minute: datetime, *, backfilled: bool = False) -> bool:
        return any(
            event.timestamp == minute and event.backfilled == backfilled for event in self.events
        )

    def added(self) -> int:
        return sum(len(event.scheduled) for event in self.events)


class NodeCronWorker(WorkerProcess):
    """Node graphile-worker on a simulated clock (``cron_worker.mjs``)."""

    def __init__(self, url: str, schema: str, crontab: Path, now: datetime) -> None:
        node = shutil.which("node")
        assert node is not None
        options = {
            "connection": url,
            "schema": schema,
            "crontabFile": str(crontab),
            "now": iso(now),
        }
        # Node reads DATABASE_URL, PG* and GRAPHILE_* settings; the options say it all.
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GRAPHILE_", "PG")) and key != "DATABASE_URL"
        }
        super().__init__(
            "the Node cron worker",
            [node, str(INTEROP_DIR / "cron_worker.mjs"), json.dumps(options)],
            environment=environment,
        )

    def set_clock(self, moment: datetime) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        process.stdin.write((json.dumps({"now": iso(moment)}) + "\n").encode())
        process.stdin.flush()

    def offered(self, minute: datetime, *, backfilled: bool = False) -> bool:
        name = "cron:backfill" if backfilled else "cron:scheduled"
        return any(
            event.get("event") == name and event.get("timestamp") == iso(minute)
            for event in self.logs().events
        )

    def started_cron(self) -> bool:
        return any(event.get("event") == "cron:started" for event in self.logs().events)


class Fleet:
    """Two of our workers and a Node worker, one clock; see the module docstring."""

    def __init__(self, url: str, schema: str, crontab: Path) -> None:
        self.url = url
        self.schema = schema
        self.crontab = crontab
        self.clock = ManualCronClock(START)
        self.node: NodeCronWorker | None = None
        self.ours: list[Offers] = []
        self.node_errors: list[str] = []
        self.our_additions = 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """All three running from the clock's current time; stopped gracefully on exit."""
        node = NodeCronWorker(self.url, self.schema, self.crontab, self.clock.now())
        await anyio.to_thread.run_sync(node.start)
        self.node = node
        try:
            async with AsyncExitStack() as stack:
                self.ours = []
                for _ in range(2):
                    offers = Offers()
                    options = WorkerOptions(
                        tasks=[unused],
                        database_url=self.url,
                        schema=self.schema,
                        crontab=self.crontab,
                        cron_clock=self.clock,
                        hooks=[offers],
                        install_signal_handlers=False,
                        migrate=False,
                        poll_interval=10.0,
                    )
                    await stack.enter_async_context(Worker(options))
                    self.ours.append(offers)
                await eventually(node.started_cron, what="Node's cron to start")
                yield
                self.our_additions += sum(offers.added() for offers in self.ours)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(node.kill)
            raise
        with anyio.CancelScope(shield=True):
            output = await anyio.to_thread.run_sync(node.stop)
        self.node_errors += output.messages("error", "warning")

    async def move_to(self, moment: datetime) -> None:
        """Set every scheduler's clock; wait until all three offered each minute crossed."""
        before = self.clock.now().replace(second=0, microsecond=0)
        self.clock.set(moment)
        assert self.node is not None
        self.node.set_clock(moment)
        for minute in minutes(before + timedelta(minutes=1), moment.replace(second=0)):
            await self.until_all_offered(minute)

    def backfilled_by_anyone(self, minute: datetime) -> bool:
        node_did = self.node is not None and self.node.offered(minute, backfilled=True)
        return node_did or any(offers.offered(minute, backfilled=True) for offers in self.ours)

    async def until_all_offered(self, minute: datetime, *, backfilled: bool = False) -> None:
        node = self.node
        assert node is not None
        await eventually(
            lambda: (
                node.offered(minute, backfilled=backfilled)
                and all(offers.offered(minute, backfilled=backfilled) for offers in self.ours)
            ),
            what=f"all three schedulers to offer {minute:%H:%M}"
            + (" (backfill)" if backfilled else ""),
        )


def cron_jobs(db: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    return sorted(jobs(db, schema), key=lambda row: (row["task_identifier"], row["run_at"]))


def schedule_of(db: psycopg.Connection[Any], schema: str, task_identifier: str) -> list[datetime]:
    return [
        row["run_at"] for row in cron_jobs(db, schema) if row["task_identifier"] == task_identifier
    ]


async def test_each_minute_is_scheduled_once_across_python_and_node(
    interop_url: str, schema: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text(CRONTAB)
    fleet = Fleet(interop_url, schema, crontab)

    # 1. Live: minute by minute, then a jump of three minutes.
    async with fleet.running():
        for minute in minutes(at(10, 0), at(10, 4)):
            await fleet.move_to(minute + timedelta(seconds=30))
        await fleet.move_to(at(10, 7, 30))

    assert schedule_of(db, schema, "fleet_minute") == minutes(at(10, 0), at(10, 7))
    assert schedule_of(db, schema, "fleet_third") == [at(10, 0), at(10, 3), at(10, 6)]

    # 2. Everything stops; 10:08 .. 10:14 pass unseen; everyone starts again and backfills.
    fleet.clock.set(at(10, 14, 30))
    async with fleet.running():
        # Whoever reads last_execution after another's backfill skips what it did, so
        # each missed minute is waited for from anyone.
        for minute in minutes(at(10, 8), at(10, 14)):
            await eventually(
                partial(fleet.backfilled_by_anyone, minute),
                what=f"a backfill of {minute:%H:%M}",
            )
        for minute in minutes(at(10, 15), at(10, 17)):
            await fleet.move_to(minute + timedelta(seconds=30))

    rows = cron_jobs(db, schema)
    every_minute = [row for row in rows if row["task_identifier"] == "fleet_minute"]
    assert [row["run_at"] for row in every_minute] == minutes(at(10, 0), at(10, 17))
    missed = set(minutes(at(10, 8), at(10, 14)))
    for row in every_minute:
        assert row["payload"] == {
            "source": "crontab",
            "_cron": {"ts": iso(row["run_at"]), "backfilled": row["run_at"] in missed},
        }
    thirds = [row for row in rows if row["task_identifier"] == "fleet_third"]
    assert [row["run_at"] for row in thirds] == [
        at(10, 0),
        at(10, 3),
        at(10, 6),
        at(10, 9),
        at(10, 12),
        at(10, 15),
    ]
    assert {(row["queue_name"], row["priority"], row["max_attempts"]) for row in thirds} == {
        ("fleet-cron", 2, 4)
    }
    assert Counter(row["run_at"] for row in every_minute).most_common(1)[0][1] == 1
    assert fleet.node_errors == []
    print(
        f"\n{len(rows)} cron jobs; our two workers added {fleet.our_additions}, "
        f"Node added {len(rows) - fleet.our_additions}"
    )
