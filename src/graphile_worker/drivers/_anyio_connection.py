"""One libpq connection used from the event loop: statements, prepared statements, recovery.

:class:`AnyioConnection` sends each statement with libpq's asynchronous calls
(``send_query_params``, ``send_query_prepared``, ``send_query``), waits for the reply with
:mod:`._anyio_waiting` and decodes rows with psycopg's adaptation layer (a
:class:`psycopg.adapt.Transformer` per connection, so loaders are looked up once). A plain
:class:`psycopg.Connection` wraps the libpq handle only as psycopg's adaptation context
(encoding, time zone, date style, our JSON loader); no statement goes through it.

A statement run often enough (``prepare_threshold`` times, see :mod:`._prepared`) is
prepared on the server and run by name afterwards, as psycopg's own connections do: it saves
the server a parse and a plan per call, which makes a short statement about half again as
fast.

A call that is cancelled mid-statement does not leave the connection in an unknown state:
the statement is cancelled on the server and its reply read (shielded, for up to
:data:`CANCEL_GRACE_SECONDS`), or else the connection is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
from psycopg import generators, pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.conninfo import conninfo_to_dict, make_conninfo, timeout_from_conninfo

from ..errors import ConnectionLostError, GraphileWorkerError, QueryError
from ..sql import to_numbered
from ._anyio_waiting import cancel_query, wait, wait_connection
from ._common import numbered_values
from ._errors import as_connection_error
from ._prepared import PreparedStatements, StatementKey, went_stale
from ._psycopg_common import (
    SESSION_ENDED_SEVERITIES,
    to_notification,
    translate_psycopg_error,
    use_fast_json,
)
from .base import Notification, Params, Row

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg.abc import Buffer
    from psycopg.pq.abc import PGresult

__all__ = ["CANCEL_GRACE_SECONDS", "AnyioConnection", "prepare_conninfo"]

logger: logging.Logger = logging.getLogger("graphile_worker.drivers")

CANCEL_GRACE_SECONDS = 5.0
"""How long a cancelled call waits for the server to stop its statement before the
connection is closed instead."""

_OK = pq.ConnStatus.OK
_IDLE = pq.TransactionStatus.IDLE
_IN_TRANSACTION = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)
_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR
_AUTO = PyFormat.AUTO


def prepare_conninfo(conninfo: str) -> tuple[str, float]:
    """The libpq connection string every connection uses, and its connect timeout.

    The client encoding is fixed to UTF-8, so statements are encoded once per text (see
    :func:`_command`) whatever the database's encoding is.

    Raises:
        psycopg.ProgrammingError: the connection string cannot be parsed.
    """
    timeout = float(timeout_from_conninfo(conninfo_to_dict(conninfo)))
    return make_conninfo(conninfo, client_encoding="UTF8"), timeout


@lru_cache(maxsize=1024)
def _command(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """``:name`` SQL -> ``$n`` SQL as UTF-8 bytes, and the parameter names in order."""
    query, names = to_numbered(sql)
    return query.encode("utf-8"), names


class AnyioConnection:
    """A libpq connection whose statements wait on the running anyio loop.

    Statements on one connection must not overlap: the pool lends it to one task at a time.
    """

    __slots__ = (
        "_busy",
        "_connection",
        "_fileno",
        "_lost",
        "_pgconn",
        "_statements",
        "_transformer",
    )

    def __init__(self, connection: psycopg.Connection[Any], prepare_threshold: int | None) -> None:
        self._connection = connection
        self._pgconn = connection.pgconn
        self._fileno = self._pgconn.socket
        use_fast_json(connection)  # before the Transformer copies the loaders
        self._transformer = Transformer(connection)
        self._statements = PreparedStatements(prepare_threshold)
        self._busy = False  # a statement was sent and its reply not read yet
        self._lost = False  # the server ended the session, or the socket broke
        connection.add_notice_handler(self._on_notice)

    @classmethod
    async def connect(
        cls, conninfo: str, *, connect_timeout: float, prepare_threshold: int | None
    ) -> AnyioConnection:
        """Open a connection (``conninfo`` from :func:`prepare_conninfo`).

        Raises:
            ConnectionLostError: the server cannot be reached, refused the session, or did
                not answer within ``connect_timeout`` seconds.
        """
        try:
            with anyio.fail_after(connect_timeout):
                pgconn = await wait_connection(generators.connect(conninfo))
        except psycopg.Error as error:
            raise as_connection_error(translate_psycopg_error(error)) from error
        except TimeoutError:
            raise ConnectionLostError(
                f"could not connect to the server within {connect_timeout:g} seconds"
            ) from None
        return cls(psycopg.Connection(pgconn), prepare_threshold)

    # ------------------------------------------------------------------------ state

    @property
    def reusable(self) -> bool:
        """Whether the connection may go back to the pool: alive and outside a transaction."""
        pgconn = self._pgconn
        return (
            not self._lost
            and not self._busy
            and pgconn.status == _OK
            and pgconn.transaction_status == _IDLE
        )

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction block is open (possibly failed) and the session alive."""
        return not self._lost and self._pgconn.transaction_status in _IN_TRANSACTION

    def check_idle(self) -> bool:
        """Whether a connection that sat in the pool is still good to lend out.

        A server that ended the session meanwhile (``pg_terminate_backend``, a restart, an
        idle timeout) has sent a FATAL message and closed the socket; reading what arrived
        notices either, without waiting and without a round trip.
        """
        if not self.reusable:
            return False
        try:
            self.read_input()
        except ConnectionLostError:
            return False
        return True

    def _on_notice(self, diagnostic: psycopg.errors.Diagnostic) -> None:
        # libpq reports a FATAL message that arrives between statements as a notice.
        if diagnostic.severity_nonlocalized in SESSION_ENDED_SEVERITIES:
            self._lost = True

    def close(self) -> None:
        """Close the connection (a no-op when already closed); never raises."""
        self._lost = True
        if self._pgconn.status == _OK:
            # Wake a task still waiting on the socket before the descriptor goes (a BAD
            # connection's socket is already closed, and its number may be reused).
            anyio.notify_closing(self._fileno)
        try:
            self._connection.close()
        except psycopg.Error as error:  # pragma: no cover - PQfinish does not fail
            logger.debug("error closing a connection: %s", error)

    # ------------------------------------------------------------------- statements

    async def execute(self, sql: str, params: Params | None) -> int:
        """Run one statement; return the rows it affected, or -1."""
        result = await self._query(sql, params)
        count = result.command_tuples
        return -1 if count is None else count

    async def fetch(self, sql: str, params: Params | None) -> list[Row]:
        """Run one statement; return every row as a dict."""
        result = await self._query(sql, params)
        names = self._column_names(result)
        return [dict(zip(names, values, strict=True)) for values in self._rows(result)]

    async def fetch_tuples(self, sql: str, params: Params | None) -> list[tuple[Any, ...]]:
        """Run one statement; return every row as a tuple (the claim's fast path)."""
        return self._rows(await self._query(sql, params))

    async def fetchrow(self, sql: str, params: Params | None) -> Row | None:
        """Run one statement; return its first row as a dict, or ``None``."""
        result = await self._query(sql, params)
        if not result.ntuples:
            return None
        return dict(zip(self._column_names(result), self._first_row(result), strict=True))

    async def fetchval(self, sql: str, params: Params | None) -> Any:
        """Run one statement; return the first column of its first row, or ``None``."""
        result = await self._query(sql, params)
        if not result.ntuples or not result.nfields:
            return None
        return self._first_row(result)[0]

    async def execute_script(self, sql: str, params: Params | None = None) -> None:
        """Run several ``;``-separated statements (simple query protocol, no parameters)."""
        await self.command(sql.encode("utf-8"))

    async def command(self, command: bytes) -> str:
        """Run SQL without parameters (``BEGIN``, ``LISTEN``...); return the last status tag."""
        self._send(self._pgconn.send_query, command)
        status = (await self._exchange()).command_status
        return "" if status is None else status.decode("utf-8")

    # -------------------------------------------------------------------- internals

    def _rows(self, result: PGresult) -> list[tuple[Any, ...]]:
        transformer = self._transformer
        transformer.set_pgresult(result)
        try:
            return transformer.load_rows(0, result.ntuples, tuple)
        finally:
            transformer.set_pgresult(None)  # keep no result alive while the connection idles

    def _first_row(self, result: PGresult) -> tuple[Any, ...]:
        transformer = self._transformer
        transformer.set_pgresult(result)
        try:
            return transformer.load_row(0, tuple)
        finally:
            transformer.set_pgresult(None)

    @staticmethod
    def _column_names(result: PGresult) -> list[str]:
        return [(result.fname(i) or b"").decode("utf-8") for i in range(result.nfields)]

    async def _query(self, sql: str, params: Params | None) -> PGresult:
        """Send one statement with its parameters (prepared when it pays) and get its result."""
        command, names = _command(sql)
        values = numbered_values(names, params)
        buffers, types, formats = self._dump(values)
        key: StatementKey = (command, types)
        statements = self._statements
        for attempt in (1, 2):
            name = statements.lookup(key)
            if name is None and (name := statements.name_to_prepare(key)) is not None:
                self._send(self._pgconn.send_prepare, name, command, types)
                await self._exchange()
                statements.prepared(key, name)
            if name is None:
                self._send(self._pgconn.send_query_params, command, buffers, types, formats)
            else:
                self._send(self._pgconn.send_query_prepared, name, buffers, formats)
            try:
                return await self._exchange()
            except QueryError as error:
                if name is None or not went_stale(error):
                    raise
                # The server dropped or invalidated our prepared statements (DDL changed a
                # result type; DEALLOCATE or DISCARD ran): forget them all. Outside a
                # transaction the failed call changed nothing, so it runs once more, now
                # unprepared; inside one, the transaction has failed and the error stands.
                statements.forget()
                if attempt == 2 or self.in_transaction:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _dump(
        self, values: Sequence[Any]
    ) -> tuple[Sequence[Buffer | None] | None, tuple[int, ...] | None, Sequence[pq.Format] | None]:
        """Parameter values -> libpq buffers, type oids and formats (psycopg's dumpers)."""
        if not values:
            return None, None, None
        transformer = self._transformer
        try:
            buffers = transformer.dump_sequence(values, (_AUTO,) * len(values))
        except psycopg.Error as error:  # e.g. "cannot adapt type 'dict'"
            raise translate_psycopg_error(error) from error
        return buffers, transformer.types, transformer.formats

    def _send(self, send: Callable[..., None], *args: Any) -> None:
        """Hand one message to libpq (it goes out in :meth:`_exchange`)."""
        if self._busy:
            raise RuntimeError(
                "a statement is already running on this connection; statements in one "
                "transaction must be awaited one after another"
            )
        try:
            send(*args)
        except psycopg.Error as error:  # the connection is closed or broken
            raise self._translate(error) from error

    async def _exchange(self) -> PGresult:
        """Wait for the reply to what was just sent; raise the first error it carries."""
        self._busy = True
        try:
            results: list[PGresult] = await wait(generators.execute(self._pgconn), self._fileno)
        except psycopg.Error as error:
            # libpq gave up half-way through the reply: the session cannot be trusted.
            self._busy, self._lost = False, True
            raise self._translate(error) from error
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._abandon()
            raise
        self._busy = False
        for result in results:
            if result.status == _FATAL_ERROR:
                failure = psycopg.errors.error_from_result(result, encoding="utf-8")
                raise self._translate(failure) from failure
        return results[-1]

    def _translate(self, error: psycopg.Error) -> GraphileWorkerError:
        translated = translate_psycopg_error(error)
        if isinstance(translated, ConnectionLostError):
            self._lost = True
        return translated

    async def _abandon(self) -> None:
        """Stop the statement a cancelled caller left running, or close the connection.

        Finishes sending what libpq still holds, has the server cancel the statement and
        reads its reply, so the connection is idle (or inside its transaction) again.
        """
        with anyio.move_on_after(CANCEL_GRACE_SECONDS):
            try:
                await wait(generators.send(self._pgconn), self._fileno)
                await cancel_query(self._pgconn)
                await wait(generators.fetch_many(self._pgconn), self._fileno)
            except psycopg.Error as error:
                logger.warning("could not stop a cancelled statement (%s); closing", error)
            else:
                self._busy = False
                return
        self.close()

    # ------------------------------------------------------------------------ listen

    def on_notification(self, callback: Callable[[Notification], None]) -> None:
        """Call ``callback`` with each notification this connection receives."""
        self._connection.add_notify_handler(lambda notify: callback(to_notification(notify)))

    async def wait_input(self) -> None:
        """Wait until the server sends something, then :meth:`read_input`.

        Raises:
            ConnectionLostError: the server ended the session or the socket broke.
        """
        await anyio.wait_readable(self._fileno)
        self.read_input()

    def read_input(self) -> None:
        """Read what the server sent, without waiting; notifications go to the callback of
        :meth:`on_notification`.

        ``consume_input`` only fills libpq's buffer; ``notifies`` parses it (and whatever
        arrived together with an earlier reply, which the socket no longer shows), and so
        also passes a FATAL message sent between statements to :meth:`_on_notice`.

        Raises:
            ConnectionLostError: the server ended the session or the socket broke.
        """
        pgconn = self._pgconn
        try:
            pgconn.consume_input()
        except psycopg.Error as error:
            self._lost = True
            raise self._translate(error) from error
        handler = pgconn.notify_handler
        while (notify := pgconn.notifies()) is not None:
            if handler is not None:
                handler(notify)
        if self._lost or pgconn.status != _OK:
            self._lost = True
            raise ConnectionLostError("the server ended the session")
