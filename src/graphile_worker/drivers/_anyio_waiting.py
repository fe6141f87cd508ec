"""Running psycopg's sans-I/O generators on the current anyio event loop, with no thread.

:mod:`psycopg.generators` holds libpq's protocol steps as generators that yield what they
wait for (``Wait.R``, ``Wait.W``) and take back what became ready (``Ready.R``...);
:mod:`psycopg.waiting` drives them with a selector or with asyncio's loop. This module is
the same idea for anyio, so the generators run on trio as well as on asyncio: each wait is
an ``anyio.wait_readable``/``wait_writable`` on the connection's socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import anyio
from psycopg import generators
from psycopg.waiting import Ready, Wait

if TYPE_CHECKING:
    from psycopg.abc import PQGen, PQGenConn
    from psycopg.pq.abc import PGconn

__all__ = ["cancel_query", "wait", "wait_connection"]

T = TypeVar("T")

_WAIT_R = Wait.R
_WAIT_W = Wait.W
_READY_R = Ready.R
_READY_W = Ready.W


async def wait(generator: PQGen[T], fileno: int) -> T:
    """Run ``generator`` (a query, a fetch) to its end; return what it returns.

    If the caller is cancelled, the generator is left where it stopped: the connection is
    then in the middle of a protocol exchange, and its owner must recover or close it.
    """
    try:
        state = next(generator)
        while True:
            state = generator.send(await _ready(fileno, state))
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]


async def wait_connection(generator: PQGenConn[T]) -> T:
    """Like :func:`wait`, for generators that name their socket at each step (connecting,
    cancelling), because libpq may open a new one while it tries several addresses."""
    try:
        fileno, state = next(generator)
        while True:
            fileno, state = generator.send(await _ready(fileno, state))
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    finally:
        # Closing the generator now, rather than when it is collected, lets a half-made
        # libpq connection go at once when the caller is cancelled.
        generator.close()


async def cancel_query(pgconn: PGconn) -> None:
    """Ask the server to cancel whatever ``pgconn`` runs, without blocking the loop.

    libpq 17's non-blocking cancel connection makes this one more socket to wait on; older
    libpq only has the blocking ``PQcancel``, which runs in a worker thread (cancelling is
    rare, and only ever on this path).

    Raises:
        psycopg.OperationalError: the cancel request could not be delivered.
    """
    from psycopg import capabilities

    if not capabilities.has_cancel_safe():  # pragma: no cover - libpq < 17
        import anyio.to_thread

        await anyio.to_thread.run_sync(pgconn.get_cancel().cancel)
        return
    cancel_connection = pgconn.cancel_conn()
    cancel_connection.start()
    try:
        await wait_connection(generators.cancel(cancel_connection))
    finally:
        cancel_connection.finish()


async def _ready(fileno: int, state: Wait) -> Ready:
    if state == _WAIT_R:
        await anyio.wait_readable(fileno)
        return _READY_R
    if state == _WAIT_W:
        await anyio.wait_writable(fileno)
        return _READY_W
    return await _read_or_write(fileno)


async def _read_or_write(fileno: int) -> Ready:
    """Wait until the socket is readable or writable, whichever comes first.

    libpq asks for both only while a large message does not fit in the socket's buffer: it
    must then read what the server sends meanwhile, or both sides could wait for ever.
    Rare enough that a task group per wait costs nothing worth saving.
    """
    ready = Ready.NONE
    async with anyio.create_task_group() as group:

        async def watch(direction: Ready) -> None:
            nonlocal ready
            if direction == _READY_R:
                await anyio.wait_readable(fileno)
            else:
                await anyio.wait_writable(fileno)
            ready = Ready(ready | direction)
            group.cancel_scope.cancel()

        group.start_soon(watch, _READY_R)
        group.start_soon(watch, _READY_W)
    return ready
