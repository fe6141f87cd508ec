"""A plain ``def`` handler that never returns: abandoned at the end of the grace period.

Python cannot stop a thread. The worker must still end its run on time, release the job
without spending its attempt, and leave the thread as a daemon thread, which the interpreter
does not wait for at exit (``tests/cli/test_stuck_handler_shutdown.py`` checks the exit of
a real process). The threads handlers run in are checked here too: reused from job to job,
daemon threads, and still able to call back into the loop.
"""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
import sniffio

from graphile_worker.task import Task, task
from graphile_worker.worker import Worker, WorkerContext

from .conftest import eventually, job_row, options

if TYPE_CHECKING:
    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio

CTX: Any = object()


async def test_run_returns_after_the_grace_period_leaving_a_daemon_thread(
    driver: DatabaseDriver, utils: WorkerUtils, sync_connection: psycopg.Connection[Any]
) -> None:
    release = threading.Event()
    finished = threading.Event()
    threads: list[threading.Thread] = []

    @task("stuck")
    def stuck(payload: Any, ctx: WorkerContext) -> None:
        threads.append(threading.current_thread())
        release.wait()  # only the test's clean-up sets it; the worker never will
        finished.set()

    worker = Worker(options(driver, [stuck], shutdown_grace_period=0.2))
    job = await utils.add_job("stuck", {})
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(worker.run)
                await eventually(lambda: bool(threads))
                worker.stop()
        # run() has returned while the handler is still blocked.
        [thread] = threads
        assert thread.is_alive()
        assert thread.daemon, "a non-daemon thread would keep the interpreter from exiting"
        assert not release.is_set()
        row = job_row(sync_connection, job.id)
        assert row is not None
        assert (row["attempts"], row["locked_by"], row["locked_at"]) == (0, None, None)
    finally:
        release.set()
    assert await anyio.to_thread.run_sync(finished.wait, 10)


async def test_sync_handlers_share_reused_daemon_threads(anyio_backend: str) -> None:
    seen: list[threading.Thread] = []

    def where() -> None:
        seen.append(threading.current_thread())

    made = Task.from_function(where, "where")
    for _ in range(3):
        await made.execute({}, CTX)
    assert all(thread.daemon for thread in seen)
    assert threading.current_thread() not in seen
    if anyio_backend == "asyncio":
        # Our pool: a thread is idle again before its task wakes, so the next job gets it.
        # On trio the threads are trio's own cache, which reuses them too, but not always
        # the same one.
        assert len(set(seen)) == 1, "each job started a thread of its own"


class Stop(BaseException):
    """Not an Exception: must still come back unchanged."""


async def test_whatever_the_handler_raises_comes_back_unchanged(anyio_backend: str) -> None:
    raised = [Stop("base"), KeyError("key"), SystemExit(3)]

    def fail(payload: int) -> None:
        raise raised[payload]

    made = Task.from_function(fail, "fail")
    for index, error in enumerate(raised):
        with pytest.raises(BaseException) as caught:  # checked by identity below
            await made.execute(index, CTX)
        assert caught.value is error


async def test_the_thread_sees_the_callers_context_but_no_event_loop(anyio_backend: str) -> None:
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable")
    variable.set("from the task")
    seen: list[tuple[str, str | None]] = []

    def look() -> None:
        try:
            library: str | None = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = None
        seen.append((variable.get(), library))

    await Task.from_function(look, "look").execute({}, CTX)
    assert seen == [("from the task", None)]


async def test_the_thread_can_call_back_into_the_loop(anyio_backend: str) -> None:
    # What handlers could do in anyio's worker threads, without passing a token.
    seen: list[object] = []

    async def on_loop(value: int) -> int:
        await anyio.lowlevel.checkpoint()
        return value + 1

    def calls_back() -> None:
        anyio.from_thread.check_cancelled()
        seen.append(anyio.from_thread.run_sync(sniffio.current_async_library))
        seen.append(anyio.from_thread.run(on_loop, 1))

    await Task.from_function(calls_back, "calls_back").execute({}, CTX)
    assert seen == [anyio_backend, 2]
