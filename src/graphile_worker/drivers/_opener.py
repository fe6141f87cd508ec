"""Driver names, and how one becomes an open driver: :class:`DriverOpener`.

Every place that accepts a driver name (``create_driver``, ``WorkerOptions``, the CLI)
checks it with :func:`canonical_driver_name`, so they accept the same spellings and say the
same thing about a bad one. Which driver ``"auto"`` means, and whether a driver suits the
running event loop, is only known once the opener is awaited (anyio's
``get_async_backend`` decides at run time the same way); the driver's module is imported
then, so a missing package is reported with the ``pip`` extra that installs it. A TLS
failure while opening (a certificate that does not verify, a missing ``sslrootcert`` file) is
reported in the same words whichever driver hit it, with what to check.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from ..errors import ConfigurationError, ConnectionLostError, DriverUnavailableError

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
        try:
            opened: DatabaseDriver = await implementation.open(self._url, **self._options)
        except ConnectionLostError as error:
            explained = _explain_tls_failure(error, self._url)
            if explained is None:
                raise
            # The driver's own exception stays the cause, as for every other error of ours.
            raise explained from (error.__cause__ or error)
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


# What libpq says when verification fails: the chain (no trusted root, expired...) or the
# host name. asyncpg raises ssl.SSLCertVerificationError instead, recognised by its class.
_LIBPQ_VERIFY_FAILURES = ("certificate verify failed", "does not match host name")
_TLS_FILE_PARAMETERS = ("sslrootcert", "sslcert", "sslkey", "sslcrl")
_TLS_HINT = (
    "check that sslrootcert= in the URL names the CA certificate that signed the server's "
    "certificate (managed services publish theirs) and that the URL's host is a name on "
    "that certificate"
)


def _explain_tls_failure(error: ConnectionLostError, url: str) -> ConnectionLostError | None:
    """A clearer error for a connection refused because of TLS, or ``None`` for others.

    The drivers word the same problem differently (asyncpg reports ``[SSL:
    CERTIFICATE_VERIFY_FAILED] ...``, libpq ``SSL error: certificate verify failed``, and
    asyncpg a missing ``sslrootcert`` file, or ``sslrootcert=system``, which it does not
    know, as a bare ``[Errno 2]``), so the message says once what failed and what to
    check, with the driver's own words in parentheses.
    """
    import ssl  # loads OpenSSL; only worth it once a connection has failed

    cause = error.__cause__
    detail = str(error).strip()
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = str(cause.verify_message or detail).rstrip(".")
    elif any(marker in detail for marker in _LIBPQ_VERIFY_FAILURES):
        reason = detail.rpartition(" failed: ")[2]
    elif isinstance(cause, FileNotFoundError):
        # Only asyncpg gets here: libpq names a missing file itself.
        # libpq decodes %xx in URL values but not "+", so parse_qsl would not do.
        pairs = (item.partition("=") for item in url.partition("?")[2].split("&"))
        parameters = {name: unquote(value) for name, _, value in pairs}
        if parameters.get("sslrootcert") == "system":
            return ConnectionLostError(
                "the asyncpg driver does not support sslrootcert=system (libpq's way to trust "
                "the operating system's CA certificates); give the path of a CA bundle instead "
                "(/etc/ssl/certs/ca-certificates.crt on Debian and Ubuntu), or use a psycopg "
                "driver",
                sqlstate=error.sqlstate,
            )
        missing = [
            f"{name}={parameters[name]!r}"
            for name in _TLS_FILE_PARAMETERS
            if name in parameters and not _is_file(parameters[name])
        ]
        if not missing:
            return None
        return ConnectionLostError(
            f"the database URL names a TLS file that does not exist: {', '.join(missing)}; "
            f"fix the path (sslrootcert is the CA certificate your provider publishes)",
            sqlstate=error.sqlstate,
        )
    else:
        return None
    return ConnectionLostError(
        f"TLS certificate verification failed ({reason}): {_TLS_HINT}", sqlstate=error.sqlstate
    )


def _is_file(path: str) -> bool:
    return os.path.isfile(os.path.expanduser(path))


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
