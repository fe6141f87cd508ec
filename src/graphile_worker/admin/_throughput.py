"""The overview's throughput chart: jobs added and done per minute, for the last 15 minutes.

Counting finished jobs would need a history the schema does not keep, so the admin watches
PostgreSQL's running totals of rows inserted into and deleted from the jobs table
(:meth:`~graphile_worker.WorkerUtils.job_activity`) instead: a completed job is deleted, so
deletions are jobs done (or removed by hand). :class:`Sampler` reads them at most every five
seconds, whenever a page is rendered (an open page's live refresh keeps it sampling), and
keeps fifteen minutes of readings in memory. The chart therefore covers only the time since
this admin started watching, and says so.

:func:`build_chart` is pure: it turns the readings into per-minute rates, interpolating the
counters at minute boundaries, and lays out the SVG bars the template draws.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Final, final

from ..errors import DatabaseError
from ..inspection import JobActivity

__all__ = ["Bar", "Chart", "Sampler", "Tick", "build_chart"]

_logger = logging.getLogger("graphile_worker.admin")

SAMPLE_INTERVAL: Final = 5.0
"""Seconds between readings, at least: the counters are cheap, but not free."""
WINDOW: Final = timedelta(minutes=15)
BUCKETS: Final = 15
BUCKET: Final = WINDOW / BUCKETS

# The SVG canvas (viewBox units) and the plot area inside it.
WIDTH: Final = 720
HEIGHT: Final = 200
_LEFT: Final = 48
_RIGHT: Final = 8
_TOP: Final = 10
_BOTTOM: Final = 24
_PLOT_WIDTH: Final = WIDTH - _LEFT - _RIGHT
_PLOT_HEIGHT: Final = HEIGHT - _TOP - _BOTTOM


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    """One bar of the chart, in SVG coordinates, with its tooltip."""

    series: str
    x: float
    y: float
    width: float
    height: float
    title: str


@final
@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    """A labelled position on an axis, in SVG coordinates."""

    position: float
    label: str


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    """What the template needs to draw the chart, or to say it is still collecting."""

    collecting: bool
    bars: tuple[Bar, ...] = ()
    y_ticks: tuple[Tick, ...] = ()
    x_ticks: tuple[Tick, ...] = ()
    added: int = 0
    done: int = 0
    since: datetime | None = None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = _LEFT
    right: int = WIDTH - _RIGHT
    top: int = _TOP
    bottom: int = HEIGHT - _BOTTOM


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least ``value`` (and at least 1)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _counter_at(
    samples: Sequence[JobActivity], times: Sequence[datetime], moment: datetime
) -> tuple[float, float]:
    """Both counters at ``moment`` (within the samples), by linear interpolation."""
    index = bisect.bisect_left(times, moment)
    if index < len(samples) and times[index] == moment:
        return float(samples[index].added), float(samples[index].removed)
    before, after = samples[index - 1], samples[index]
    share = (moment - before.as_of) / (after.as_of - before.as_of)
    return (
        before.added + share * (after.added - before.added),
        before.removed + share * (after.removed - before.removed),
    )


def _rate_text(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def build_chart(samples: Sequence[JobActivity]) -> Chart:
    """Per-minute rates of jobs added and done, as bars, from the readings (oldest first)."""
    if len(samples) < 2 or samples[-1].as_of <= samples[0].as_of:
        return Chart(collecting=True, since=samples[0].as_of if samples else None)
    times = [sample.as_of for sample in samples]
    first, end = times[0], times[-1]
    start = end - WINDOW
    rates: list[tuple[int, float, float]] = []
    for index in range(BUCKETS):
        low = max(start + BUCKET * index, first)
        high = start + BUCKET * (index + 1)
        if high <= low or (high - low) < timedelta(seconds=1):
            continue
        added_low, done_low = _counter_at(samples, times, low)
        added_high, done_high = _counter_at(samples, times, high)
        minutes = (high - low) / timedelta(minutes=1)
        rates.append((index, (added_high - added_low) / minutes, (done_high - done_low) / minutes))
    peak = _nice_ceiling(max((max(added, done) for _, added, done in rates), default=0.0))
    slot = _PLOT_WIDTH / BUCKETS
    bar_width = slot * 0.36
    bars = []
    for index, added, done in rates:
        bucket_end = start + BUCKET * (index + 1)
        label = f"{bucket_end - BUCKET:%H:%M:%S}-{bucket_end:%H:%M:%S} UTC"
        for offset, series, value in ((0.12, "added", added), (0.52, "done", done)):
            height = _PLOT_HEIGHT * value / peak
            bars.append(
                Bar(
                    series=series,
                    x=round(_LEFT + slot * (index + offset), 1),
                    y=round(_TOP + _PLOT_HEIGHT - height, 1),
                    width=round(bar_width, 1),
                    height=round(height, 1),
                    title=f"{label}: {_rate_text(value)} {series} per minute",
                )
            )
    y_ticks = tuple(
        Tick(round(_TOP + _PLOT_HEIGHT * (1 - share), 1), _rate_text(peak * share))
        for share in (0.0, 0.5, 1.0)
    )
    x_ticks = tuple(
        Tick(round(_LEFT + slot * index, 1), label)
        for index, label in ((0, "-15m"), (5, "-10m"), (10, "-5m"), (15, "now"))
    )
    return Chart(
        collecting=False,
        bars=tuple(bars),
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        added=samples[-1].added - samples[0].added,
        done=samples[-1].removed - samples[0].removed,
        since=first,
    )


@final
class Sampler:
    """Readings of the job counters, at most one per :data:`SAMPLE_INTERVAL`, for 15 minutes.

    Shared by every request of one app. A reading is claimed before it is awaited, so
    requests arriving together trigger one reading, not one each.
    """

    __slots__ = ("_clock", "_last_attempt", "_samples")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_attempt: float | None = None
        self._samples: deque[JobActivity] = deque()

    @property
    def samples(self) -> tuple[JobActivity, ...]:
        """The readings kept, oldest first."""
        return tuple(self._samples)

    async def maybe_sample(self, read: Callable[[], Awaitable[JobActivity]]) -> None:
        """Take a reading with ``read`` unless one was taken in the last few seconds.

        A failed reading is logged and skipped: the chart is a convenience, and the page
        reports an unreachable database by itself.
        """
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < SAMPLE_INTERVAL:
            return
        self._last_attempt = now
        try:
            reading = await read()
        except DatabaseError as error:
            _logger.warning("Could not read the job counters for the throughput chart: %s", error)
            return
        self.add(reading)

    def add(self, reading: JobActivity) -> None:
        """Keep ``reading``; drop readings older than the window, or from before a reset."""
        if self._samples:
            last = self._samples[-1]
            if reading.as_of <= last.as_of:
                return
            if reading.added < last.added or reading.removed < last.removed:
                # The statistics were reset (pg_stat_reset, a crash): the old readings
                # cannot be subtracted from the new ones.
                self._samples.clear()
        self._samples.append(reading)
        # One reading at or before the window's start stays, to interpolate from.
        horizon = reading.as_of - WINDOW
        while len(self._samples) > 2 and self._samples[1].as_of <= horizon:
            self._samples.popleft()

    def chart(self) -> Chart:
        """The chart of the readings kept so far."""
        return build_chart(self.samples)
