"""Settings of the local queue and of the outcome batches, checked when they are built.

They live apart from :class:`~graphile_worker.worker.WorkerOptions` because they are
values of their own (``WorkerOptions(local_queue=LocalQueueOptions(size=500))``), and
because the checks that involve other options (a refetch delay longer than the poll
interval) are done here too, called from ``WorkerOptions.__post_init__``. Durations are in
seconds, like every other option; the command line takes milliseconds, as Node's does.
"""

from __future__ import annotations

import dataclasses
import math

from ..errors import ConfigurationError

__all__ = ["LocalQueueOptions", "RefetchDelay", "check_batch_delay", "check_local_queue"]


def _seconds(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        limit = "0 or more" if allow_zero else "more than 0"
        raise ConfigurationError(f"{name} must be {limit} seconds, not {value!r}")
    return float(value)


def _count(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int of at least {minimum}, not {value!r}")
    return value


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RefetchDelay:
    """Hold back the next fetch for a moment after a fetch came back (nearly) empty.

    With a trickle of jobs, a local queue would otherwise fetch once per job, each fetch a
    full claim statement. After a fetch that returned ``threshold`` jobs or fewer (and was
    not full), the next one waits a random 0.5 to 1.5 times ``duration``, unless
    ``jobs:insert`` notifications announce more than a random number of new jobs (up to
    ``max_abort_threshold``) first, which ends the wait at once. Node graphile-worker's
    ``localQueue.refetchDelay``.

    Attributes:
        duration: Seconds to wait, on average; at most the worker's ``poll_interval``.
        threshold: A fetch returning this many jobs or fewer starts the delay (0: only an
            empty fetch does).
        max_abort_threshold: Upper bound of the random number of announced jobs that ends
            the delay early; ``None`` means five times the local queue's ``size``.
    """

    __module__ = "graphile_worker.worker"

    duration: float
    threshold: int = 0
    max_abort_threshold: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "duration", _seconds("refetch_delay.duration", self.duration, allow_zero=False)
        )
        _count("refetch_delay.threshold", self.threshold, minimum=0)
        if self.max_abort_threshold is not None:
            _count("refetch_delay.max_abort_threshold", self.max_abort_threshold, minimum=1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LocalQueueOptions:
    """Claim jobs in batches and hand them to free slots from memory.

    One claim statement then serves up to ``size`` jobs instead of one or a few, which is
    what lets a worker run thousands of short jobs a second. The price: up to ``size`` jobs
    are locked by this worker before it can start them, so other workers cannot take
    them. Jobs still waiting after ``ttl`` seconds are handed back to the database; so is
    everything still waiting when the worker stops. Either way the claim's attempt is
    refunded, as if the job had never been claimed. Node graphile-worker's ``localQueue``.

    Attributes:
        size: Jobs claimed per fetch. At least the worker's ``concurrency`` is sensible
            (a smaller batch is refetched before every slot is busy).
        ttl: Seconds fetched jobs may wait in memory before they are handed back (Node's
            default, 5 minutes).
        refetch_delay: Slow down fetching when fetches come back short; see
            :class:`RefetchDelay`.
    """

    __module__ = "graphile_worker.worker"

    size: int
    ttl: float = 300.0
    refetch_delay: RefetchDelay | None = None

    def __post_init__(self) -> None:
        _count("local_queue.size", self.size, minimum=1)
        object.__setattr__(self, "ttl", _seconds("local_queue.ttl", self.ttl, allow_zero=False))
        if self.refetch_delay is not None and not isinstance(self.refetch_delay, RefetchDelay):
            raise ConfigurationError(
                f"local_queue.refetch_delay must be a RefetchDelay or None, not "
                f"{self.refetch_delay!r:.80}"
            )


def check_local_queue(value: object, *, poll_interval: float) -> LocalQueueOptions | None:
    """``WorkerOptions.local_queue``, checked against the other options."""
    if value is None:
        return None
    if not isinstance(value, LocalQueueOptions):
        raise ConfigurationError(
            f"local_queue must be LocalQueueOptions(size=...) or None, not {value!r:.80}"
        )
    delay = value.refetch_delay
    if delay is not None and delay.duration > poll_interval:
        # Node refuses this too: a delay longer than a poll would postpone polls.
        raise ConfigurationError(
            f"local_queue.refetch_delay.duration ({delay.duration}s) must not be longer than "
            f"poll_interval ({poll_interval}s)"
        )
    return value


def check_batch_delay(name: str, value: object) -> float | None:
    """A ``*_job_batch_delay`` option: ``None`` (no batching) or seconds, 0 allowed."""
    if value is None:
        return None
    return _seconds(name, value, allow_zero=True)
