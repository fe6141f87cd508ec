"""Where the admin's :class:`~graphile_worker.WorkerUtils` comes from, and who closes it.

Given a URL, the admin owns its connection pool: it opens it on the first request that
needs the database (so building the app, and starting the server, never waits for the
database, and an outage at start-up heals by itself) and closes it when the app's lifespan
ends. Given a driver or a ``WorkerUtils``, the caller owns it: the admin only borrows it
and never closes it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar, final
from urllib.parse import unquote, urlsplit

import anyio

from ..drivers._opener import canonical_driver_name
from ..drivers._url import normalize_url
from ..drivers.base import DatabaseDriver
from ..errors import ConfigurationError, GraphileWorkerError
from ..utils import WorkerUtils

__all__ = ["Source", "SourceUnavailableError", "both"]

A = TypeVar("A")
B = TypeVar("B")

_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


class SourceUnavailableError(Exception):
    """The admin could not open its connection pool; the message is safe to show."""


@final
class Source:
    """The admin's access to the database: a borrowed ``WorkerUtils``, or one it opens."""

    __slots__ = ("_driver", "_lock", "_owned", "_pooled", "_schema", "_url", "_utils")

    def __init__(
        self, source: str | DatabaseDriver | WorkerUtils, *, schema: str, driver: str
    ) -> None:
        self._url: str | None = None
        self._utils: WorkerUtils | None = None
        self._lock: anyio.Lock | None = None
        self._schema = schema
        self._driver = driver
        if isinstance(source, str):
            if not source.strip():
                raise ConfigurationError(
                    "admin_app() got an empty database URL; pass a postgresql:// URL, a "
                    "DatabaseDriver or a WorkerUtils"
                )
            # A URL or driver name that can never work fails now, not at the first request.
            normalize_url(source)
            canonical_driver_name(driver)
            self._url = source
        elif isinstance(source, WorkerUtils):
            if source.schema != schema:
                raise ConfigurationError(
                    f"admin_app() got schema={schema!r} but the WorkerUtils passed works on "
                    f"schema {source.schema!r}; pass schema={source.schema!r}"
                )
            self._utils = source
        elif isinstance(source, DatabaseDriver):
            self._utils = WorkerUtils(source, schema=schema)
        else:
            raise ConfigurationError(
                f"admin_app() cannot read the queue through a {type(source).__qualname__}; "
                "pass a postgresql:// URL, a DatabaseDriver or a WorkerUtils"
            )
        self._owned = self._url is not None
        # A pool (ours, or the caller's driver) serves two statements at once; a caller's
        # WorkerUtils may sit on one connection (a SQLAlchemy session), which cannot.
        self._pooled = not isinstance(source, WorkerUtils)

    @property
    def pooled(self) -> bool:
        """Whether two statements may run at the same time, on two connections."""
        return self._pooled

    @property
    def owned(self) -> bool:
        """Whether the admin opens (and so closes) the connection pool itself."""
        return self._owned

    async def utils(self) -> WorkerUtils:
        """The ``WorkerUtils`` to use, opening the pool first if this is the first request.

        Raises:
            SourceUnavailableError: the pool could not be opened (the next request tries
                again).
        """
        if self._utils is not None:
            return self._utils
        if self._lock is None:
            # Made on first use, inside the event loop that serves the app.
            self._lock = anyio.Lock()
        async with self._lock:
            if self._utils is None:
                assert self._url is not None
                try:
                    self._utils = await WorkerUtils.connect(
                        self._url, driver=self._driver, schema=self._schema
                    )
                except GraphileWorkerError as error:
                    raise SourceUnavailableError(
                        f"cannot connect to the database: {self.redact(str(error))}"
                    ) from error
            return self._utils

    async def aclose(self) -> None:
        """Close the pool the admin opened, if it did; a borrowed one is left open."""
        if not self._owned:
            return
        utils, self._utils, self._lock = self._utils, None, None
        if utils is not None:
            await utils.aclose()

    def redact(self, text: str) -> str:
        """``text`` without the URL's password, for messages shown on a page."""
        if self._url is not None:
            try:
                password = urlsplit(self._url).password
            except ValueError:
                password = None
            if password:
                for form in {password, unquote(password)}:
                    text = text.replace(form, "***")
        return _DSN_PASSWORD.sub(r"\1***", text)


async def both(
    first: Callable[[], Awaitable[A]], second: Callable[[], Awaitable[B]], *, at_once: bool
) -> tuple[A, B]:
    """The results of two reads, run at the same time when ``at_once`` (one after the other
    otherwise): a page that needs two scans of the jobs then waits for the slower only.

    The first failure is raised as it is, never wrapped in an exception group, so the
    error pages recognise it.
    """
    if not at_once:
        return await first(), await second()
    results: dict[int, object] = {}
    failures: list[Exception] = []

    async def run(index: int, call: Callable[[], Awaitable[object]]) -> None:
        try:
            results[index] = await call()
        except Exception as error:  # noqa: BLE001 - re-raised below, unwrapped
            failures.append(error)
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(run, 0, first)
        group.start_soon(run, 1, second)
    if failures:
        raise failures[0]
    return results[0], results[1]  # type: ignore[return-value]
