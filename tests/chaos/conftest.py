"""Fixtures for the chaos suite: worker subprocesses that never outlive their test, the ledger."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import Ledger, WorkerProcess, task_name, wait_for

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture(autouse=True)
def _posix_only() -> None:
    if os.name != "posix":
        pytest.skip("the chaos suite sends POSIX signals to worker processes")


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """The file the chaos handlers append each run to (see :mod:`tests.chaos.harness`)."""
    return Ledger(tmp_path / "ledger.txt")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """Start a worker subprocess: ``start_worker(url, pair, "--jobs", "4", task=...)``.

    The task identifier defaults to the pair's own (:func:`~tests.chaos.harness.task_name`).
    Every worker started is killed at the end of the test if it still runs.
    """
    started: list[WorkerProcess] = []

    def start(
        database_url: str, pair: tuple[str, str], *args: str, task: str = ""
    ) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, database_url, pair, task or task_name(pair), *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.clean_up()


def wait_until_ready(*workers: WorkerProcess, timeout: float = 60) -> None:
    """Wait until every worker is connected and looking for jobs (they start in parallel)."""
    wait_for(
        lambda: all(worker.ready() for worker in workers),
        "the workers to start",
        timeout=timeout,
        describe=lambda: "\n".join(worker.describe() for worker in workers),
    )
