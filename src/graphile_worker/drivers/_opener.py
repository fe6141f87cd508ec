"""Driver names, and how one becomes an open driver: :class:`DriverOpener`.

Every place that accepts a driver name (``create_driver``, ``WorkerOptions``, the CLI)
checks it with :func:`canonical_driver_name`, so they accept the same spellings and say the
same thing about a bad one. Which driver ``"auto"`` means, and whether a driver suits the
running event loop, is only known once the opener is awaited (anyio's
``get_async_backend`` decides at run time the same way); the driver's module is imported
then, so a missing package is reported with the ``pip`` extra that installs it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final

from ..errors import ConfigurationError, DriverUnavailableError

if TYPE_CHECKING:
    from types import TracebackType

    from .base import DatabaseDriver

__all__ = ["DRIVER_NAMES", "DriverOpener", "canonical_driver_name"]

DRIVER_NAMES = ("auto", "asyncpg", "psycopg", "psycopg-threaded", "psycopg-anyio")
"""Accepted values of ``create_driver(driver=...)`` (``psycopg_threaded`` and
``psycopg_anyio`` also work)."""

_PACKAGE: Final = __name__.rpartition(".")[0]

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


def canonical_driver_name(driver: object) -> str:
    """The :data:`DRIVER_NAMES` spelling of ``driver`` (case, spaces and ``_`` forgiven).

    Raises:
        ConfigurationError: ``driver`` names no driver.
    """
    name = driver.strip().lower().replace("_", "-") if isinstance(driver, str) else driver
    if name not in DRIVER_NAMES:
        raise ConfigurationError(
            f"unknown driver {driver!r}; choose one of {', '.join(map(repr, DRIVER_NAMES))}"
        )
    return str(name)


class DriverOpener:
    """What :func:`~graphile_worker.drivers.create_driver` returns.

    Await it for an open :class:`~graphile_worker.drivers.DatabaseDriver` (which the caller
    closes), or enter it with ``async with`` to have the driver closed on exit. The class
    is not exported: build one with ``create_driver``, and annotate with the driver type
    (``DatabaseDriver``) that awaiting or entering it gives.
    """

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
        module = importlib.import_module(f"{_PACKAGE}.{module_name}")
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
