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
once, as generators of statements, in :mod:`graphile_worker.sql`, which also holds the two
runners that drive them on an executor of either family (the sans-I/O pattern).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..sql._statement import Params, Row

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = [
    "AsyncExecutor",
    "DatabaseDriver",
    "Notification",
    "Params",
    "Row",
    "SyncExecutor",
]


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
