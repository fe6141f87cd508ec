"""The contract between graphile-worker and a database client library.

Two families of executor share one vocabulary of four calls (``execute``, ``fetch``,
``fetchrow``, ``fetchval``) and ``execute_script``:

* :class:`AsyncExecutor` - awaited; implemented by every :class:`DatabaseDriver` and by the
  adapters over a caller's SQLAlchemy ``AsyncConnection``/``AsyncSession``;
* :class:`SyncExecutor` - plain calls; implemented by the adapters over a sync psycopg
  connection and a caller's SQLAlchemy ``Connection``/``Session``.

SQL handed to an executor uses ``:name`` placeholders (see :mod:`graphile_worker.sql`); each
implementation translates them for its client. Rows come back as read-only mappings whose
``json``/``jsonb`` columns are already decoded to Python values.

Operations that must run on both families (migrations, adding jobs, cleanup) are written
once as generators of :class:`Statement` and driven by :func:`run_sync` or :func:`run_async`
(the sans-I/O pattern): all decisions stay in plain code, the runners only move data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = [
    "AsyncExecutor",
    "DatabaseDriver",
    "Notification",
    "Operation",
    "Params",
    "Row",
    "Statement",
    "SyncExecutor",
    "drive_async",
    "drive_sync",
    "fetch_values",
    "perform_async",
    "perform_sync",
    "run_async",
    "run_sync",
]

Row = Mapping[str, Any]
Params = Mapping[str, Any]
T = TypeVar("T")
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Notification:
    """One ``NOTIFY`` received on a channel this process listens to."""

    channel: str
    payload: str


@runtime_checkable
class AsyncExecutor(Protocol):
    """Something that runs SQL asynchronously: a driver, a transaction, an adapter."""

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; return the number of rows it affected (-1 when unknown)."""
        ...

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one statement and return every row."""
        ...

    async def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        """Run one statement and return its first row, or ``None``."""
        ...

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        """Run one statement and return the first column of its first row, or ``None``."""
        ...

    async def execute_script(self, sql: str) -> None:
        """Run several ``;``-separated statements without parameters (DDL, migrations)."""
        ...


@runtime_checkable
class SyncExecutor(Protocol):
    """The blocking twin of :class:`AsyncExecutor`, for sync code and Alembic."""

    def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; return the number of rows it affected (-1 when unknown)."""
        ...

    def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one statement and return every row."""
        ...

    def fetchrow(self, sql: str, params: Params | None = None) -> Row | None:
        """Run one statement and return its first row, or ``None``."""
        ...

    def fetchval(self, sql: str, params: Params | None = None) -> Any:
        """Run one statement and return the first column of its first row, or ``None``."""
        ...

    def execute_script(self, sql: str) -> None:
        """Run several ``;``-separated statements without parameters (DDL, migrations)."""
        ...


@runtime_checkable
class DatabaseDriver(AsyncExecutor, Protocol):
    """A pool of connections to one database, owned by graphile-worker.

    Calls made directly on the driver run in autocommit mode on any pooled connection.
    """

    def transaction(self) -> AbstractAsyncContextManager[AsyncExecutor]:
        """Open a transaction on one connection: commit on normal exit, roll back on error."""
        ...

    def listen(
        self, *channels: str
    ) -> AbstractAsyncContextManager[AsyncIterator[Notification]] | None:
        """Listen on ``channels`` from a dedicated connection, or ``None`` if unsupported.

        The iterator survives connection loss: it reconnects by itself with back-off and
        re-issues ``LISTEN``. Callers should treat a reconnect as "something may have been
        missed" and poll once; the iterator yields a notification on the pseudo-channel
        ``""`` after each reconnect to say so.
        """
        ...

    async def aclose(self) -> None:
        """Close every connection; the driver cannot be used afterwards."""
        ...

    async def __aenter__(self) -> Self:
        """Return the driver itself, so ``async with await create_driver(...)`` closes it."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the driver (:meth:`aclose`)."""
        ...


ResultKind = Literal["execute", "fetch", "fetchrow", "fetchval", "script"]


@dataclass(frozen=True, slots=True)
class Statement:
    """One step of an :data:`Operation`: run ``sql`` and send back the result of ``kind``."""

    kind: ResultKind
    sql: str
    params: Params = field(default_factory=dict)


Operation = Generator[Statement, Any, T]
"""A database operation written once: it yields statements and receives their results."""


def drive_sync(plan: Generator[S, Any, T], perform: Callable[[S], Any]) -> T:
    """Run ``plan`` to completion, handing each yielded step to ``perform``.

    The result of ``perform`` is sent back into the plan; an exception it raises is thrown
    into the plan at the ``yield``, so the plan may translate or recover from it.
    """
    try:
        step = next(plan)
        while True:
            try:
                result = perform(step)
            except Exception as error:  # noqa: BLE001, PERF203 - the plan decides what it means
                step = plan.throw(error)
            else:
                step = plan.send(result)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]


async def drive_async(plan: Generator[S, Any, T], perform: Callable[[S], Awaitable[Any]]) -> T:
    """The async twin of :func:`drive_sync`."""
    try:
        step = next(plan)
        while True:
            try:
                result = await perform(step)
            except Exception as error:  # noqa: BLE001, PERF203 - the plan decides what it means
                step = plan.throw(error)
            else:
                step = plan.send(result)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]


def run_sync(operation: Operation[T], executor: SyncExecutor) -> T:
    """Drive ``operation`` to completion on a blocking executor."""
    return drive_sync(operation, lambda statement: perform_sync(statement, executor))


async def run_async(operation: Operation[T], executor: AsyncExecutor) -> T:
    """Drive ``operation`` to completion on an async executor."""
    return await drive_async(operation, lambda statement: perform_async(statement, executor))


def perform_sync(statement: Statement, executor: SyncExecutor) -> Any:
    """Run one :class:`Statement` on a blocking executor and return its result."""
    if statement.kind == "script":
        executor.execute_script(statement.sql)
        return None
    method = getattr(executor, statement.kind)
    return method(statement.sql, statement.params)


async def fetch_values(
    executor: AsyncExecutor, sql: str, params: Params, columns: Sequence[str]
) -> Sequence[Sequence[Any]]:
    """Run one statement and return each row as its values in ``columns`` order.

    ``columns`` must be the statement's own result columns, in order. The worker claims
    hundreds of jobs per statement and reads every column of every row once; a dict per
    row (the :meth:`~AsyncExecutor.fetch` contract) costs as much as the job object built
    from it. So the bundled drivers offer ``_fetch_values``, which hands back their client's
    own rows (asyncpg records, psycopg tuples), indexable by position; any other executor
    goes through :meth:`~AsyncExecutor.fetch` and the values are picked out by name.
    """
    native: Callable[[str, Params], Awaitable[Sequence[Sequence[Any]]]] | None = getattr(
        executor, "_fetch_values", None
    )
    if native is not None:
        return await native(sql, params)
    rows = await executor.fetch(sql, params)
    if len(columns) == 1:
        return [(row[columns[0]],) for row in rows]
    pick = itemgetter(*columns)
    return [pick(row) for row in rows]


async def perform_async(statement: Statement, executor: AsyncExecutor) -> Any:
    """Run one :class:`Statement` on an async executor and return its result."""
    if statement.kind == "script":
        await executor.execute_script(statement.sql)
        return None
    method = getattr(executor, statement.kind)
    return await method(statement.sql, statement.params)
