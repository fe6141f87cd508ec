"""A worker in a subprocess (Node's, or ours), and what it printed.

Both kinds print JSON lines on stdout (``{"event": "ready", ...}`` once they are running)
and report problems on stderr (Node as JSON log lines, see ``harness.mjs``; ours as plain
log text). Output goes to files rather than pipes, so a chatty worker can never block on a
full pipe. A worker stops gracefully when its stdin closes or on SIGTERM, and
:meth:`WorkerProcess.kill` SIGKILLs it the way a crash would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ProcessOutput", "PythonWorkerProcess", "WorkerProcess", "WorkerProcessError"]


# Node.js's own deprecation notices (and npm's engine warning) are about the runtime, not
# about graphile-worker; they must not fail a test on a newer Node.
_RUNTIME_NOISE = re.compile(r"^\(node:\d+\) |^\(Use `node --trace-|.*EBADENGINE")


class WorkerProcessError(RuntimeError):
    """A worker or script exited with an error or did not answer in time."""


@dataclass(frozen=True)
class ProcessOutput:
    """What a process printed: JSON events on stdout, log lines on stderr."""

    stdout: str
    stderr: str
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    other_stderr: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, stdout: str, stderr: str) -> ProcessOutput:
        events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        logs: list[dict[str, Any]] = []
        other: list[str] = []
        for line in stderr.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict) and "level" in entry:
                logs.append(entry)
            elif line.strip() and not _RUNTIME_NOISE.match(line):
                other.append(line)
        return cls(stdout, stderr, events, logs, other)

    def messages(self, *levels: str) -> list[str]:
        """Logged messages of the given levels (all levels when none given)."""
        return [log["message"] for log in self.logs if not levels or log["level"] in levels]

    def event(self, name: str) -> dict[str, Any] | None:
        """The first event called ``name``, if printed."""
        return next((event for event in self.events if event.get("event") == name), None)


class WorkerProcess:
    """A continuously running worker in a subprocess; see the module docstring."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        environment: dict[str, str],
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self._command = list(command)
        self._environment = environment
        self._cwd = cwd
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.output: ProcessOutput | None = None
        """Set once the process has exited."""
        self.ready: dict[str, Any] | None = None
        """The ready event, once the worker is running."""

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait for its ready line."""
        self._directory = tempfile.TemporaryDirectory(prefix="gw-interop-worker-")
        root = Path(self._directory.name)
        self._stdout = (root / "stdout").open("w+b")
        self._stderr = (root / "stderr").open("w+b")
        self._process = subprocess.Popen(
            self._command,
            cwd=self._cwd or root,
            env=self._environment,
            stdin=subprocess.PIPE,
            stdout=self._stdout,
            stderr=self._stderr,
        )
        deadline = time.monotonic() + timeout
        while (ready := self.logs().event("ready")) is None:
            if self._process.poll() is not None:
                self._finish()
                raise WorkerProcessError(f"{self.name} exited before it was ready:\n{self.output}")
            if time.monotonic() > deadline:
                self.kill()
                raise WorkerProcessError(
                    f"{self.name} was not ready after {timeout}s:\n{self.output}"
                )
            time.sleep(0.02)
        self.ready = ready

    def logs(self) -> ProcessOutput:
        """What the process has printed so far."""
        if self.output is not None:
            return self.output
        assert self._stdout is not None and self._stderr is not None
        return ProcessOutput.parse(
            Path(self._stdout.name).read_text(errors="replace"),
            Path(self._stderr.name).read_text(errors="replace"),
        )

    def stop(self, timeout: float = 30.0) -> ProcessOutput:
        """Ask the worker to stop gracefully and wait for it; kill it after ``timeout``."""
        process = self._process
        assert process is not None, "the worker was never started"
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            self._finish()
            raise WorkerProcessError(
                f"{self.name} did not stop within {timeout}s:\n{self.output}"
            ) from None
        self._finish()
        assert self.output is not None
        if process.returncode != 0:
            raise WorkerProcessError(
                f"{self.name} exited with {process.returncode}:\n{self.output}"
            )
        return self.output

    def kill(self) -> None:
        """SIGKILL the worker, as a crash would: it releases nothing it holds."""
        process = self._process
        assert process is not None, "the worker was never started"
        process.kill()
        process.wait()
        self._finish()

    def _finish(self) -> None:
        if self.output is None:
            self.output = self.logs()
        process = self._process
        if process is not None and process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        for handle in (self._stdout, self._stderr):
            if handle is not None:
                handle.close()
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            self._finish()
        elif exc_info[0] is None:
            self.stop()
        else:
            self.kill()


REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


class PythonWorkerProcess(WorkerProcess):
    """Our worker (``python_worker_main.py``) in a subprocess, on asyncio or trio."""

    def __init__(
        self, url: str, schema: str, *, concurrency: int = 1, backend: str = "asyncio"
    ) -> None:
        options = {
            "connection": url,
            "schema": schema,
            "concurrency": concurrency,
            "backend": backend,
        }
        environment = dict(os.environ)
        # The tests package is imported from the repository root, whatever pytest's cwd.
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPOSITORY_ROOT), environment.get("PYTHONPATH")])
        )
        super().__init__(
            "our worker",
            [sys.executable, "-m", "tests.interop.python_worker_main", json.dumps(options)],
            environment=environment,
            cwd=REPOSITORY_ROOT,
        )
