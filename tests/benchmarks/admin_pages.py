"""Admin pages at depth: every page of :mod:`graphile_worker.admin` over a million jobs.

Run ``python -m tests.benchmarks --only admin`` (one figure per page, in the summary and the
targets) or ``python -m tests.benchmarks.admin_pages [--jobs N] [--runs N]`` (the same, on
its own). It queues ``N`` jobs (default 1,000,000) with ``add_jobs`` in a realistic mix:
eight tasks of uneven popularity, a sixth of the jobs in twenty named queues, a tenth
scheduled for later, some with job keys, flags or priorities. Plain SQL then makes some
permanently failed (with a traceback as ``last_error``), some retrying, a few dozen locked
by four workers (two registered, one of them stale, two unregistered Node-style holders,
with their named queues locked too), and records a few known crontabs. After one
``VACUUM ANALYZE`` (what autovacuum does on its own soon after such a load) each page is
requested in-process (httpx's ASGI transport, the app over an asyncpg driver, on asyncio):
one warm-up request, then ``--runs`` timed ones, and the median, p95 and worst are printed.
Figures only: a slow page is reported, never failed; a page that does not answer 200 is a
broken benchmark (exit status 1).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .environment import BenchError, BenchServer, describe_machine, load_average
from .results import Figure, Report, percentile, progress

if TYPE_CHECKING:
    import httpx

    from graphile_worker import JobSpec, WorkerUtils

FULL_JOBS = 1_000_000
QUICK_JOBS = 20_000
FULL_RUNS = 15
QUICK_RUNS = 5
BATCH = 5_000
PASSWORD = "bench-password"
SCHEMA = "graphile_worker"

# Popularity of each task, out of 100: a few tasks carry most of the load.
TASK_WEIGHTS = {
    "send_email": 40,
    "resize_image": 20,
    "sync_account": 12,
    "deliver_webhook": 10,
    "generate_report": 7,
    "charge_card": 5,
    "index_document": 4,
    "cleanup_tmp": 2,
}
TASK_CYCLE = tuple(name for name, weight in TASK_WEIGHTS.items() for _ in range(weight))
QUEUES = tuple(f"tenant-{number:02d}" for number in range(20))
CRONTAB = """\
# Recurring jobs of the benchmark's imaginary application.
0 4 * * * generate_report ?id=nightly_report {kind:"nightly"}
*/15 * * * * sync_account ?id=sync_all
30 2 * * 0 cleanup_tmp
0 * * * * index_document ?id=reindex_hourly
*/5 * * * * deliver_webhook ?id=retry_webhooks
"""
TRACEBACK = """Traceback (most recent call last):
  File "/srv/app/tasks/{task}.py", line 42, in {task}
    response = await client.post(url, json=payload, timeout=10)
  File "/srv/app/venv/lib/python3.12/site-packages/httpx/_client.py", line 1905, in post
    return await self.request("POST", url, json=json)
httpx.ConnectTimeout: timed out connecting to upstream for job {id}"""


@dataclass
class PageTiming:
    """The timed requests of one page."""

    label: str
    path: str
    milliseconds: list[float] = field(default_factory=list)
    size: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.milliseconds)

    @property
    def p95(self) -> float:
        return percentile(self.milliseconds, 0.95)


# --------------------------------------------------------------------------------- data


def _spec(number: int, now: datetime) -> JobSpec | None:
    """The mix of one job, decided by its number so that every run builds the same table."""
    from graphile_worker import JobSpec

    fields: dict[str, Any] = {}
    if number % 6 == 1:
        fields["queue_name"] = QUEUES[(number // 6) % len(QUEUES)]
    if number % 10 == 2:
        fields["run_at"] = now + timedelta(minutes=5 + number % 10_000)
    if number % 50 == 3:
        fields["job_key"] = f"account:{number}:sync"
    if number % 33 == 4:
        fields["flags"] = ["slow"] if number % 2 else ["premium", "eu"]
    if number % 20 == 5:
        fields["priority"] = -5 if number % 3 else 10
    if number % 25 == 6:
        fields["max_attempts"] = 5
    return JobSpec(**fields) if fields else None


def _payload(task: str, number: int) -> dict[str, object]:
    """A payload of the size and shape real applications send (a few hundred bytes)."""
    if task == "send_email":
        return {
            "to": f"user{number}@example.com",
            "template": "welcome" if number % 3 else "password_reset",
            "locale": "en-GB",
            "variables": {"first_name": "Ada", "account_id": number},
        }
    if task == "resize_image":
        return {"bucket": "uploads", "key": f"img/{number:08d}.jpg", "sizes": [64, 256, 1024]}
    return {"account_id": number % 50_000, "requested_by": "scheduler", "attempt_note": None}


async def _fill(utils: WorkerUtils, jobs: int) -> None:
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    for first in range(0, jobs, BATCH):
        batch = []
        for number in range(first, min(first + BATCH, jobs)):
            task = TASK_CYCLE[number % len(TASK_CYCLE)]
            batch.append((task, _payload(task, number), _spec(number, now)))
        await utils.add_jobs(batch)
        if first and first % 200_000 == 0:
            progress(f"queued {first:,} jobs")
    elapsed = time.perf_counter() - started
    progress(f"queued {jobs:,} jobs in {elapsed:.1f} s ({jobs / elapsed:,.0f} jobs/s)")


def _shape(url: str) -> None:
    """Fail, retry and lock some jobs, register workers and crontabs, then vacuum."""
    import psycopg

    jobs = f"{SCHEMA}._private_jobs"
    queues = f"{SCHEMA}._private_job_queues"
    tasks = f"{SCHEMA}._private_tasks"
    error = "replace(replace(%(error)s, '{task}', t.identifier), '{id}', j.id::text)"
    with psycopg.connect(url, autocommit=True) as connection:
        # 1.5 % permanently failed, updated at some time in the last two days.
        connection.execute(
            f"update {jobs} as j set attempts = j.max_attempts, last_error = {error}, "
            "updated_at = now() - (j.id %% 2880) * interval '1 minute' "
            f"from {tasks} as t where t.id = j.task_id and j.id %% 67 = 5",
            {"error": TRACEBACK},
        )
        # 2 % waiting for a retry after one to three failed attempts.
        connection.execute(
            f"update {jobs} as j set attempts = 1 + j.id %% 3, last_error = {error}, "
            "run_at = now() + (j.id %% 60) * interval '1 minute' "
            f"from {tasks} as t where t.id = j.task_id and j.id %% 50 = 11 "
            "and j.max_attempts > 3 and j.attempts = 0",
            {"error": TRACEBACK},
        )
        # Four workers hold 40 jobs: ten each, among them one job of each of eight queues.
        holders = ("worker-alive", "worker-stale", "node-worker-a", "node-worker-b")
        for position, holder in enumerate(holders):
            connection.execute(
                f"update {jobs} set locked_by = %s, locked_at = now() - %s * interval '1 minute', "
                "attempts = attempts + 1 where id in ("
                f"  select id from {jobs} where is_available and job_queue_id is null "
                "  and run_at <= now() order by id desc offset %s limit 8)",
                (holder, position * 7, position * 8),
            )
            for queue in QUEUES[position * 2 : position * 2 + 2]:
                connection.execute(
                    f"with q as (update {queues} set locked_by = %s, locked_at = now() "
                    "where queue_name = %s returning id) "
                    f"update {jobs} set locked_by = %s, locked_at = now(), attempts = attempts + 1 "
                    f"where id = (select min(id) from {jobs} where job_queue_id = (select id from q) "
                    "and is_available)",
                    (holder, queue, holder),
                )
        registry = f"{SCHEMA}._pyworker_workers"
        for holder, heartbeat in (("worker-alive", "5 seconds"), ("worker-stale", "20 minutes")):
            connection.execute(
                f"insert into {registry} (worker_id, hostname, pid, library_version, "
                "started_at, last_heartbeat_at, heartbeat_interval, stale_after, "
                "long_running_stale_after, recovery_delay, running_job_ids) "
                "select %s, 'web-1', 4242, 'bench', now() - interval '3 hours', "
                "now() - %s::interval, interval '30 seconds', interval '5 minutes', "
                "interval '1 hour', interval '30 seconds', "
                f"array(select id from {jobs} where locked_by = %s)",
                (holder, heartbeat, holder),
            )
        for identifier in ("nightly_report", "sync_all", "retry_webhooks", "old_removed_entry"):
            connection.execute(
                f"insert into {SCHEMA}._private_known_crontabs "
                "(identifier, known_since, last_execution) "
                "values (%s, now() - interval '30 days', now() - interval '10 minutes')",
                (identifier,),
            )
        started = time.perf_counter()
        connection.execute(f"vacuum analyze {jobs}")
        connection.execute(f"vacuum analyze {queues}")
        progress(f"vacuum analyze: {time.perf_counter() - started:.1f} s")


# -------------------------------------------------------------------------------- pages


@asynccontextmanager
async def _client(url: str, crontab: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client that calls the admin app in-process, over an asyncpg driver."""
    import httpx

    from graphile_worker.admin import AdminAuth, admin_app
    from graphile_worker.drivers import create_driver

    async with create_driver(url, driver="asyncpg", max_size=4) as database:
        app = admin_app(database, auth=AdminAuth.basic(PASSWORD), crontab=crontab)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1", auth=("admin", PASSWORD)
            ) as client:
                yield client


def _attribute(page: str, pattern: str, what: str) -> str:
    found = re.search(pattern, page)
    if found is None:
        raise BenchError(f"the admin page has no {what} (pattern {pattern!r})")
    return found.group(1)


async def _paths(client: httpx.AsyncClient) -> list[tuple[str, str, str, Mapping[str, str]]]:
    """(label, method, path, headers) of every page, with real ids, keys and links."""
    first = (await client.get("/jobs")).text
    link = _attribute(first, r'(<a\b[^>]*data-testid="next-page"[^>]*>)', "Older link")
    next_path = _path_of(_attribute(link, r'href="([^"]+)"', "Older link target"))
    failed = (await client.get("/jobs?state=failed&limit=1")).text
    failed_id = _attribute(failed, r'data-job-id="(\d+)"', "failed job row")
    fragment = {"X-Admin-Fragment": "1"}
    return [
        ("overview", "GET", "/", {}),
        ("overview, live-refresh fragment", "GET", "/", fragment),
        ("jobs, unfiltered", "GET", "/jobs", {}),
        ("jobs, live-refresh fragment", "GET", "/jobs", fragment),
        ("jobs, state=failed", "GET", "/jobs?state=failed", {}),
        ("jobs, state=locked", "GET", "/jobs?state=locked", {}),
        ("jobs, task=charge_card", "GET", "/jobs?task=charge_card", {}),
        ("jobs, queue=tenant-07", "GET", "/jobs?queue=tenant-07", {}),
        ("jobs, key=account:503:sync", "GET", "/jobs?key=account%3A503%3Async", {}),
        ("jobs, flag=slow", "GET", "/jobs?flag=slow", {}),
        ("jobs, next page", "GET", next_path, {}),
        ("job detail (failed job)", "GET", f"/jobs/{failed_id}", {}),
        ("queues", "GET", "/queues", {}),
        ("workers", "GET", "/workers", {}),
        ("cron", "GET", "/cron", {}),
        ("add form", "GET", "/add", {}),
        ("bulk retry confirmation, state=failed", "POST", "/jobs/bulk", {}),
    ]


def _path_of(href: str) -> str:
    """A link of the page as a path for the client (links may be absolute or relative)."""
    from urllib.parse import urlsplit

    parts = urlsplit(href.replace("&amp;", "&"))
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _time_pages(client: httpx.AsyncClient, runs: int) -> list[PageTiming]:
    csrf = _attribute((await client.get("/")).text, r'name="csrf-token" content="([^"]+)"', "token")
    bulk_form = {"state": "failed", "action": "retry", "csrf_token": csrf}
    timings = []
    for label, method, path, headers in await _paths(client):
        timing = PageTiming(label, path)
        for attempt in range(runs + 1):  # the first request warms the caches, untimed
            started = time.perf_counter()
            if method == "POST":
                response = await client.post(path, data=bulk_form, headers=headers)
            else:
                response = await client.get(path, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise BenchError(f"{method} {path} answered {response.status_code}")
            if attempt:
                timing.milliseconds.append(elapsed)
            timing.size = len(response.content)
        progress(f"{label}: median {timing.median:.1f} ms, p95 {timing.p95:.1f} ms")
        timings.append(timing)
    return timings


async def measure(url: str, jobs: int, runs: int) -> list[PageTiming]:
    """Fill the database at ``url`` with ``jobs`` jobs, then time every page ``runs`` times."""
    from graphile_worker import WorkerUtils

    async with await WorkerUtils.connect(url, driver="asyncpg") as utils:
        await _fill(utils, jobs)
    _shape(url)
    with tempfile.TemporaryDirectory() as directory:
        crontab = Path(directory) / "crontab"
        crontab.write_text(CRONTAB)
        async with _client(url, crontab) as client:
            return await _time_pages(client, runs)


def table(timings: list[PageTiming]) -> str:
    """The figures as the Markdown table BENCHMARKS.md shows."""
    rows = ["| page | request | median | p95 | worst | size |", "|---|---|---|---|---|---|"]
    rows += [
        f"| {timing.label} | `{timing.path}` | {timing.median:.1f} ms | {timing.p95:.1f} ms "
        f"| {max(timing.milliseconds):.1f} ms | {timing.size / 1024:.0f} KiB |"
        for timing in timings
    ]
    return "\n".join(rows)


def admin_figures(report: Report, server: BenchServer, *, jobs: int, runs: int) -> None:
    """One figure per page, named ``admin <page> at <jobs> jobs`` (milliseconds per request)."""
    try:
        import httpx  # noqa: F401

        import graphile_worker.admin  # noqa: F401
    except ImportError as error:
        report.emit(
            Figure(
                "admin", "admin pages", "ms", skipped=f"needs the admin extra and httpx: {error}"
            )
        )
        return
    with server.fresh_database() as url:
        timings = anyio.run(measure, url, jobs, runs, backend="asyncio")
    for timing in timings:
        report.emit(
            Figure(
                "admin",
                f"admin {timing.label} at {jobs:,} jobs",
                "ms",
                runs=timing.milliseconds,
                measured=f"{timing.path}, one request",
                details={"p95": timing.p95, "bytes": timing.size},
            )
        )
    print()
    print(f"Admin pages at {jobs:,} jobs ({runs} timed requests each)")
    print(table(timings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=FULL_JOBS)
    parser.add_argument("--runs", type=int, default=FULL_RUNS)
    arguments = parser.parse_args()
    report = Report()
    progress(f"machine: {describe_machine()}; load average {load_average()}")
    with BenchServer(os.environ.get("DATABASE_URL"), {}) as server:
        admin_figures(report, server, jobs=arguments.jobs, runs=arguments.runs)
    progress(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
