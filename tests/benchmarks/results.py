"""Figures: what a measurement produced, how it is printed, and the summary at the end.

Every figure is printed twice, as a line for people and as one JSON object on a line of
its own prefixed ``BENCH_JSON `` (for scripts: ``grep '^BENCH_JSON ' | cut -c12-``). A
figure that needs an option the installed version lacks is printed as skipped, with the
reason, and counts as neither success nor failure.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

JSON_PREFIX = "BENCH_JSON "


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Figure:
    """One figure: the value of each run, or why it was skipped."""

    figure: str
    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    measured: str = ""
    """What exactly was timed, in a few words."""
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"figure": self.figure, "name": self.name, "unit": self.unit}
        if self.skipped is not None:
            data["skipped"] = self.skipped
            return data
        data.update(
            median=self.median,
            min=min(self.runs),
            max=max(self.runs),
            runs=self.runs,
            measured=self.measured,
        )
        if self.notes:
            data["notes"] = self.notes
        if self.details:
            data["details"] = self.details
        return data

    def human(self) -> str:
        if self.skipped is not None:
            return f"{self.name}: skipped: {self.skipped}"
        line = f"{self.name}: {format_value(self.median, self.unit)}"
        if len(self.runs) > 1:
            line += (
                f" (median of {len(self.runs)}; min {format_value(min(self.runs), self.unit)},"
                f" max {format_value(max(self.runs), self.unit)})"
            )
        if self.measured:
            line += f" [{self.measured}]"
        for note in self.notes:
            line += f"\n    note: {note}"
        return line


def format_value(value: float, unit: str) -> str:
    """A value with a precision that suits its unit."""
    if unit in ("jobs/s", "calls/s"):
        return f"{value:,.0f} {unit}"
    if unit == "ratio":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "µs/job":
        return f"{value:.1f} µs/job"
    if unit == "jobs":
        return f"{value:,.0f} jobs"
    return f"{value:g} {unit}"


class Report:
    """Collects figures, prints each as it arrives, and the summary at the end."""

    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.environment: dict[str, Any] = {}

    def emit_environment(self, environment: dict[str, Any]) -> None:
        self.environment = environment
        for key, value in environment.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{name}={setting}" for name, setting in value.items())
                print(f"{key}: {inner}")
            else:
                print(f"{key}: {value}")
        print(JSON_PREFIX + json.dumps({"environment": environment}), flush=True)

    def emit(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(figure.human())
        print(JSON_PREFIX + json.dumps(figure.as_json()), flush=True)
        return figure

    def find(self, figure: str, name: str) -> Figure | None:
        for candidate in self.figures:
            if candidate.figure == figure and candidate.name == name and candidate.runs:
                return candidate
        return None

    def matching(self, figure: str, pattern: re.Pattern[str]) -> list[Figure]:
        """Measured figures of ``figure`` whose name starts with a match of ``pattern``."""
        return [
            candidate
            for candidate in self.figures
            if candidate.figure == figure and candidate.runs and pattern.match(candidate.name)
        ]

    def summary_table(self) -> str:
        """Every figure as a Markdown table (pasted as it is into BENCHMARKS.md)."""
        rows = ["| figure | measurement | median | min | max | runs |", "|---|---|---|---|---|---|"]
        for figure in self.figures:
            if figure.skipped is not None:
                rows.append(
                    f"| {figure.figure} | {figure.name} | skipped: {figure.skipped} | | | |"
                )
                continue
            rows.append(
                f"| {figure.figure} | {figure.name} | {format_value(figure.median, figure.unit)} "
                f"| {format_value(min(figure.runs), figure.unit)} "
                f"| {format_value(max(figure.runs), figure.unit)} | {len(figure.runs)} |"
            )
        return "\n".join(rows)

    def write_json(self, path: str, targets: list[dict[str, Any]]) -> None:
        document = {
            "environment": self.environment,
            "figures": [figure.as_json() for figure in self.figures],
            "targets": targets,
        }
        with open(path, "w", encoding="utf-8") as output:
            json.dump(document, output, indent=2)
            output.write("\n")


def progress(message: str) -> None:
    """A progress line on stderr, kept apart from the figures on stdout."""
    print(f"... {message}", file=sys.stderr, flush=True)
