"""How a worker proves it is alive, and how long the others wait before giving it up."""

from __future__ import annotations

import dataclasses
import math

from ..errors import ConfigurationError

__all__ = ["RecoveryOptions"]


def _seconds(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        limit = "0 or more" if allow_zero else "more than 0"
        raise ConfigurationError(f"{name} must be {limit} seconds, not {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryOptions:
    """Dead-worker recovery: heartbeats, and when a silent worker's jobs are handed back.

    A worker with recovery on registers itself in the schema's worker registry, refreshes
    its heartbeat every ``heartbeat_interval`` seconds and, as often, sweeps: every worker
    silent for longer than its own ``stale_after`` is given up, and the jobs and queues it
    still locks are handed back, runnable again after ``recovery_delay``. Node's only cure
    is its four-hour lock expiry, which still runs for workers that never registered.

    The defaults give a dead worker's jobs back within about five and a half minutes while
    tolerating ten missed heartbeats, enough for a long garbage-collection pause, a busy
    database or a short network partition. A worker that is given up while it still runs
    notices at its next heartbeat and logs an error; jobs it was running may then run twice.

    Attributes:
        heartbeat_interval: Seconds between heartbeats (and between sweeps).
        stale_after: Seconds of silence after which the worker is presumed dead. At least
            twice ``heartbeat_interval``, so that one late heartbeat never costs a live
            worker its jobs.
        recovery_delay: Seconds a recovered job waits before it may run again, so that a
            job that killed its worker does not at once kill the next one.
        long_running_stale_after: The silence after which jobs flagged ``long-running``
            (``JobSpec(flags=["long-running"])``) are recovered. Running such a job twice
            costs more, so it gets more patience; its worker's other jobs are recovered
            after ``stale_after`` as usual. At least ``stale_after``.
    """

    __module__ = "graphile_worker.recovery"

    heartbeat_interval: float = 30.0
    stale_after: float = 300.0
    recovery_delay: float = 30.0
    long_running_stale_after: float = 3600.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise fields once, here
        for name in ("heartbeat_interval", "stale_after", "long_running_stale_after"):
            set_(self, name, _seconds(name, getattr(self, name), allow_zero=False))
        set_(
            self, "recovery_delay", _seconds("recovery_delay", self.recovery_delay, allow_zero=True)
        )
        if self.stale_after < 2 * self.heartbeat_interval:
            raise ConfigurationError(
                f"stale_after ({self.stale_after:g}s) must be at least twice heartbeat_interval "
                f"({self.heartbeat_interval:g}s): otherwise one late heartbeat gives a live "
                f"worker up"
            )
        if self.long_running_stale_after < self.stale_after:
            raise ConfigurationError(
                f"long_running_stale_after ({self.long_running_stale_after:g}s) must be at "
                f"least stale_after ({self.stale_after:g}s)"
            )
