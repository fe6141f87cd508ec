"""Figure 6: how long an idle worker takes to start and to stop.

Start-to-ready is the time from spawning ``graphile-worker run`` (just before
``subprocess.Popen``) to the moment its first "ready" log line arrives on stderr: the
interpreter starting, the imports, loading the task module, opening the pool, checking
the schema, starting to LISTEN, and the log line "... connected and looking for jobs". The
worker runs with info logging here, since that line is an info line. Node's runner prints
its own line once ``run()`` has resolved, which covers the same steps.

Stop is the time from SIGTERM to the process having exited (status 0 required) after it
has been idle for half a second.
"""

from __future__ import annotations

import dataclasses
import time

from .drain import PYTHON_PAIRS, node_config, python_config
from .environment import BenchServer, Features
from .processes import WorkerProcess, check_count
from .results import Figure, Report, progress

IDLE = 0.5
"""Seconds an idle worker runs before it is told to stop."""


def lifecycle_once(
    server: BenchServer, features: Features, label: str, node: bool, driver: str, runtime: str
) -> tuple[float, float]:
    """(start-to-ready, stop) in milliseconds for one worker process."""
    config = node_config() if node else python_config(driver, runtime)
    config = dataclasses.replace(config, quiet=False)
    with server.fresh_database() as url, WorkerProcess(config, features, url) as worker:
        ready = worker.wait_ready()
        time.sleep(IDLE)
        stop = worker.stop()
        check_count(worker, worker.records(), 0)
    return ready * 1000, stop * 1000


def lifecycle_figures(
    report: Report, server: BenchServer, features: Features, *, runs: int, node: str | None
) -> None:
    """Start-to-ready and stop time for every driver/runtime pair, and for Node.

    Args:
        node: ``None`` to leave Node out, ``""`` to measure it, or why it cannot run.
    """
    subjects = [
        (f"{driver}/{runtime}", False, driver, runtime)
        for driver, runtime in PYTHON_PAIRS
        if runtime == "asyncio" or features.has("--runtime")
    ]
    if node == "":
        subjects.append(("node", True, "", ""))
    elif node is not None:
        report.emit(Figure("lifecycle", "start-to-ready node", "ms", skipped=node))
    measured: dict[str, list[tuple[float, float]]] = {subject[0]: [] for subject in subjects}
    for round_number in range(1, runs + 1):
        for label, is_node, driver, runtime in subjects:
            progress(f"start/stop {label}: run {round_number}/{runs}")
            measured[label].append(
                lifecycle_once(server, features, label, is_node, driver, runtime)
            )
    for label, *_ in subjects:
        times = measured[label]
        report.emit(
            Figure(
                "lifecycle",
                f"start-to-ready {label}",
                "ms",
                [ready for ready, _ in times],
                measured="spawn -> first ready log line, idle worker",
            )
        )
        report.emit(
            Figure(
                "lifecycle",
                f"stop {label}",
                "ms",
                [stop for _, stop in times],
                measured="SIGTERM -> process exit, idle worker",
            )
        )
