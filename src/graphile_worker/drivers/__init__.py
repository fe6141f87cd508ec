"""Database drivers: the :class:`DatabaseDriver` protocol, its implementations and a factory.

========================  ===============  ==================================================
``driver=``               runtimes         built on
========================  ===============  ==================================================
``"asyncpg"``             asyncio          asyncpg pool, prepared statements (fastest)
``"psycopg"``             asyncio          psycopg 3 ``AsyncConnectionPool``
``"psycopg-threaded"``    asyncio, trio    sync psycopg pool, each call in a worker thread
``"psycopg-anyio"``       asyncio, trio    libpq driven on the event loop, no thread
``"auto"``                either           asyncpg on asyncio when installed, else psycopg-anyio
an ``Engine``             asyncio, trio    the application's SQLAlchemy pool, calls in threads
an ``AsyncEngine``        asyncio          the application's SQLAlchemy pool
========================  ===============  ==================================================

An application's SQLAlchemy engine is wrapped by :class:`SQLAlchemyEngineDriver` (which
``WorkerOptions(driver=engine)`` and ``WorkerUtils(engine)`` do for you), so that a worker
borrows connections from the application's pool instead of opening its own.

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
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._opener import DRIVER_NAMES, DriverOpener, canonical_driver_name
from ._url import normalize_url, resolve_url
from .base import AsyncExecutor, DatabaseDriver, Notification, Params, Row, SyncExecutor

if TYPE_CHECKING:
    from ._psycopg_common import PsycopgSyncExecutor as PsycopgSyncExecutor
    from .asyncpg import AsyncpgDriver as AsyncpgDriver
    from .psycopg import PsycopgDriver as PsycopgDriver
    from .psycopg_anyio import PsycopgAnyioDriver as PsycopgAnyioDriver
    from .psycopg_threaded import PsycopgThreadedDriver as PsycopgThreadedDriver
    from .sqlalchemy_engine import SQLAlchemyEngineDriver as SQLAlchemyEngineDriver

__all__ = [
    "DRIVER_NAMES",
    "AsyncExecutor",
    "DatabaseDriver",
    "Notification",
    "Params",
    "Row",
    "SQLAlchemyEngineDriver",
    "SyncExecutor",
    "create_driver",
]

# Lazily exported names: attribute -> (module, attribute).
_LAZY = {
    "AsyncpgDriver": ("asyncpg", "AsyncpgDriver"),
    "PsycopgDriver": ("psycopg", "PsycopgDriver"),
    "PsycopgThreadedDriver": ("psycopg_threaded", "PsycopgThreadedDriver"),
    "PsycopgAnyioDriver": ("psycopg_anyio", "PsycopgAnyioDriver"),
    "PsycopgSyncExecutor": ("_psycopg_common", "PsycopgSyncExecutor"),
    "SQLAlchemyEngineDriver": ("sqlalchemy_engine", "SQLAlchemyEngineDriver"),
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
    The result is only for that: annotate variables with :class:`DatabaseDriver`.

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
    name = canonical_driver_name(driver)
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
