"""``python -m tests.benchmarks``: choose the figures, run them, print the results and targets.

Exit status: 0 when every selected figure was measured or skipped for a stated reason,
1 when something broke (a worker crashed or timed out, a job was lost or ran twice, a
database step failed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from .admin_pages import FULL_JOBS as ADMIN_FULL_JOBS
from .admin_pages import FULL_RUNS as ADMIN_FULL_RUNS
from .admin_pages import QUICK_JOBS as ADMIN_QUICK_JOBS
from .admin_pages import QUICK_RUNS as ADMIN_QUICK_RUNS
from .admin_pages import admin_figures
from .depth import FULL_DEPTHS, QUICK_DEPTHS, depth_figures
from .drain import drain_figures, processes_figures
from .enqueue import enqueue_figures
from .environment import (
    CLI_OPTIONS,
    BenchError,
    BenchServer,
    describe_machine,
    detect_features,
    load_average,
)
from .latency import latency_figures
from .lifecycle import lifecycle_figures
from .pairs import DEEP_PAIRS, DEPTH_PAIRS, Pair, parse_pair, short_pairs
from .processes import node_available
from .results import Report, progress
from .serial import FULL_SERIAL_DEPTHS, QUICK_SERIAL_DEPTHS, serial_figures
from .steady import FULL_SECONDS, QUICK_SECONDS, STEADY_RATES, steady_figures
from .targets import evaluate, targets_table

FIGURES = (
    "drain",
    "node",
    "raw",
    "latency",
    "enqueue",
    "lifecycle",
    "processes",
    "depth",
    "steady",
    "serial",
    "admin",
)
"""Names accepted by ``--only``, in the order the figures run."""

OPT_IN_FIGURES = ("admin",)
"""Figures that run only when ``--only`` names them: the admin pages need a million jobs
(several minutes to build) and the admin extra."""

FULL = {"jobs": 50_000, "runs": 3, "latency_jobs": 500, "single_calls": 2_000}
QUICK = {"jobs": 5_000, "runs": 1, "latency_jobs": 100, "single_calls": 200}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, not {value}")
    return value


def _figure_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FIGURES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown figure(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(FIGURES)}"
        )
    return names


def _counts(text: str) -> list[int]:
    values = [_positive(part.strip().replace("_", "")) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, not {text!r}")
    return values


def _pairs(text: str) -> list[Pair]:
    try:
        return [parse_pair(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks",
        description=(
            "Benchmark graphile-worker for Python: drain rate against Node graphile-worker "
            "and raw SQL, latency, enqueue rate, start/stop time and memory, and the drain "
            "at depth on a dirty table, steady-state latency and a serial-queue mix "
            "(depth, steady, serial). Prints figures "
            "(and BENCH_JSON lines); never asserts performance, but exits 1 when a worker "
            "crashes or a job is lost. Uses $DATABASE_URL's server when set, else a "
            "temporary PostgreSQL with durable settings (see BENCHMARKS.md)."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"smoke test: {QUICK['jobs']:,} jobs, {QUICK['runs']} run, "
            f"{QUICK['latency_jobs']} latency jobs, {QUICK['single_calls']} add_job calls"
        ),
    )
    parser.add_argument(
        "--only",
        type=_figure_list,
        metavar="LIST",
        help=(
            f"comma-separated figures to run (default: all but {', '.join(OPT_IN_FIGURES)}): "
            f"{', '.join(FIGURES)}"
        ),
    )
    parser.add_argument(
        "--jobs",
        type=_positive,
        metavar="N",
        help=f"jobs per drain and enqueue run (default {FULL['jobs']:,})",
    )
    parser.add_argument(
        "--runs",
        type=_positive,
        metavar="N",
        help=f"runs per figure; the median is reported (default {FULL['runs']})",
    )
    parser.add_argument(
        "--latency-jobs",
        type=_positive,
        metavar="N",
        help=f"jobs added one by one per latency run (default {FULL['latency_jobs']})",
    )
    parser.add_argument(
        "--single-calls",
        type=_positive,
        metavar="N",
        help=f"add_job calls per run of the single-call rate (default {FULL['single_calls']:,})",
    )
    parser.add_argument(
        "--depths",
        type=_counts,
        metavar="LIST",
        help=(
            "backlogs of the depth figure (default "
            f"{','.join(map(str, FULL_DEPTHS))}; --quick: {','.join(map(str, QUICK_DEPTHS))})"
        ),
    )
    parser.add_argument(
        "--pairs",
        type=_pairs,
        metavar="LIST",
        help=(
            "driver/runtime pairs of the depth, steady and serial figures, such as "
            "asyncpg/asyncio,psycopg-anyio/trio (default: every driver for depth, only asyncpg "
            "and the trio drivers at 1M; asyncpg/asyncio and the best trio driver for the others)"
        ),
    )
    parser.add_argument(
        "--steady-rates",
        type=_counts,
        metavar="LIST",
        help=(
            "offered rates of the steady figure, jobs/s "
            f"(default {','.join(map(str, STEADY_RATES))})"
        ),
    )
    parser.add_argument(
        "--steady-seconds",
        type=_positive,
        metavar="N",
        help=(
            f"seconds each steady run offers jobs (default {FULL_SECONDS}; "
            f"--quick: {QUICK_SECONDS})"
        ),
    )
    parser.add_argument(
        "--serial-depths",
        type=_counts,
        metavar="LIST",
        help=(
            "backlogs of the serial-mix figure (default "
            f"{','.join(map(str, FULL_SERIAL_DEPTHS))}; "
            f"--quick: {','.join(map(str, QUICK_SERIAL_DEPTHS))})"
        ),
    )
    parser.add_argument(
        "--json-out", metavar="FILE", help="also write every figure to FILE as JSON"
    )
    parser.add_argument(
        "--pg-setting",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for the temporary server (repeatable; ignored with DATABASE_URL)",
    )
    return parser


def _sizes(arguments: argparse.Namespace) -> dict[str, int]:
    base = QUICK if arguments.quick else FULL
    return {key: getattr(arguments, key) or default for key, default in base.items()}


def _lists(arguments: argparse.Namespace) -> dict[str, list[int]]:
    """The depth, steady and serial sizes: given, or the defaults of a full or quick run."""
    quick = arguments.quick
    return {
        "depths": arguments.depths or list(QUICK_DEPTHS if quick else FULL_DEPTHS),
        "steady_rates": arguments.steady_rates or list(STEADY_RATES),
        "serial_depths": arguments.serial_depths
        or list(QUICK_SERIAL_DEPTHS if quick else FULL_SERIAL_DEPTHS),
    }


def run(arguments: argparse.Namespace) -> int:
    sizes = _sizes(arguments)
    lists = _lists(arguments)
    steady_seconds = arguments.steady_seconds or (
        QUICK_SECONDS if arguments.quick else FULL_SECONDS
    )
    selected = arguments.only or [name for name in FIGURES if name not in OPT_IN_FIGURES]
    report = Report()
    features = detect_features()
    node_reason = node_available()
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if busy > (os.cpu_count() or 1) / 2:
        progress(
            f"warning: the machine is busy (load average {busy:.1f} on {os.cpu_count()} "
            "cores); figures will be lower and noisier than on an idle machine"
        )
    url = os.environ.get("DATABASE_URL")
    if url and arguments.pg_setting:
        progress("DATABASE_URL is set: --pg-setting is ignored")
    progress("starting PostgreSQL" if url is None else "using the server in DATABASE_URL")
    started = time.monotonic()
    with BenchServer(url, dict(arguments.pg_setting)) as server:
        report.emit_environment(
            {
                "machine": describe_machine(),
                "postgres": server.describe(),
                "features": {
                    "cli": ", ".join(sorted(features.cli_options)) or "(none of the new ones)",
                    "cli_missing": ", ".join(sorted(set(CLI_OPTIONS) - features.cli_options))
                    or "(none)",
                    **{name: str(value) for name, value in features.library.items()},
                },
                "sizes": {
                    **sizes,
                    **{key: ",".join(map(str, values)) for key, values in lists.items()},
                    "steady_seconds": steady_seconds,
                    "pairs": ",".join(f"{d}/{r}" for d, r in arguments.pairs or ()) or "default",
                    "quick": arguments.quick,
                    "figures": ",".join(selected),
                },
            }
        )
        node_for_comparisons = "" if node_reason is None else node_reason
        if {"drain", "node", "raw"} & set(selected):
            drain_figures(
                report,
                server,
                features,
                jobs=sizes["jobs"],
                runs=sizes["runs"],
                python="drain" in selected,
                node=node_for_comparisons if "node" in selected else None,
                raw="raw" in selected,
            )
        if "processes" in selected:
            processes_figures(report, server, features, jobs=sizes["jobs"], runs=sizes["runs"])
        if "latency" in selected:
            latency_figures(
                report,
                server,
                features,
                count=sizes["latency_jobs"],
                runs=sizes["runs"],
                node=node_for_comparisons,
            )
        if "enqueue" in selected:
            enqueue_figures(
                report,
                server,
                jobs=sizes["jobs"],
                single_calls=sizes["single_calls"],
                runs=sizes["runs"],
            )
        if "lifecycle" in selected:
            lifecycle_figures(
                report, server, features, runs=sizes["runs"], node=node_for_comparisons
            )
        if "depth" in selected:
            depth_figures(
                report,
                server,
                features,
                depths=lists["depths"],
                runs=sizes["runs"],
                node=node_for_comparisons,
                pairs=arguments.pairs or DEPTH_PAIRS,
                deep_pairs=arguments.pairs or DEEP_PAIRS,
            )
        if "steady" in selected:
            steady_figures(
                report,
                server,
                features,
                rates=lists["steady_rates"],
                seconds=steady_seconds,
                node=node_for_comparisons,
                pairs=arguments.pairs or short_pairs(features),
            )
        if "serial" in selected:
            serial_figures(
                report,
                server,
                features,
                depths=lists["serial_depths"],
                runs=sizes["runs"],
                node=node_for_comparisons,
                pairs=arguments.pairs or short_pairs(features),
            )
        if "admin" in selected:
            admin_figures(
                report,
                server,
                jobs=ADMIN_QUICK_JOBS if arguments.quick else ADMIN_FULL_JOBS,
                runs=ADMIN_QUICK_RUNS if arguments.quick else ADMIN_FULL_RUNS,
            )
    verdicts = evaluate(report)
    report.environment["load_average_at_end"] = load_average()
    print()
    print("Summary")
    print(report.summary_table())
    print()
    print("Targets")
    print(targets_table(verdicts))
    print(
        f"\ntotal time {time.monotonic() - started:.0f} s; load average at the end: "
        f"{report.environment['load_average_at_end']}"
    )
    if arguments.json_out:
        report.write_json(arguments.json_out, verdicts)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        return run(arguments)
    except BenchError as error:
        print(f"\nbenchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
