"""Drive Node graphile-worker from the tests: its utilities, a one-shot run, a running worker.

Everything goes through the scripts next to this module (``utils.mjs``, ``worker.mjs``,
``harness.mjs``), run with the packages ``npm ci`` installed in this directory:
``graphile-worker`` (the release we are compatible with) and ``graphile-worker-0.13`` (an
older release, for schema upgrades). Node runs in an empty scratch directory with a clean
environment, so no ``graphile.config.*``, ``crontab`` or ``PG*`` variable around the suite
can change what it does.

Node reports warnings and errors on stderr as JSON lines (see ``harness.mjs``);
:class:`~tests.interop.processes.ProcessOutput` parses them, so tests can assert that Node
had nothing to complain about.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from .processes import ProcessOutput, WorkerProcess, WorkerProcessError

__all__ = [
    "CURRENT",
    "INTEROP_DIR",
    "OLD",
    "NodeError",
    "NodeWorker",
    "ProcessOutput",
    "node_utils",
    "node_worker",
    "run_node_once",
]

INTEROP_DIR = Path(__file__).parent
"""The npm project: package.json, package-lock.json and the .mjs scripts."""

CURRENT = "graphile-worker"
"""npm name of the release we are compatible with (pinned in package.json)."""
OLD = "graphile-worker-0.13"
"""npm alias of graphile-worker 0.13.0, whose schema stops at migration 10."""

_WORKER_SCRIPT = INTEROP_DIR / "worker.mjs"
_UTILS_SCRIPT = INTEROP_DIR / "utils.mjs"


NodeError = WorkerProcessError
"""A Node script exited with an error or did not answer in time."""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise NodeError("node is not on PATH")
    return node


def _environment() -> dict[str, str]:
    # Node graphile-worker reads DATABASE_URL and PG* variables and GRAPHILE_* settings;
    # every option the tests mean is passed explicitly instead.
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GRAPHILE_", "PG")) and key != "DATABASE_URL"
    }


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot send {value!r} to Node")


@contextmanager
def _scratch_directory() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="gw-interop-node-") as directory:
        yield directory


def node_utils(
    url: str,
    schema: str,
    ops: Sequence[dict[str, Any]],
    *,
    package: str = CURRENT,
    timeout: float = 60.0,
) -> list[Any]:
    """Run Node's WorkerUtils operations (see ``utils.mjs``) and return their results.

    Jobs come back as Node returns them: ids as strings, dates as ISO strings.

    Raises:
        NodeError: Node exited non-zero (the message has its output).
    """
    request = {"connection": url, "schema": schema, "package": package, "ops": list(ops)}
    with _scratch_directory() as directory:
        completed = subprocess.run(
            [_node(), str(_UTILS_SCRIPT)],
            input=json.dumps(request, default=_json_default),
            cwd=directory,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if completed.returncode != 0:
        raise NodeError(
            f"node utils.mjs exited with {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    results: list[Any] = json.loads(completed.stdout)["results"]
    return results


def _worker_options(url: str, schema: str, package: str, **options: Any) -> str:
    settings = {"connection": url, "schema": schema, "package": package}
    settings.update({key: value for key, value in options.items() if value is not None})
    return json.dumps(settings)


def run_node_once(
    url: str,
    schema: str,
    *,
    package: str = CURRENT,
    concurrency: int | None = None,
    forbidden_flags: Sequence[str] | None = None,
    timeout: float = 60.0,
) -> ProcessOutput:
    """Run Node's ``runOnce`` with the suite's tasks: every job runnable now, then exit.

    Raises:
        NodeError: Node exited non-zero.
    """
    options = _worker_options(
        url,
        schema,
        package,
        once=True,
        concurrency=concurrency,
        forbiddenFlags=None if forbidden_flags is None else list(forbidden_flags),
    )
    with _scratch_directory() as directory:
        completed = subprocess.run(
            [_node(), str(_WORKER_SCRIPT), options],
            cwd=directory,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    output = ProcessOutput.parse(completed.stdout, completed.stderr)
    if completed.returncode != 0:
        raise NodeError(
            f"node worker.mjs --once exited with {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    return output


class NodeWorker(WorkerProcess):
    """A continuously running Node worker (``worker.mjs``) in a subprocess.

    Use as a context manager: entering waits until the worker is running, leaving stops it
    gracefully and kills it if it does not exit in time.
    """

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        package: str = CURRENT,
        concurrency: int | None = None,
        poll_interval: int | None = None,
        forbidden_flags: Sequence[str] | None = None,
        max_pool_size: int | None = None,
        verbose: bool = False,
    ) -> None:
        options = _worker_options(
            url,
            schema,
            package,
            concurrency=concurrency,
            pollInterval=poll_interval,
            forbiddenFlags=None if forbidden_flags is None else list(forbidden_flags),
            maxPoolSize=max_pool_size,
        )
        environment = _environment()
        if verbose:
            environment["GW_INTEROP_VERBOSE"] = "1"
        super().__init__(
            "the Node worker", [_node(), str(_WORKER_SCRIPT), options], environment=environment
        )


@asynccontextmanager
async def node_worker(url: str, schema: str, **options: Any) -> AsyncIterator[NodeWorker]:
    """A :class:`NodeWorker` for async tests: started and stopped without blocking the loop.

    Leaving normally stops the worker gracefully; leaving with an error kills it.
    """
    worker = NodeWorker(url, schema, **options)
    await anyio.to_thread.run_sync(worker.start)
    try:
        yield worker
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(worker.kill)
        raise
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(worker.stop)
