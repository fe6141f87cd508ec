"""Small decisions every driver makes the same way, kept in one place."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, QueryError
from ._listener import ListenConnection, NotificationStream, validate_channels

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from ..sql._statement import Params

__all__ = ["DriverBase", "check_commit_status", "numbered_values"]

# SQLSTATE in_failed_sql_transaction: what PostgreSQL reports for statements sent after a
# failed one in the same transaction.
_IN_FAILED_TRANSACTION = "25P02"


def check_commit_status(status: str | None) -> None:
    """Raise if ``COMMIT`` actually rolled back.

    PostgreSQL answers ``COMMIT`` in a transaction where a statement failed with the tag
    ``ROLLBACK`` and no error. A caller that caught the failure inside ``transaction()`` and
    carried on would otherwise believe its work was saved.

    Raises:
        QueryError: with SQLSTATE 25P02 when the transaction was rolled back.
    """
    if status == "ROLLBACK":
        raise QueryError(
            "the transaction was rolled back instead of committed, because a statement in it "
            "failed; nothing it wrote was saved",
            sqlstate=_IN_FAILED_TRANSACTION,
        )


def numbered_values(names: Sequence[str], params: Params | None) -> Sequence[Any]:
    """The values for ``$1, $2...`` placeholders, picked from ``params`` in ``names`` order.

    ``names`` comes from :func:`graphile_worker.sql.to_numbered`; keys of ``params`` that
    the statement does not use are ignored.

    Raises:
        ConfigurationError: the statement uses a name that ``params`` lacks.
    """
    if not names:
        return ()
    if params is None:
        params = {}
    try:
        return [params[name] for name in names]
    except KeyError as missing:
        name = missing.args[0]
        raise ConfigurationError(
            f"query parameter {name!r} is missing: the statement uses :{name} but the params "
            f"mapping has only {sorted(params)!r}"
        ) from None


class DriverBase:
    """What the bundled drivers do alike: ``async with`` closes them, and ``listen()``.

    A driver supplies :meth:`_open_listener` (connect, then ``LISTEN`` on every channel)
    and :meth:`aclose`; reconnecting and back-off live in :class:`NotificationStream`.
    """

    __slots__ = ()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def listen(self, *channels: str) -> NotificationStream:
        """Listen on ``channels`` from a dedicated connection; see :class:`NotificationStream`."""
        names = validate_channels(channels)
        return NotificationStream(partial(self._open_listener, names), names)

    async def _open_listener(self, channels: Sequence[str]) -> ListenConnection:
        """Open a new connection that listens on ``channels``."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close every connection; the driver cannot be used afterwards."""
        raise NotImplementedError
