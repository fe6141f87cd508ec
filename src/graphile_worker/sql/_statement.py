"""Operations written once for sync and async callers, and the runners that drive them.

An :data:`Operation` is a generator: it yields a :class:`Statement` (SQL, parameters and the
kind of result it wants), receives that result, and finally returns its own value. It holds
every decision and does no I/O, so the async utilities, the sync utilities, the worker and
the migrator drive the same code (psycopg's ``generators.py`` with ``waiting.py`` is the
model). :func:`run_sync` and :func:`run_async` are the two ways to drive one; they only move
data between the operation and an executor.

The runners need no more of an executor than its five calls, described here by
:class:`SyncStatementExecutor` and :class:`AsyncStatementExecutor`. They are the structural
minimum that :class:`~graphile_worker.drivers.SyncExecutor` and
:class:`~graphile_worker.drivers.AsyncExecutor` (the documented protocols, one layer up in
``drivers``) satisfy, so that this package never imports the drivers that run it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal, Protocol, TypeAlias, TypeVar

__all__ = [
    "AsyncStatementExecutor",
    "Operation",
    "Params",
    "ResultKind",
    "Row",
    "Statement",
    "SyncStatementExecutor",
    "drive_async",
    "drive_sync",
    "fetch_values",
    "perform_async",
    "perform_sync",
    "run_async",
    "run_sync",
]

Row: TypeAlias = Mapping[str, Any]
"""One result row: column name to value, ``json``/``jsonb`` columns already decoded."""
Params: TypeAlias = Mapping[str, Any]
"""The values for a statement's ``:name`` placeholders, by name."""

T = TypeVar("T")
S = TypeVar("S")

ResultKind: TypeAlias = Literal["execute", "fetch", "fetchrow", "fetchval", "script"]
"""Which executor call runs a :class:`Statement`, and so what result the operation gets."""


@dataclass(frozen=True, slots=True)
class Statement:
    """One step of an :data:`Operation`: run ``sql`` and send back the result of ``kind``."""

    kind: ResultKind
    sql: str
    params: Params = field(default_factory=dict)


Operation: TypeAlias = Generator[Statement, Any, T]
"""A database operation written once: it yields statements and receives their results."""


class SyncStatementExecutor(Protocol):
    """What :func:`run_sync` needs: the blocking executor calls, taken by position."""

    def execute(self, sql: str, params: Params | None = None, /) -> int: ...
    def fetch(self, sql: str, params: Params | None = None, /) -> list[Row]: ...
    def fetchrow(self, sql: str, params: Params | None = None, /) -> Row | None: ...
    def fetchval(self, sql: str, params: Params | None = None, /) -> Any: ...
    def execute_script(self, sql: str, /) -> None: ...


class AsyncStatementExecutor(Protocol):
    """What :func:`run_async` needs: the awaited executor calls, taken by position."""

    async def execute(self, sql: str, params: Params | None = None, /) -> int: ...
    async def fetch(self, sql: str, params: Params | None = None, /) -> list[Row]: ...
    async def fetchrow(self, sql: str, params: Params | None = None, /) -> Row | None: ...
    async def fetchval(self, sql: str, params: Params | None = None, /) -> Any: ...
    async def execute_script(self, sql: str, /) -> None: ...


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


def run_sync(operation: Operation[T], executor: SyncStatementExecutor) -> T:
    """Drive ``operation`` to completion on a blocking executor."""
    return drive_sync(operation, lambda statement: perform_sync(statement, executor))


async def run_async(operation: Operation[T], executor: AsyncStatementExecutor) -> T:
    """Drive ``operation`` to completion on an async executor."""
    return await drive_async(operation, lambda statement: perform_async(statement, executor))


def perform_sync(statement: Statement, executor: SyncStatementExecutor) -> Any:
    """Run one :class:`Statement` on a blocking executor and return its result."""
    if statement.kind == "script":
        executor.execute_script(statement.sql)
        return None
    method = getattr(executor, statement.kind)
    return method(statement.sql, statement.params)


async def perform_async(statement: Statement, executor: AsyncStatementExecutor) -> Any:
    """Run one :class:`Statement` on an async executor and return its result."""
    if statement.kind == "script":
        await executor.execute_script(statement.sql)
        return None
    method = getattr(executor, statement.kind)
    return await method(statement.sql, statement.params)


async def fetch_values(
    executor: AsyncStatementExecutor, sql: str, params: Params, columns: Sequence[str]
) -> Sequence[Sequence[Any]]:
    """Run one statement and return each row as its values in ``columns`` order.

    ``columns`` must be the statement's own result columns, in order. The worker claims
    hundreds of jobs per statement and reads every column of every row once; a dict per
    row (the ``fetch`` contract) costs as much as the job object built from it. So the
    bundled drivers offer ``_fetch_values``, which hands back their client's own rows
    (asyncpg records, psycopg tuples), indexable by position; any other executor goes
    through ``fetch`` and the values are picked out by name.
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
