"""Which driver/runtime pairs the depth, steady-state and serial-mix figures measure.

The ``psycopg-anyio`` driver (psycopg's I/O on the anyio event loop, so on trio too) is new;
the benchmark runs it only where the installed package knows it, in the library
(``graphile_worker.drivers.DRIVER_NAMES``) and on the command line (``--driver``), and
prints ``skipped: driver not available`` otherwise, so one benchmark serves the versions
before and after it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .drain import python_config
from .environment import Features
from .processes import WorkerConfig
from .results import Figure, Report

Pair = tuple[str, str]

ANYIO_DRIVER = "psycopg-anyio"

DEPTH_PAIRS: tuple[Pair, ...] = (
    ("asyncpg", "asyncio"),
    ("psycopg", "asyncio"),
    ("psycopg-threaded", "trio"),
    (ANYIO_DRIVER, "trio"),
    (ANYIO_DRIVER, "asyncio"),
)
"""asyncpg and psycopg on asyncio, the two drivers that run on trio, and psycopg-anyio on
asyncio too (threaded psycopg on asyncio is left to the drain figure); asyncpg first."""
DEEP_PAIRS: tuple[Pair, ...] = (
    ("asyncpg", "asyncio"),
    ("psycopg-threaded", "trio"),
    (ANYIO_DRIVER, "trio"),
)
"""The pairs of :data:`DEPTH_PAIRS` that also run at the deepest backlogs (a million jobs
take minutes per contender): asyncio's fastest driver and the trio drivers."""

TRIO_PREFERENCE = (ANYIO_DRIVER, "psycopg-threaded")
"""The trio driver the shorter figures use: the first one available."""


def parse_pair(text: str) -> Pair:
    """``driver/runtime`` as a pair; raises ValueError for anything else."""
    driver, slash, runtime = text.strip().partition("/")
    if not slash or not driver or not runtime:
        raise ValueError(f"expected DRIVER/RUNTIME such as asyncpg/asyncio, not {text!r}")
    return driver, runtime


def label(pair: Pair) -> str:
    return f"{pair[0]}/{pair[1]}"


def unavailable(features: Features, pair: Pair) -> str | None:
    """Why ``pair`` cannot run with the installed package, or ``None`` when it can."""
    from graphile_worker.drivers import DRIVER_NAMES

    driver, runtime = pair
    if driver not in DRIVER_NAMES or (features.drivers and driver not in features.drivers):
        return "driver not available"
    if runtime != "asyncio" and not features.has("--runtime"):
        return "--runtime not available"
    return None


def best_trio(features: Features) -> Pair:
    """The preferred trio pair among those available (threaded psycopg as the last resort)."""
    for driver in TRIO_PREFERENCE:
        if unavailable(features, (driver, "trio")) is None:
            return driver, "trio"
    return TRIO_PREFERENCE[-1], "trio"


def short_pairs(features: Features) -> tuple[Pair, ...]:
    """asyncpg on asyncio, and the best trio driver (the steady-state and serial figures)."""
    return (("asyncpg", "asyncio"), best_trio(features))


def python_configs(
    report: Report,
    features: Features,
    pairs: Sequence[Pair],
    *,
    figure: str,
    name: str,
    unit: str,
    concurrency: int = 24,
    local_queue_size: int = 500,
) -> list[WorkerConfig]:
    """Worker configurations for the available ``pairs``; a skipped figure for the others.

    Args:
        name: The skipped figure's name, with ``{label}`` for the pair.
    """
    configs = []
    for pair in pairs:
        reason = unavailable(features, pair)
        if reason is not None:
            report.emit(Figure(figure, name.format(label=label(pair)), unit, skipped=reason))
            continue
        configs.append(
            dataclasses.replace(
                python_config(*pair),
                concurrency=concurrency,
                local_queue_size=local_queue_size,
            )
        )
    return configs
