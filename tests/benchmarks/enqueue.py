"""Figure 5: how fast jobs go in, through ``add_jobs``, a raw INSERT and single ``add_job`` calls.

Every variant starts from the same Python dicts and a connection that is already open,
and runs in a fresh database:

* ``add_jobs`` in chunks of :data:`~.workload.CHUNK` (how an application queueing many
  jobs would call it), and once with the whole list in one call;
* the raw INSERT: the same chunks as one multi-row ``INSERT ... VALUES`` each, through
  the same driver library, with the payloads serialised by ``json.dumps``. It produces the
  same rows ``add_jobs`` does for these specs (the task id looked up by identifier, every
  other column from the table's defaults, one ``jobs:insert`` notification per
  statement) but does none of the rest: no task or queue upsert, no job-key handling, no
  full rows returned and decoded into ``Job`` objects (it returns the new ids only);
* ``add_job`` called once per job, each call its own statement and commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread

from .environment import BenchError, BenchServer
from .processes import count_jobs
from .results import Figure, Report, progress
from .workload import CHUNK, TASK, payload

ENQUEUE_PAIRS = (("asyncpg", "asyncio"), ("psycopg", "asyncio"), ("psycopg-threaded", "trio"))

_ENSURE_TASK = (
    "insert into graphile_worker._private_tasks (identifier) values ({0}) on conflict do nothing"
)


def raw_insert_sql(rows: int, placeholder: Callable[[int], str]) -> str:
    """A multi-row INSERT of ``rows`` payloads; parameter 1 is the task, 2 the notify text."""
    values = ", ".join(f"(CAST({placeholder(index + 3)} AS json))" for index in range(rows))
    return (
        "with task as (select tasks.id from graphile_worker._private_tasks as tasks "
        f"where tasks.identifier = {placeholder(1)}), "
        f"wake as (select pg_notify('jobs:insert', {placeholder(2)})) "
        "insert into graphile_worker._private_jobs (task_id, payload) "
        f"select task.id, chunk.payload from task, wake, (values {values}) as chunk (payload) "
        "returning id"
    )


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _notify_text(count: int) -> str:
    return json.dumps({"count": count})


# ------------------------------------------------------------------------- raw clients


async def _raw_asyncpg(url: str, payloads: Sequence[dict[str, int]]) -> float:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await connection.execute(_ENSURE_TASK.format("$1"), TASK)
        for chunk in _chunks(payloads, CHUNK):
            sql = raw_insert_sql(len(chunk), lambda number: f"${number}")
            texts = [json.dumps(item) for item in chunk]
            await connection.fetch(sql, TASK, _notify_text(len(chunk)), *texts)
        return time.perf_counter() - started
    finally:
        await connection.close()


async def _raw_psycopg_async(url: str, payloads: Sequence[dict[str, int]]) -> float:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        started = time.perf_counter()
        await connection.execute(_ENSURE_TASK.format("%s"), (TASK,))
        for chunk in _chunks(payloads, CHUNK):
            sql = raw_insert_sql(len(chunk), lambda _: "%s")
            texts = [json.dumps(item) for item in chunk]
            cursor = await connection.execute(sql, [TASK, _notify_text(len(chunk)), *texts])
            await cursor.fetchall()
        return time.perf_counter() - started


async def _raw_psycopg_threaded(url: str, payloads: Sequence[dict[str, int]]) -> float:
    """Sync psycopg, each statement in a worker thread, as the threaded driver runs them."""
    import psycopg

    connection = await anyio.to_thread.run_sync(lambda: psycopg.connect(url, autocommit=True))
    try:
        started = time.perf_counter()
        await anyio.to_thread.run_sync(connection.execute, _ENSURE_TASK.format("%s"), (TASK,))
        for chunk in _chunks(payloads, CHUNK):
            sql = raw_insert_sql(len(chunk), lambda _: "%s")
            texts = [json.dumps(item) for item in chunk]
            params = [TASK, _notify_text(len(chunk)), *texts]
            await anyio.to_thread.run_sync(_execute_fetchall, connection, sql, params)
        return time.perf_counter() - started
    finally:
        await anyio.to_thread.run_sync(connection.close)


def _execute_fetchall(connection: Any, sql: str, params: list[str]) -> list[Any]:
    return connection.execute(sql, params).fetchall()  # type: ignore[no-any-return]


RAW_CLIENTS = {
    "asyncpg": _raw_asyncpg,
    "psycopg": _raw_psycopg_async,
    "psycopg-threaded": _raw_psycopg_threaded,
}


# ------------------------------------------------------------------------------ library


async def _add_jobs(url: str, driver: str, payloads: Sequence[dict[str, int]], chunk: int) -> float:
    from graphile_worker import WorkerUtils

    async with await WorkerUtils.connect(url, driver=driver) as utils:
        started = time.perf_counter()
        for part in _chunks(payloads, chunk):
            await utils.add_jobs([(TASK, item) for item in part])
        return time.perf_counter() - started


async def _add_job_calls(url: str, driver: str, payloads: Sequence[dict[str, int]]) -> float:
    from graphile_worker import WorkerUtils

    async with await WorkerUtils.connect(url, driver=driver) as utils:
        started = time.perf_counter()
        for item in payloads:
            await utils.add_job(TASK, item)
        return time.perf_counter() - started


def _timed(
    server: BenchServer,
    label: str,
    runtime: str,
    count: int,
    call: Callable[[str], Awaitable[float]],
) -> float:
    """Run ``call(url)`` in a fresh database on ``runtime``; rate per second, count checked."""
    with server.fresh_database() as url:
        seconds = anyio.run(call, url, backend=runtime)
        stored = count_jobs(url)
    if stored != count:
        raise BenchError(f"{label}: {stored} job(s) stored, {count} expected")
    return count / seconds


def enqueue_figures(
    report: Report, server: BenchServer, *, jobs: int, single_calls: int, runs: int
) -> None:
    """add_jobs (chunked and in one call), raw INSERT and add_job rates for each driver."""
    payloads = [payload(number) for number in range(jobs)]
    singles = payloads[:single_calls]
    rates: dict[tuple[str, str], list[float]] = {}

    def record(key: tuple[str, str], value: float) -> None:
        rates.setdefault(key, []).append(value)

    for round_number in range(1, runs + 1):
        for driver, runtime in ENQUEUE_PAIRS:
            label = f"{driver}/{runtime}"
            progress(f"enqueue {label}: run {round_number}/{runs}")

            async def chunked(url: str, driver: str = driver) -> float:
                return await _add_jobs(url, driver, payloads, CHUNK)

            async def one_call(url: str, driver: str = driver) -> float:
                return await _add_jobs(url, driver, payloads, len(payloads))

            async def raw(url: str, driver: str = driver) -> float:
                return await RAW_CLIENTS[driver](url, payloads)

            async def single(url: str, driver: str = driver) -> float:
                return await _add_job_calls(url, driver, singles)

            record((label, "add_jobs"), _timed(server, label, runtime, jobs, chunked))
            record((label, "one_call"), _timed(server, label, runtime, jobs, one_call))
            record((label, "raw"), _timed(server, label, runtime, jobs, raw))
            record((label, "add_job"), _timed(server, label, runtime, len(singles), single))

    for driver, runtime in ENQUEUE_PAIRS:
        label = f"{driver}/{runtime}"
        chunked_rates = rates[(label, "add_jobs")]
        raw_rates = rates[(label, "raw")]
        report.emit(
            Figure(
                "enqueue",
                f"enqueue add_jobs {label}",
                "jobs/s",
                chunked_rates,
                measured=f"{jobs:,} jobs, add_jobs in chunks of {CHUNK:,}",
            )
        )
        report.emit(
            Figure(
                "enqueue",
                f"enqueue add_jobs one call {label}",
                "jobs/s",
                rates[(label, "one_call")],
                measured=f"{jobs:,} jobs in a single add_jobs call",
            )
        )
        report.emit(
            Figure(
                "enqueue",
                f"enqueue raw INSERT {label}",
                "jobs/s",
                raw_rates,
                measured=f"{jobs:,} rows, multi-row INSERT in chunks of {CHUNK:,}",
            )
        )
        report.emit(
            Figure(
                "enqueue",
                f"enqueue ratio add_jobs / raw INSERT {label}",
                "ratio",
                [ours / theirs for ours, theirs in zip(chunked_rates, raw_rates, strict=True)],
                measured="chunked add_jobs rate / raw INSERT rate, per round",
            )
        )
        report.emit(
            Figure(
                "enqueue",
                f"add_job calls {label}",
                "calls/s",
                rates[(label, "add_job")],
                measured=f"{len(singles):,} sequential add_job calls, one commit each",
            )
        )
