"""No job can crash a worker: undecodable payloads and handlers raising ``BaseException``.

A poison job fails alone, with its attempt spent and ``last_error`` saying why; every other
job of the same claim runs exactly once, and the worker goes on. Handler runs are counted
in memory, in this process; what the worker recorded is read over a separate connection,
without decoding the payload column (these payloads would break any JSON decoder).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest

from graphile_worker import LocalQueueOptions
from graphile_worker._json import MAX_DEPTH, UndecodableJson
from graphile_worker.hooks import Failed, JobComplete, JobStart, Observer, Outcome, Plugin, Run
from graphile_worker.spec import Job, JobSpec
from graphile_worker.task import task
from graphile_worker.worker import RunOnceSummary, Worker, WorkerContext

from .conftest import eventually, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.hooks import RunDecision
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio

CLAIMS = pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"concurrency": 4}, id="claims"),
        pytest.param(
            {
                "concurrency": 4,
                "local_queue": LocalQueueOptions(size=10),
                "complete_job_batch_delay": 0.02,
                "fail_job_batch_delay": 0.02,
            },
            id="local-queue-batched",
        ),
    ],
)
"""Jobs claimed a few at a time with outcomes written one by one; or all in one batch
into the local queue, with outcomes written in batches (one bad outcome would spoil its
batch)."""


class Halt(BaseException):
    """A custom ``BaseException``, as some libraries define for their own control flow."""


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def add_raw_job(
    connection: psycopg.Connection[Any],
    identifier: str,
    payload: str,
    *,
    flags: list[str] | None = None,
) -> int:
    """Queue a job whose payload is ``payload``, stored as text, unchecked.

    PostgreSQL's json input function refuses nesting deeper than its stack allows (100,000
    levels, say), while a json column holds whatever text it is given. A binary-coercible
    cast from text, created and dropped inside the transaction, stores the text unchecked:
    a bad row inserted with plain SQL, as a buggy writer or a restore could leave it.
    """
    with connection.transaction():
        connection.execute("create cast (text as json) without function")
        row = connection.execute(
            "select (graphile_worker.add_job(%s, flags => %s)).id", (identifier, flags)
        ).fetchone()
        assert row is not None
        connection.execute(
            "update graphile_worker._private_jobs set payload = CAST(CAST(%s AS text) AS json)"
            " where id = %s",
            (payload, row[0]),
        )
        connection.execute("drop cast (text as json)")
    job_id: int = row[0]
    return job_id


def rows(connection: psycopg.Connection[Any]) -> dict[int, dict[str, Any]]:
    """Every job by id, without its payload or flags (never decoded here)."""
    cursor = connection.execute(
        "select id, attempts, max_attempts, last_error, locked_by, locked_at,"
        " length(payload::text) as size"
        " from graphile_worker._private_jobs order by id"
    )
    names = [column.name for column in cursor.description or ()]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def assert_failed_once(row: dict[str, Any] | None, last_error: str) -> None:
    assert row is not None, "a failed job stays in the table"
    assert row["attempts"] == 1, "the attempt is spent"
    assert row["locked_by"] is None and row["locked_at"] is None, "and the job unlocked"
    assert row["last_error"] == last_error


def assert_failed_for_good(row: dict[str, Any] | None, last_error: str) -> None:
    """A job whose payload (or flags) cannot be decoded: failed at once, not retried."""
    assert row is not None, "a failed job stays in the table"
    assert row["attempts"] == row["max_attempts"] == 25, "no attempt is left to retry"
    assert row["locked_by"] is None and row["locked_at"] is None, "and the job unlocked"
    assert row["last_error"] == last_error


class Counter:
    """Tasks that count their runs: ``count`` (async) and ``count_sync`` (def)."""

    def __init__(self) -> None:
        self.runs: list[int] = []
        self._lock = threading.Lock()

        @task("count")
        async def count(payload: dict[str, int]) -> None:
            self.runs.append(payload["n"])

        @task("count_sync")
        def count_sync(payload: dict[str, int]) -> None:
            with self._lock:
                self.runs.append(payload["n"])

        self.tasks: list[object] = [count, count_sync]


# ---------------------------------------------------------------------- undecodable payloads


@CLAIMS
@pytest.mark.parametrize("depth", [3000, 100_000])
async def test_a_payload_nested_too_deep_fails_its_job_alone_and_its_claim_runs(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    settings: dict[str, Any],
    depth: int,
) -> None:
    counter = Counter()
    await utils.add_jobs([("count", {"n": n}) for n in range(3)])
    poison = add_raw_job(sync_connection, "count", nested(depth))
    await utils.add_jobs([("count_sync", {"n": n}) for n in range(3, 6)])

    summary = await Worker(options(driver, counter.tasks, **settings)).run_once()

    assert summary == RunOnceSummary(completed=6, failed=1, permanently_failed=1)
    assert sorted(counter.runs) == list(range(6)), "every other job ran, once"
    left = rows(sync_connection)
    assert list(left) == [poison]
    assert_failed_for_good(
        left[poison],
        f"payload could not be decoded: nested {depth} levels deep; graphile-worker decodes "
        f"JSON nested at most {MAX_DEPTH} levels; the handler was not called (store a "
        "payload the worker can decode, or remove the job)",
    )
    assert left[poison]["size"] == 2 * depth + 1, "the payload is left as it was"


@CLAIMS
async def test_other_undecodable_payloads_fail_their_jobs_alone(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    settings: dict[str, Any],
) -> None:
    counter = Counter()
    await utils.add_job("count", {"n": 0})
    huge_number = add_raw_job(sync_connection, "count", '{"n": ' + "9" * 5000 + "}")
    not_json = add_raw_job(sync_connection, "count", '{"n": 1,')
    await utils.add_job("count_sync", {"n": 1})

    summary = await Worker(options(driver, counter.tasks, **settings)).run_once()

    assert summary == RunOnceSummary(completed=2, failed=2, permanently_failed=2)
    assert sorted(counter.runs) == [0, 1]
    left = rows(sync_connection)
    assert list(left) == [huge_number, not_json]
    assert left[huge_number]["last_error"].startswith(
        "payload could not be decoded: Exceeds the limit (4300 digits) for integer string "
        "conversion"
    )
    assert left[not_json]["last_error"].startswith(
        "payload could not be decoded: not valid JSON (Expecting"
    )
    for row in left.values():
        assert row["attempts"] == row["max_attempts"] and row["locked_by"] is None


async def test_payloads_nested_up_to_the_limit_reach_their_handler(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    bottoms: list[object] = []

    @task("walk")
    async def walk(payload: Any) -> None:
        for _ in range(MAX_DEPTH):
            (payload,) = payload
        bottoms.append(payload)

    # A 20-digit integer: beyond 64 bits, decoded by json rather than orjson.
    for inner in ("1", "12345678901234567890"):
        add_raw_job(sync_connection, "walk", nested(MAX_DEPTH, inner))
    summary = await Worker(options(driver, [walk])).run_once()
    assert summary == RunOnceSummary(completed=2)
    assert bottoms == [1, 12345678901234567890]


@dataclasses.dataclass
class Tree:
    children: list[Tree]


async def test_a_payload_too_deep_for_a_recursive_payload_type_fails_cleanly(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    # Decoding into a type that contains itself recurses per level: a few hundred levels
    # of JSON exhaust Python's recursion limit long before the JSON decoder's.
    depths: list[int] = []

    @task("grow")
    async def grow(payload: Tree) -> None:
        depth = 0
        while payload.children:
            (payload,) = payload.children
            depth += 1
        depths.append(depth)

    def tree(depth: int) -> str:
        return '{"children": [' * depth + '{"children": []}' + "]}" * depth

    add_raw_job(sync_connection, "grow", tree(20))
    deep = add_raw_job(sync_connection, "grow", tree(MAX_DEPTH // 2 - 1))
    summary = await Worker(options(driver, [grow])).run_once()
    assert summary == RunOnceSummary(completed=1, failed=1, permanently_failed=1)
    assert depths == [20]
    assert_failed_for_good(
        rows(sync_connection)[deep],
        "task 'grow' cannot decode its payload as Tree: payload: nested too deeply to decode "
        "(Python's recursion limit was reached); send a shallower payload",
    )


async def test_flags_that_cannot_be_decoded_fail_the_job(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    counter = Counter()
    job = await utils.add_job("count", {"n": 0}, spec=JobSpec(flags=["a"]))
    other = await utils.add_job("count", {"n": 1}, spec=JobSpec(flags=["b"]))
    # Flags are a flat object when Node or we write them; hand-written SQL can do worse.
    sync_connection.execute(
        "update graphile_worker._private_jobs set flags = CAST(%s AS jsonb) where id = %s",
        ('{"a": ' + nested(3000) + "}", job.id),
    )
    summary = await Worker(options(driver, counter.tasks, concurrency=2)).run_once()
    assert summary == RunOnceSummary(completed=1, failed=1, permanently_failed=1)
    assert counter.runs == [1]
    left = rows(sync_connection)
    assert list(left) == [job.id] and other.id not in left
    assert left[job.id]["last_error"].startswith(
        "flags could not be decoded: nested 3001 levels deep"
    )


async def test_worker_utils_read_jobs_whose_payload_cannot_be_decoded(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    poison = add_raw_job(sync_connection, "count", nested(3000))
    fine = await utils.add_job("count", {"n": 1})
    failed = await utils.permanently_fail_jobs([poison, fine.id], "given up")
    assert [job.id for job in failed] == [poison, fine.id]
    marker = failed[0].payload
    assert isinstance(marker, UndecodableJson)
    assert marker.reason.startswith("nested 3000 levels deep")
    assert failed[1].payload == {"n": 1}
    (completed,) = await utils.complete_jobs([poison])
    assert completed.id == poison and isinstance(completed.payload, UndecodableJson)
    assert rows(sync_connection).keys() == {fine.id}


# -------------------------------------------------------------------------------- batch jobs


async def test_a_batch_job_with_an_undecodable_payload_fails_and_others_run(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    items: list[object] = []

    @task("batch", batch=True)
    async def batch(payload: list[Any]) -> None:
        items.extend(payload)

    good = await utils.add_job("batch", [1, 2])
    poison = add_raw_job(sync_connection, "batch", nested(3000))
    summary = await Worker(options(driver, [batch], concurrency=2)).run_once()
    assert summary == RunOnceSummary(completed=1, failed=1, permanently_failed=1)
    assert items == [1, 2]
    left = rows(sync_connection)
    assert good.id not in left
    assert left[poison]["last_error"].startswith("payload could not be decoded: nested 3000")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('["ok", 1e400]', id="number-beyond-a-float"),
        pytest.param('["ok", "\\u0000"]', id="nul-character"),
    ],
)
async def test_failed_batch_items_that_cannot_be_stored_keep_the_whole_payload(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    payload: str,
) -> None:
    # The failed items are decoded JSON; written back they would be text PostgreSQL
    # refuses (Infinity, \u0000), and the statement would lose every outcome in its batch.
    @task("picky", batch=True)
    async def picky(payload: list[Any]) -> list[Exception | None]:
        return [None if item == "ok" else ValueError("not ok") for item in payload]

    @task("plain_failure")
    async def plain_failure(payload: Any) -> None:
        raise RuntimeError("fails as usual")

    picky_job = add_raw_job(sync_connection, "picky", payload)
    plain = await utils.add_job("plain_failure", {})
    summary = await Worker(
        options(driver, [picky, plain_failure], concurrency=2, fail_job_batch_delay=0.05)
    ).run_once()
    assert summary == RunOnceSummary(failed=2)
    left = rows(sync_connection)
    assert_failed_once(left[picky_job], "Batch failures:\nnot ok")
    assert left[picky_job]["size"] == len(payload), "every item is kept for the retry"
    assert_failed_once(left[plain.id], "fails as usual")


# -------------------------------------------------------------- handlers raising BaseException

RAISED: dict[str, tuple[BaseException, str]] = {
    "exit": (SystemExit(), "SystemExit"),
    "interrupt": (KeyboardInterrupt(), "KeyboardInterrupt"),
    "halt": (Halt("halted by the handler"), "halted by the handler"),
}
"""What a raising job raises, by its payload's ``kind``, and the ``last_error`` expected."""


class Raisers:
    """``raise_async``/``raise_sync`` raise by kind; ``overlap`` jobs run while they do."""

    def __init__(self) -> None:
        self.counter = Counter()
        self.raised: list[str] = []
        self.overlapped: list[str] = []
        self._lock = threading.Lock()
        self._all_raised = threading.Event()
        expected = 2 * len(RAISED)

        def record(kind: str) -> None:
            with self._lock:
                self.raised.append(kind)
                if len(self.raised) == expected:
                    self._all_raised.set()

        @task("raise_async")
        async def raise_async(payload: dict[str, str]) -> None:
            record(payload["kind"])
            raise RAISED[payload["kind"]][0].with_traceback(None)

        @task("raise_sync")
        def raise_sync(payload: dict[str, str]) -> None:
            record(payload["kind"])
            if payload["kind"] == "exit":
                sys.exit()
            raise RAISED[payload["kind"]][0].with_traceback(None)

        # Started before the raising jobs and still running while they raise.
        @task("overlap_async")
        async def overlap_async(payload: Any) -> None:
            # Raising jobs run in threads too: wait for their threading.Event in one.
            assert await anyio.to_thread.run_sync(self._all_raised.wait, 10)
            self.overlapped.append("async")

        @task("overlap_sync")
        def overlap_sync(payload: Any) -> None:
            assert self._all_raised.wait(10)
            with self._lock:
                self.overlapped.append("sync")

        self.tasks: list[object] = [
            *self.counter.tasks,
            raise_async,
            raise_sync,
            overlap_async,
            overlap_sync,
        ]


async def add_raisers(utils: WorkerUtils) -> dict[int, str]:
    """Two overlapping jobs, then one raising job per kind and style; expected errors by id."""
    await utils.add_jobs([("overlap_async", {}), ("overlap_sync", {})])
    expected: dict[int, str] = {}
    for identifier in ("raise_async", "raise_sync"):
        for kind, (_, last_error) in RAISED.items():
            job = await utils.add_job(identifier, {"kind": kind})
            expected[job.id] = last_error
    return expected


@CLAIMS
async def test_a_handler_raising_a_base_exception_fails_its_job_and_the_worker_goes_on(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    settings: dict[str, Any],
) -> None:
    raisers = Raisers()
    expected = await add_raisers(utils)
    await utils.add_jobs([("count", {"n": n}) for n in range(4)])
    await utils.add_jobs([("count_sync", {"n": n}) for n in range(4, 8)])
    worker = Worker(
        options(driver, raisers.tasks, **{**settings, "concurrency": 10, "poll_interval": 0.1})
    )

    def settled() -> bool:
        left = rows(sync_connection)
        return left.keys() == expected.keys() and all(
            row["locked_by"] is None for row in left.values()
        )

    with anyio.fail_after(20):
        async with worker:
            await eventually(settled, within=15)
            # Still running: a job added now runs too.
            await utils.add_job("count", {"n": 8})
            await eventually(lambda: 8 in raisers.counter.runs, within=5)

    assert sorted(raisers.counter.runs) == list(range(9)), "every other job ran, once"
    assert sorted(raisers.overlapped) == ["async", "sync"]
    assert sorted(raisers.raised) == sorted(2 * list(RAISED))
    left = rows(sync_connection)
    assert left.keys() == expected.keys()
    for job_id, last_error in expected.items():
        assert_failed_once(left[job_id], last_error)


async def test_a_base_exception_from_run_once_jobs_is_a_failure_too(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    raisers = Raisers()
    expected = await add_raisers(utils)
    summary = await Worker(options(driver, raisers.tasks, concurrency=8)).run_once()
    assert summary == RunOnceSummary(completed=2, failed=len(expected))
    left = rows(sync_connection)
    for job_id, last_error in expected.items():
        assert_failed_once(left[job_id], last_error)


async def test_a_cancellation_exception_a_handler_raises_itself_fails_its_job(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    # On asyncio a handler meets one when it awaits a task that was cancelled; here it
    # re-raises the one a cancel scope of its own delivered. The worker is not stopping,
    # so this is the handler's failure, not the worker's cancellation.
    counter = Counter()
    caught: list[BaseException] = []

    @task("own_cancellation")
    async def own_cancellation(payload: Any) -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                await anyio.sleep(1)
            except anyio.get_cancelled_exc_class() as cancelled:
                caught.append(cancelled)
                raise
        raise caught[0]

    job = await utils.add_job("own_cancellation", {})
    await utils.add_jobs([("count", {"n": n}) for n in range(3)])
    summary = await Worker(
        options(driver, [own_cancellation, *counter.tasks], concurrency=2)
    ).run_once()
    assert summary == RunOnceSummary(completed=3, failed=1)
    assert sorted(counter.runs) == [0, 1, 2]
    row = rows(sync_connection)[job.id]
    assert row["attempts"] == 1 and row["locked_by"] is None
    (cancelled,) = caught
    assert isinstance(cancelled, anyio.get_cancelled_exc_class())
    assert row["last_error"] == (str(cancelled) or type(cancelled).__name__)


async def test_the_workers_own_cancellation_still_releases_the_job(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    started = anyio.Event()

    @task("forever")
    async def forever(payload: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    job = await utils.add_job("forever", {})
    worker = Worker(options(driver, [forever], shutdown_grace_period=0.05))
    with anyio.fail_after(10):
        async with worker:
            await started.wait()
    row = rows(sync_connection)[job.id]
    assert row["attempts"] == 0, "interrupted by the shutdown: the attempt is refunded"
    assert row["last_error"] is None and row["locked_by"] is None


# ------------------------------------------------------------------------------------- hooks


class Unruly(Observer):
    """Raises a ``BaseException`` when told about the job whose payload is ``{"n": 2}``."""

    def on_job_start(self, event: JobStart) -> None:
        if event.job.payload == {"n": 2}:
            raise Halt("observer halted")

    async def on_job_complete(self, event: JobComplete) -> None:
        if event.job.payload == {"n": 2}:
            raise KeyboardInterrupt


async def test_a_base_exception_from_a_hook_fails_or_spares_the_job_but_never_the_worker(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    counter = Counter()

    def before(job: Job, ctx: WorkerContext) -> RunDecision:
        if job.payload == {"n": 0}:
            raise SystemExit(3)
        return Run()

    async def after(job: Job, ctx: WorkerContext, outcome: Outcome) -> Outcome:
        if job.payload == {"n": 1}:
            raise KeyboardInterrupt
        return outcome

    jobs = [await utils.add_job("count", {"n": n}) for n in range(4)]
    hooks = [Plugin("unruly", before_job_run=[before], after_job_run=[after]), Unruly()]
    summary = await Worker(options(driver, counter.tasks, hooks=hooks)).run_once()

    # Interceptors decide outcomes: raising, they fail the job. Observers only watch.
    assert summary == RunOnceSummary(completed=2, failed=2)
    assert sorted(counter.runs) == [1, 2, 3]
    left = rows(sync_connection)
    assert left.keys() == {jobs[0].id, jobs[1].id}
    assert_failed_once(left[jobs[0].id], "3")
    assert_failed_once(left[jobs[1].id], "KeyboardInterrupt")


# ---------------------------------------------------------------------- failures of failures


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def test_errors_whose_message_cannot_be_stored_are_still_recorded(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    raised: dict[str, Exception] = {
        "surrogate": ValueError("bad \udce9 byte"),  # as os.fsdecode() makes of b"\xe9"
        "unprintable": Unprintable(),
        "plain": ValueError("kaboom"),
    }

    @task("fail_with")
    async def fail_with(payload: dict[str, str]) -> None:
        raise raised[payload["kind"]]

    jobs = {kind: await utils.add_job("fail_with", {"kind": kind}) for kind in raised}
    outcomes: list[Outcome] = []

    def watch(job: Job, ctx: WorkerContext, outcome: Outcome) -> Outcome:
        outcomes.append(outcome)
        return outcome

    summary = await Worker(
        options(
            driver,
            [fail_with],
            concurrency=3,
            fail_job_batch_delay=0.05,
            hooks=[Plugin("watch", after_job_run=[watch])],
        )
    ).run_once()

    assert summary == RunOnceSummary(failed=3), "one bad message spoils no batch"
    left = rows(sync_connection)
    assert_failed_once(left[jobs["surrogate"].id], "bad \\udce9 byte")
    assert_failed_once(
        left[jobs["unprintable"].id],
        "Unprintable (its message could not be read: RuntimeError in __str__)",
    )
    assert_failed_once(left[jobs["plain"].id], "kaboom")
    # Interceptors still see the handler's own exceptions.
    assert {id(outcome.error) for outcome in outcomes if isinstance(outcome, Failed)} == {
        id(error) for error in raised.values()
    }
