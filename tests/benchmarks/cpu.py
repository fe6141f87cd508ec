"""CPU time of the worker process and of the PostgreSQL server, sampled while a queue drains.

The cost of a job is read from the kernel rather than estimated: a process's CPU clock
(``clock_getcpuclockid``) counts every thread of it in nanoseconds, including threads that
have already exited, and serves Node and Python alike. PostgreSQL is one process per
connection, so its time is the postmaster's own, plus every live child's (backends, WAL
writer, autovacuum workers, ...), plus what its exited children left in the postmaster's
``cutime``/``cstime`` (a backend that closes mid-run is not lost, only rounded to clock
ticks). That includes the benchmark's own polling connection, a few hundred cheap
statements a second, and whatever else the server does meanwhile: with a shared
``DATABASE_URL`` server the PostgreSQL figure is an upper bound.

Linux only; elsewhere, or for a server on another machine, the figures are skipped.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

SAMPLE_INTERVAL = 0.01
"""Seconds between two samples: fine enough to split a drain of 100,000 jobs into tenths,
cheap enough (about 50 µs a sample) to cost the machine nothing measurable."""

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_libc: ctypes.CDLL | None = None


def _clock_id(pid: int) -> int | None:
    """The CPU clock of process ``pid``, or ``None`` where there is none (not Linux, gone)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        _libc = ctypes.CDLL(name, use_errno=True)
    clock = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
        return None
    return clock.value


def process_cpu(pid: int) -> float | None:
    """CPU seconds process ``pid`` has used so far (all its threads), or ``None``."""
    clock = _clock_id(pid)
    if clock is None:
        return None
    try:
        return time.clock_gettime(clock)
    except OSError:  # exited between the two calls
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return _children_by_scan(pid)
    return [int(child) for child in text.split()]


def _children_by_scan(pid: int) -> list[int]:
    """Children of ``pid`` from every process's parent (kernels without ``children``)."""
    numbers = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return [number for number in numbers if parent_pid(number) == pid]


class PostgresCpu:
    """The CPU time of one PostgreSQL server on this machine (see the module docstring)."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster

    @classmethod
    def locate(cls, url: str) -> PostgresCpu | None:
        """The server behind ``url``, or ``None`` when its processes cannot be read here."""
        import psycopg

        # Checked while the connection is open: its backend must be alive to be found.
        with psycopg.connect(url, autocommit=True) as connection:
            row = connection.execute("select pg_backend_pid()").fetchone()
            assert row is not None
            backend = int(row[0])
            postmaster = parent_pid(backend)
            if postmaster is None or process_cpu(postmaster) is None:
                return None
            if backend not in _children(postmaster):
                return None  # a different machine whose pids happen to exist here
        return cls(postmaster)

    def seconds(self) -> float:
        """CPU seconds the server has used so far."""
        total = process_cpu(self.postmaster) or 0.0
        fields = _stat_fields(self.postmaster)
        if fields is not None:
            # cutime and cstime: fields 16 and 17 of stat, 14 and 15 after the name.
            total += (int(fields[13]) + int(fields[14])) / _TICKS
        for child in _children(self.postmaster):
            total += process_cpu(child) or 0.0
        return total


@dataclass
class CpuSamples:
    """(time, worker CPU seconds, server CPU seconds) at regular moments of one run."""

    times: list[float] = field(default_factory=list)
    worker: list[float] = field(default_factory=list)
    server: list[float | None] = field(default_factory=list)

    def _at(self, values: list[float], moment: float) -> float:
        """``values`` interpolated linearly at wall-clock ``moment``."""
        index = bisect.bisect_left(self.times, moment)
        if index <= 0:
            return values[0]
        if index >= len(self.times):
            return values[-1]
        before, after = self.times[index - 1], self.times[index]
        share = (moment - before) / (after - before) if after > before else 1.0
        return values[index - 1] + (values[index] - values[index - 1]) * share

    def worker_between(self, start: float, end: float) -> float:
        """Worker CPU seconds used between two wall-clock moments."""
        return self._at(self.worker, end) - self._at(self.worker, start)

    def server_between(self, start: float, end: float) -> float | None:
        """Server CPU seconds used between two moments, ``None`` when not measured."""
        if not self.server or any(value is None for value in self.server):
            return None
        server = [value for value in self.server if value is not None]
        return self._at(server, end) - self._at(server, start)


class CpuSampler:
    """A thread that samples the worker's and the server's CPU time until stopped.

    Use as a context manager; the first sample is taken on entry and the last on exit, so
    the samples always cover the block.
    """

    def __init__(
        self, worker_pid: int, server: PostgresCpu | None, interval: float = SAMPLE_INTERVAL
    ) -> None:
        self._pid = worker_pid
        self._server = server
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu", daemon=True)
        self.samples = CpuSamples()

    def _sample(self) -> None:
        worker = process_cpu(self._pid)
        if worker is None:
            return  # the worker is gone; the run fails elsewhere
        server = self._server.seconds() if self._server is not None else None
        self.samples.times.append(time.time())
        self.samples.worker.append(worker)
        self.samples.server.append(server)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> Self:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._sample()
