"""Database drivers: the :class:`DatabaseDriver` protocol, its implementations and a factory.

========================  ===============  ==================================================
``driver=``               runtimes         built on
========================  ===============  ==================================================
``"asyncpg"``             asyncio          asyncpg pool, prepared statements (fastest)
``"psycopg"``             asyncio          psycopg 3 ``AsyncConnectionPool``
``"psycopg-threaded"``    asyncio, trio    sync psycopg pool, each call in a worker thread
``"psycopg-anyio"``       asyncio, trio    libpq driven on the event loop, no thread
``"auto"``                either           asyncpg on asyncio when installed, else psycopg-anyio
========================  ===============  ==================================================

Open one with :func:`create_driver`, either awaited or as an async context manager::

    driver = await create_driver("postgresql://localhost/app")
    ...
    await driver.aclose()

    async with create_driver() as driver:  # URL from $DATABASE_URL
        ...

Implementations are imported by name on first use, so ``import graphile_worker`` never
imports asyncpg or psycopg, and a missing package is reported with the ``pip`` extra that
installs it.

JSON rule, for every driver: pass JSON parameters as already serialised ``str`` and cast
them in SQL (``CAST(:payload AS jsonb)``); ``json``/``jsonb`` columns come back decoded.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, DriverUnavailableError
from ._url import normalize_url, resolve_url
from .base import (
    AsyncExecutor,
    DatabaseDriver,
    Notification,
    Operation,
    Params,
    Row,
    Statement,
    SyncExecutor,
    run_async,
    run_sync,
)

if TYPE_CHECKING:
    from types import TracebackType

    from ._psycopg_common import PsycopgSyncExecutor as PsycopgSyncExecutor
    from .asyncpg import AsyncpgDriver as AsyncpgDriver
    from .psycopg import PsycopgDriver as PsycopgDriver
    from .psycopg_anyio import PsycopgAnyioDriver as PsycopgAnyioDriver
    from .psycopg_threaded import PsycopgThreadedDriver as PsycopgThreadedDriver

__all__ = [
    "DRIVER_NAMES",
    "AsyncExecutor",
    "DatabaseDriver",
    "DriverOpener",
    "Notification",
    "Operation",
    "Params",
    "Row",
    "Statement",
    "SyncExecutor",
    "create_driver",
    "run_async",
    "run_sync",
]

DRIVER_NAMES = ("auto", "asyncpg", "psycopg", "psycopg-threaded", "psycopg-anyio")
"""Accepted values of ``create_driver(driver=...)`` (``psycopg_threaded`` and
``psycopg_anyio`` also work)."""

# name -> (module, class, packages it imports, pip extra, runtimes it supports)
_IMPLEMENTATIONS: dict[str, tuple[str, str, tuple[str, ...], str, tuple[str, ...]]] = {
    "asyncpg": ("asyncpg", "AsyncpgDriver", ("asyncpg",), "asyncpg", ("asyncio",)),
    "psycopg": ("psycopg", "PsycopgDriver", ("psycopg", "psycopg_pool"), "psycopg", ("asyncio",)),
    "psycopg-threaded": (
        "psycopg_threaded",
        "PsycopgThreadedDriver",
        ("psycopg", "psycopg_pool"),
        "psycopg",
        ("asyncio", "trio"),
    ),
    "psycopg-anyio": (
        "psycopg_anyio",
        "PsycopgAnyioDriver",
        ("psycopg",),
        "psycopg",
        ("asyncio", "trio"),
    ),
}

# Lazily exported names: attribute -> (module, attribute).
_LAZY = {
    "AsyncpgDriver": ("asyncpg", "AsyncpgDriver"),
    "PsycopgDriver": ("psycopg", "PsycopgDriver"),
    "PsycopgThreadedDriver": ("psycopg_threaded", "PsycopgThreadedDriver"),
    "PsycopgAnyioDriver": ("psycopg_anyio", "PsycopgAnyioDriver"),
    "PsycopgSyncExecutor": ("_psycopg_common", "PsycopgSyncExecutor"),
}


def __getattr__(name: str) -> Any:
    """Import a driver class on first access (PEP 562), keeping its package optional."""
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    value = getattr(module, attribute)
    globals()[name] = value
    return value


def create_driver(
    url: str | None = None,
    *,
    driver: str = "auto",
    min_size: int = 1,
    max_size: int = 10,
    prepared_statements: bool = True,
    listen_url: str | None = None,
) -> DriverOpener:
    """Open a connection pool to ``url`` with the chosen driver.

    Await the result to get an open :class:`DatabaseDriver` (close it with ``aclose()``),
    or use it as ``async with create_driver(...) as driver:``, which closes it on exit.

    Args:
        url: ``postgresql://``, ``postgres://`` or a SQLAlchemy URL such as
            ``postgresql+asyncpg://``; ``None`` reads ``$DATABASE_URL``.
        driver: one of :data:`DRIVER_NAMES`; ``"auto"`` picks asyncpg on asyncio when it is
            installed and ``psycopg-anyio`` otherwise (always on trio).
        min_size: connections opened at once and kept open.
        max_size: most connections open at the same time (``LISTEN`` uses one more).
        prepared_statements: ``False`` when connecting through PgBouncer in transaction
            mode, which cannot share server-side prepared statements between clients.
        listen_url: where the one ``LISTEN`` connection goes when ``url`` is a pooler that
            cannot carry ``LISTEN`` (PgBouncer in transaction mode): a direct URL to the same
            database. Default: ``url``.

    Raises:
        ConfigurationError: bad URL or sizes, no URL and no ``$DATABASE_URL``, unknown driver.
        DriverUnavailableError: the driver's package is missing, or it cannot run on the
            current async runtime.
        ConnectionLostError: the server cannot be reached (raised when awaited).
    """
    name = _canonical_name(driver)
    conninfo = resolve_url(url)
    options: dict[str, Any] = {"prepared_statements": prepared_statements}
    if listen_url is not None:
        options["listen_url"] = normalize_url(listen_url)
    if not isinstance(min_size, int) or not isinstance(max_size, int) or min_size < 0:
        raise ConfigurationError(
            f"pool sizes must be integers with min_size >= 0, got {min_size!r} and {max_size!r}"
        )
    if max_size < max(min_size, 1):
        raise ConfigurationError(
            f"max_size must be at least 1 and at least min_size ({min_size}), got {max_size}"
        )
    return DriverOpener(name, conninfo, {"min_size": min_size, "max_size": max_size, **options})


class DriverOpener:
    """What :func:`create_driver` returns: awaitable, and an async context manager."""

    __slots__ = ("_driver", "_name", "_options", "_url")

    def __init__(self, name: str, url: str, options: dict[str, Any]) -> None:
        self._name = name
        self._url = url
        self._options = options
        self._driver: DatabaseDriver | None = None

    def __await__(self) -> Generator[Any, None, DatabaseDriver]:
        return self._open().__await__()

    async def _open(self) -> DatabaseDriver:
        implementation = _load(_resolve_name(self._name))
        opened: DatabaseDriver = await implementation.open(self._url, **self._options)
        return opened

    async def __aenter__(self) -> DatabaseDriver:
        if self._driver is not None:
            raise RuntimeError("this create_driver(...) result is already in use")
        self._driver = await self._open()
        return self._driver

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        opened, self._driver = self._driver, None
        if opened is not None:
            await opened.aclose()


def _canonical_name(driver: str) -> str:
    name = driver.strip().lower().replace("_", "-") if isinstance(driver, str) else driver
    if name not in DRIVER_NAMES:
        raise ConfigurationError(
            f"unknown driver {driver!r}; choose one of {', '.join(map(repr, DRIVER_NAMES))}"
        )
    return str(name)


def _current_runtime() -> str:
    """Name of the async library running this task: ``"asyncio"`` or ``"trio"``."""
    import sniffio  # a dependency of ours (and of trio); tiny, so loaded on demand

    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise ConfigurationError(
            "create_driver() must be awaited inside a running asyncio or trio event loop"
        ) from None


def _resolve_name(name: str) -> str:
    """Turn ``"auto"`` into a driver name and check the driver suits the runtime."""
    runtime = _current_runtime()
    if name == "auto":
        if runtime == "asyncio" and _installed("asyncpg"):
            return "asyncpg"
        # Faster than the threaded driver on both runtimes (BENCHMARKS.md), with no thread.
        name = "psycopg-anyio"
        if not _installed("psycopg"):
            hint = (
                "pip install 'graphile-worker[asyncpg]' or 'graphile-worker[psycopg]'"
                if runtime == "asyncio"
                else "pip install 'graphile-worker[psycopg]'"
            )
            raise DriverUnavailableError(f"no database driver is installed for {runtime}; {hint}")
    runtimes = _IMPLEMENTATIONS[name][4]
    if runtime not in runtimes:
        usable = [n for n, spec in _IMPLEMENTATIONS.items() if runtime in spec[4]]
        raise DriverUnavailableError(
            f"the {name!r} driver runs on {' and '.join(runtimes)} only, but this code runs "
            f"on {runtime}; use driver={usable[0]!r} (or 'auto'), which supports {runtime}"
        )
    return name


def _installed(*packages: str) -> bool:
    return all(importlib.util.find_spec(package) is not None for package in packages)


def _load(name: str) -> Any:
    """The driver class for ``name``, importing its module (and package) now."""
    module_name, class_name, packages, extra, _ = _IMPLEMENTATIONS[name]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as error:
        if error.name not in packages and not any(
            (error.name or "").startswith(package + ".") for package in packages
        ):
            raise
        raise DriverUnavailableError(
            f"the {name!r} driver needs the {error.name!r} package; "
            f"pip install 'graphile-worker[{extra}]'"
        ) from error
    return getattr(module, class_name)
