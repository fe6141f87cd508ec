"""Turning SIGINT/SIGTERM into a graceful stop, and a second signal into an immediate one.

Signals are received with :func:`anyio.open_signal_receiver`, which works on asyncio and
trio but only in the main thread: a worker started in another thread (or with
``install_signal_handlers=False``) leaves signals to its host. The previous handlers are
restored when the worker stops, so an application's own Ctrl-C handling comes back.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

__all__ = ["SHUTDOWN_SIGNALS", "watch_signals"]

SHUTDOWN_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a worker (Node also stops on SIGUSR2, SIGHUP and SIGABRT; those
mean other things to Python process managers, so we leave them alone)."""


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


async def watch_signals(
    *,
    graceful: Callable[[str], None],
    immediate: Callable[[str], None],
    logger: logging.Logger,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``graceful(reason)`` on the first signal and ``immediate(reason)`` on any later one.

    Reports itself started once the handlers are installed (or found impossible), so a
    signal sent after the worker has started is never missed. Runs until cancelled.
    """
    if threading.current_thread() is not threading.main_thread():
        logger.debug("Not handling signals: the worker does not run in the main thread")
        task_status.started()
        return
    started = False
    try:
        with anyio.open_signal_receiver(*SHUTDOWN_SIGNALS) as signals:
            task_status.started()
            started = True
            received = 0
            async for signum in signals:
                received += 1
                name = _name(signum)
                if received == 1:
                    logger.info(
                        "Received %s; stopping gracefully (send it again to stop at once)", name
                    )
                    graceful(f"received {name}")
                else:
                    logger.warning("Received %s again; stopping at once", name)
                    immediate(f"received {name} again")
    except (NotImplementedError, RuntimeError, ValueError) as error:
        if started:
            raise
        # Windows' asyncio loop has no signal support; a host may also forbid it.
        logger.warning("Cannot handle SIGINT/SIGTERM here (%s); use stop() instead", error)
        task_status.started()
