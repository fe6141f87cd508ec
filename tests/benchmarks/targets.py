"""The performance targets of the "Throughput and latency" issue, checked against the figures.

Targets are reported, never enforced: a missed target is information, not a failure. A
target over several figures (every depth, every rate) is judged on the worst of them, and
the table names which one that was.
"""

from __future__ import annotations

import operator
import re
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
    pattern: str | None = None
    """A regular expression: every figure of ``figure`` whose name it matches counts too
    (for figures named after a depth or rate the run chose)."""


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
    Target(
        "depth: drain asyncpg/asyncio >= 1.5x Node at every depth",
        "depth",
        (),
        "ratio",
        1.5,
        operator.ge,
        pattern=r"depth ratio asyncpg/asyncio / node at ",
    ),
    Target(
        "depth: cost per job at 1M within 1.3x of 10k (asyncpg/asyncio)",
        "depth",
        ("depth cost ratio asyncpg/asyncio 1M / 10k",),
        "ratio",
        1.3,
        operator.le,
    ),
    Target(
        "depth: drain psycopg-anyio/trio >= 1.0x Node at every depth",
        "depth",
        (),
        "ratio",
        1.0,
        operator.ge,
        pattern=r"depth ratio psycopg-anyio/trio / node at ",
    ),
    Target(
        "serial mix: asyncpg/asyncio >= 1.5x Node (every depth, same local-queue setting)",
        "serial",
        (),
        "ratio",
        1.5,
        operator.ge,
        pattern=r"serial ratio asyncpg/asyncio / node, ",
    ),
    Target(
        "serial mix: ours with local queue >= without, at every depth",
        "serial",
        (),
        "ratio",
        1.0,
        operator.ge,
        pattern=r"serial local-queue gain (?!node )",
    ),
    Target(
        "steady: p95 add-to-start <= 5 ms (asyncpg/asyncio, 1,000 and 5,000 jobs/s)",
        "steady",
        (
            "steady p95 asyncpg/asyncio at 1,000 jobs/s",
            "steady p95 asyncpg/asyncio at 5,000 jobs/s",
        ),
        "ms",
        5.0,
        operator.le,
    ),
    Target(
        "steady: p95 add-to-start <= Node's (asyncpg/asyncio, 1,000 and 5,000 jobs/s)",
        "steady",
        (
            "steady p95 ratio asyncpg/asyncio / node at 1,000 jobs/s",
            "steady p95 ratio asyncpg/asyncio / node at 5,000 jobs/s",
        ),
        "ratio",
        1.0,
        operator.le,
    ),
    Target(
        "admin: every page < 300 ms at 1,000,000 jobs (median)",
        "admin",
        (),
        "ms",
        300.0,
        operator.lt,
        pattern=r"admin .* at 1,000,000 jobs$",
    ),
)


def evaluate(report: Report) -> list[dict[str, Any]]:
    """Each target with its value (``None`` when not measured) and whether it is met."""
    verdicts = []
    for target in TARGETS:
        worst = max if target.compare in (operator.le, operator.lt) else min
        figures = [report.find(target.figure, name) for name in target.names]
        if target.pattern is not None:
            figures += report.matching(target.figure, re.compile(target.pattern))
        values = [
            (worst(figure.runs) if target.worst_run else figure.median, figure.name)
            for figure in figures
            if figure is not None
        ]
        value: float | None = None
        where: str | None = None
        if values:
            value, where = worst(values)
        verdict: dict[str, Any] = {
            "target": target.description,
            "value": value,
            "unit": target.unit,
            "met": None if value is None else bool(target.compare(value, target.limit)),
        }
        if len(values) > 1:
            verdict["worst"] = where
        verdicts.append(verdict)
    return verdicts


def targets_table(verdicts: list[dict[str, Any]]) -> str:
    """The verdicts as a Markdown table."""
    rows = ["| target | measured | met |", "|---|---|---|"]
    for verdict in verdicts:
        if verdict["value"] is None:
            rows.append(f"| {verdict['target']} | not measured | - |")
            continue
        met = "yes" if verdict["met"] else "no"
        measured = format_value(verdict["value"], verdict["unit"])
        if verdict.get("worst"):
            measured += f" (worst: {verdict['worst']})"
        rows.append(f"| {verdict['target']} | {measured} | {met} |")
    return "\n".join(rows)
