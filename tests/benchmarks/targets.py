"""The performance targets of the "Throughput and latency" issue, checked against the figures.

Targets are reported, never enforced: a missed target is information, not a failure.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .results import Report, format_value


@dataclass(frozen=True)
class Target:
    description: str
    figure: str
    names: tuple[str, ...]
    """Figure names the value is taken from (several: the worst of them counts)."""
    unit: str
    limit: float
    compare: Callable[[float, float], bool]
    worst_run: bool = False
    """Judge the worst single run rather than the median (memory ceilings)."""


TARGETS = (
    Target(
        "drain asyncpg/asyncio >= 1.5x Node",
        "node",
        ("drain ratio asyncpg/asyncio / node",),
        "ratio",
        1.5,
        operator.ge,
    ),
    Target(
        "drain asyncpg/asyncio >= 70% of raw SQL",
        "raw",
        ("drain ratio asyncpg/asyncio / raw",),
        "ratio",
        0.70,
        operator.ge,
    ),
    Target(
        "drain psycopg on trio >= 1.0x Node",
        "node",
        ("drain ratio psycopg-threaded/trio / node",),
        "ratio",
        1.0,
        operator.ge,
    ),
    Target(
        "latency p50 <= 2 ms (asyncpg/asyncio)",
        "latency",
        ("latency p50 asyncpg/asyncio",),
        "ms",
        2.0,
        operator.le,
    ),
    Target(
        "latency p95 <= 5 ms (asyncpg/asyncio)",
        "latency",
        ("latency p95 asyncpg/asyncio",),
        "ms",
        5.0,
        operator.le,
    ),
    Target(
        "add_jobs >= 50% of raw INSERT (asyncpg)",
        "enqueue",
        ("enqueue ratio add_jobs / raw INSERT asyncpg/asyncio",),
        "ratio",
        0.5,
        operator.ge,
    ),
    Target(
        "peak RSS <= 80 MiB while draining (worst driver, worst run)",
        "rss",
        (
            "peak RSS asyncpg/asyncio",
            "peak RSS psycopg/asyncio",
            "peak RSS psycopg-threaded/asyncio",
            "peak RSS psycopg-threaded/trio",
        ),
        "MiB",
        80.0,
        operator.le,
        worst_run=True,
    ),
    Target(
        "start-to-ready <= 300 ms (asyncpg/asyncio)",
        "lifecycle",
        ("start-to-ready asyncpg/asyncio",),
        "ms",
        300.0,
        operator.le,
    ),
)


def evaluate(report: Report) -> list[dict[str, Any]]:
    """Each target with its value (``None`` when not measured) and whether it is met."""
    verdicts = []
    for target in TARGETS:
        values = []
        for name in target.names:
            figure = report.find(target.figure, name)
            if figure is None:
                continue
            if target.worst_run:
                worst = max if target.compare is operator.le else min
                values.append(worst(figure.runs))
            else:
                values.append(figure.median)
        value: float | None = None
        if values:
            value = max(values) if target.compare is operator.le else min(values)
        verdicts.append(
            {
                "target": target.description,
                "value": value,
                "unit": target.unit,
                "met": None if value is None else bool(target.compare(value, target.limit)),
            }
        )
    return verdicts


def targets_table(verdicts: list[dict[str, Any]]) -> str:
    """The verdicts as a Markdown table."""
    rows = ["| target | measured | met |", "|---|---|---|"]
    for verdict in verdicts:
        if verdict["value"] is None:
            rows.append(f"| {verdict['target']} | not measured | - |")
            continue
        met = "yes" if verdict["met"] else "no"
        rows.append(
            f"| {verdict['target']} | {format_value(verdict['value'], verdict['unit'])} | {met} |"
        )
    return "\n".join(rows)
