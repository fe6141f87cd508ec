"""Daemon threads for plain ``def`` handlers, so that one that never returns cannot hold the process.

Python cannot stop a thread: when the shutdown grace period runs out, a handler still
running is abandoned and its job released. On asyncio, anyio's worker threads are ordinary
threads, which the interpreter joins before it exits, so one stuck handler kept
``graphile-worker run`` alive until a second signal killed it (status 143), and kept a
program whose ``Worker.run()`` had returned from ending. Here handlers run on a process-wide
pool of daemon threads instead, reused from job to job (starting a thread costs far more
than handing it a call), and each wakes its awaiting task through the event loop's
``call_soon_threadsafe``. On trio, handlers keep running in trio's own worker threads, which
are daemon threads already, through ``anyio.to_thread``.

Handlers in these threads can call back into the loop as they could in anyio's:
``anyio.from_thread.run``/``run_sync`` without a token, ``anyio.from_thread.check_cancelled``
and ``ctx.call_async``. That takes marking the thread the way anyio marks its own, in
anyio's private thread-local state; if a later anyio moves it, only the token-less calls stop
working (``ctx.call_async`` passes its token) and ``tests/test_task.py`` says so.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar, cast

import anyio
import anyio.lowlevel
import anyio.to_thread
import sniffio

if TYPE_CHECKING:
    from anyio import CapacityLimiter
    from anyio.lowlevel import EventLoopToken
    from typing_extensions import TypeVarTuple, Unpack

    PosArgsT = TypeVarTuple("PosArgsT")

__all__ = ["IDLE_SECONDS", "run_in_daemon_thread"]

T = TypeVar("T")

IDLE_SECONDS = 10.0
"""How long an idle thread waits for another call before it ends (as anyio's and trio's)."""

try:
    from anyio._core import _eventloop

    _ANYIO_THREAD_STATE: threading.local | None = _eventloop.threadlocals
except (ImportError, AttributeError):  # pragma: no cover - a future anyio
    _ANYIO_THREAD_STATE = None


async def run_in_daemon_thread(
    function: Callable[[Unpack[PosArgsT]], T],
    *args: Unpack[PosArgsT],
    limiter: CapacityLimiter | None = None,
) -> T:
    """Call ``function(*args)`` in a daemon thread and return (or raise) what it did.

    ``limiter`` bounds the threads in use at once (default: anyio's shared limiter). If the
    awaiting task is cancelled, the call is abandoned at once: the limiter's token is given
    back, the thread runs on by itself and its result is dropped. Whatever the function
    raised, any :class:`BaseException`, is raised here unchanged.
    """
    if sniffio.current_async_library() == "trio":
        return await anyio.to_thread.run_sync(
            function, *args, limiter=limiter, abandon_on_cancel=True
        )
    token = anyio.lowlevel.current_token()
    async with limiter or anyio.to_thread.current_default_thread_limiter():
        done = anyio.Event()
        call = _Call(function, args, token, done.set)
        with anyio.CancelScope() as scope:
            call.scope = scope
            _POOL.submit(call)
            try:
                await done.wait()
            except BaseException:
                call.abandoned = True  # a call no thread has started yet never starts
                raise
    error = call.error
    if error is not None:
        try:
            raise error
        finally:
            del error, call  # the traceback would otherwise keep this frame alive
    return cast("T", call.result)  # set, since nothing was raised


class _Call(Generic[T]):
    """One handler call on its way to a thread and its outcome on the way back."""

    __slots__ = (
        "abandoned",
        "args",
        "context",
        "error",
        "function",
        "result",
        "scope",
        "token",
        "wake",
    )

    def __init__(
        self,
        function: Callable[..., T],
        args: tuple[object, ...],
        token: EventLoopToken,
        wake: Callable[[], None],
    ) -> None:
        self.function = function
        self.args = args
        self.token = token
        self.wake = wake
        self.context = contextvars.copy_context()  # contextvars reach the handler, as in anyio
        self.scope: anyio.CancelScope | None = None
        self.abandoned = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        """Call the function in the caller's context; in the thread, never raises."""
        if self.abandoned:
            return
        state = _ANYIO_THREAD_STATE
        if state is not None:
            # What anyio's own worker threads carry: from_thread.run without a token, and
            # check_cancelled, read them.
            state.current_token = self.token
            state.current_cancel_scope = self.scope
        try:
            self.result = self.context.run(_outside_the_loop, self.function, self.args)
        except BaseException as error:  # noqa: BLE001 - raised again in the awaiting task
            self.error = error
        finally:
            if state is not None:
                del state.current_token, state.current_cancel_scope

    def report(self) -> None:
        """Wake the awaiting task; in the thread, never raises."""
        schedule: Callable[[Callable[[], None]], object] = (
            self.token.native_token.call_soon_threadsafe  # type: ignore[attr-defined]
        )
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            schedule(self.wake)


def _outside_the_loop(function: Callable[..., T], args: tuple[object, ...]) -> T:
    # The context was copied from a task on the loop; in the thread, no async library runs,
    # and sniffio must say so (anyio clears it in its threads the same way).
    sniffio.current_async_library_cvar.set(None)
    return function(*args)


class _DaemonThreadPool:
    """Daemon threads, each waiting on its own inbox for the next call.

    The most recently idle thread is handed the next call, so under a light load a few warm
    threads do all the work and the rest time out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[_Call[object]]] = []

    def submit(self, call: _Call[T]) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(
                target=self._work, args=(inbox,), name="graphile-worker handler", daemon=True
            ).start()
        inbox.put(call)  # type: ignore[arg-type]  # the inbox holds calls of any type

    def _work(self, inbox: queue.SimpleQueue[_Call[object]]) -> None:
        while True:
            try:
                call = inbox.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if inbox not in self._idle:
                        continue  # handed a call just now: it is in the inbox
                    self._idle.remove(inbox)
                return
            call.run()
            # Idle again before the task wakes, so its next call can reuse this thread.
            with self._lock:
                self._idle.append(inbox)
            call.report()
            del call

    def forget_threads(self) -> None:
        """After ``fork()`` only the forking thread exists in the child: start afresh."""
        self._lock = threading.Lock()
        self._idle = []


_POOL = _DaemonThreadPool()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.forget_threads)
