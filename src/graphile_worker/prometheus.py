"""Prometheus metrics for a worker: job counters and timings from hooks, queue depth at scrape.

:class:`PrometheusPlugin` is a hooks :class:`~graphile_worker.hooks.Plugin` that counts
what its worker does (jobs started, completed, failed, interrupted; run time; how long a
due job waited) and, when a scrape comes, reads how many jobs wait in the database with
:meth:`~graphile_worker.SyncWorkerUtils.stats`, at most once per ``depth_min_interval``.
:class:`MetricsServer` serves ``/metrics`` and ``/healthz`` from a thread; ``graphile-worker
run --metrics-port N`` starts one. Needs the ``prometheus`` extra (``prometheus-client``).

Label cardinality: the ``task`` and ``queue`` labels carry task identifiers and queue
names, which are user data. Each distinct value is a time series, so do not build them
from per-job values (user ids, dates); a few hundred distinct values are fine.
"""

from __future__ import annotations

import bisect
import http.server
import importlib.util
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, final

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .errors import ConfigurationError
from .hooks import (
    JobComplete,
    JobFail,
    JobInterrupted,
    JobPermanentlyFail,
    JobStart,
    LocalQueueFetched,
    LocalQueueModeChange,
    LocalQueueReturned,
    Observer,
    Plugin,
    WorkerShutdown,
    WorkerStart,
)
from .sql import DEFAULT_SCHEMA
from .utils import SyncWorkerUtils

if TYPE_CHECKING:
    from .inspection import QueueStats

__all__ = ["DepthReader", "DepthReading", "MetricsServer", "PrometheusPlugin"]

_logger = logging.getLogger("graphile_worker.prometheus")

RUN_TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
"""Seconds; jobs range from a few milliseconds to minutes, so the buckets do too."""

_BOUNDS = (*(str(float(bound)) for bound in RUN_TIME_BUCKETS), "+Inf")
"""The buckets' ``le`` labels, as Prometheus writes them."""

_STATES = ("ready", "scheduled", "locked", "retrying", "failed")


@final
class PrometheusPlugin(Plugin, Observer):
    """Counts what a worker does and reports queue depth, for Prometheus.

    Hand it to ``WorkerOptions(hooks=[...])`` and serve its registry (``prometheus_client``'s
    ``start_http_server``, or :class:`MetricsServer`, which adds ``/healthz``). One plugin
    per worker: two plugins on one registry would register the same metric names twice.

    Queue depth is read from the database when a scrape comes, not from the worker's
    events, so it counts every worker's jobs. The read runs on a connection of its own
    (:meth:`SyncWorkerUtils.connect <graphile_worker.SyncWorkerUtils.connect>`) in a
    thread of its own: a scrape runs in the HTTP server's thread, where the worker's event
    loop and pool must not be touched, and a blocking connection there needs no loop at
    all. A scrape waits at most ``depth_timeout`` for it; a slower or failing read leaves
    the previous figures in place, with ``depth_age_seconds`` saying how old they are and
    ``depth_errors_total`` counting the failures.

    Args:
        registry: Where the metrics go; ``None`` for ``prometheus_client``'s default
            registry (the one its ``start_http_server`` serves).
        namespace: Prefix of every metric name.
        depth: Read queue depth from the database at scrape time (needs psycopg, which
            the read uses whatever driver the worker has).
        database_url: The database to read depth from (``$DATABASE_URL`` when ``None``).
        schema: The graphile-worker schema there.
        depth_min_interval: Seconds a depth reading is reused: with a 1 s scrape interval
            and the default 15 s, the database is read once per 15 s.
        depth_timeout: Seconds a scrape waits for a depth reading before it serves the
            last one.

    Raises:
        ConfigurationError: ``depth`` without psycopg installed, a negative
            ``depth_min_interval`` or a ``depth_timeout`` that is not above 0.
    """

    name = "prometheus"

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "graphile_worker",
        depth: bool = True,
        database_url: str | None = None,
        schema: str = DEFAULT_SCHEMA,
        depth_min_interval: float = 15.0,
        depth_timeout: float = 2.0,
    ) -> None:
        super().__init__()
        if depth_min_interval < 0 or depth_timeout <= 0:
            raise ConfigurationError(
                f"depth_min_interval ({depth_min_interval!r}) must be at least 0 and "
                f"depth_timeout ({depth_timeout!r}) above 0"
            )
        if depth and importlib.util.find_spec("psycopg") is None:
            raise ConfigurationError(
                "PrometheusPlugin reads queue depth with psycopg, which is not installed; "
                "pip install graphile-worker[psycopg], or pass depth=False"
            )
        self.registry: CollectorRegistry = REGISTRY if registry is None else registry
        self._worker_id: str | None = None
        self._shutdown_reason: str | None = None
        # Job id -> (monotonic start, its task's counts): failures carry no duration.
        self._running_jobs: dict[int, tuple[float, _TaskCounts]] = {}
        self._by_task: dict[str, _TaskCounts] = {}
        self._local_held = 0
        self.registry.register(_JobCollector(self, namespace))
        self.depth: DepthReader | None = None
        if depth:
            self.depth = DepthReader(
                database_url,
                schema=schema,
                min_interval=depth_min_interval,
                timeout=depth_timeout,
            )
            self.registry.register(_DepthCollector(self.depth, namespace))

    # ------------------------------------------------------------------------- events

    def on_worker_start(self, event: WorkerStart) -> None:
        self._worker_id = event.worker_id
        self._shutdown_reason = None

    def on_worker_shutdown(self, event: WorkerShutdown) -> None:
        self._shutdown_reason = event.reason

    # Every job taken from the local queue ends up in exactly one of: on_job_start, or the
    # first outcome of a job that never started (a payload or hook failure, a skipped run,
    # a stop). Each of those counts it out of the local-queue gauge, so the plugin needs no
    # per-job JobFetch event (one event less to build and dispatch for every job).

    def _left_local_queue(self) -> None:
        if self._local_held > 0:
            self._local_held -= 1

    def on_job_start(self, event: JobStart) -> None:
        self._left_local_queue()
        job = event.job
        counts = self._task(job.task_identifier)
        self._running_jobs[job.id] = (time.monotonic(), counts)
        counts.started += 1
        counts.running += 1
        due = max(job.run_at, job.created_at)
        counts.start_latency.observe(max(0.0, time.time() - due.timestamp()))

    def on_job_complete(self, event: JobComplete) -> None:
        if self._finished(event.job.id) is None:
            self._left_local_queue()  # a run a hook skipped
        counts = self._task(event.job.task_identifier)
        counts.completed += 1
        counts.run_completed.observe(event.duration)

    def on_job_fail(self, event: JobFail) -> None:
        started = self._finished(event.job.id)
        counts = self._task(event.job.task_identifier)
        counts.failed += 1
        # A job failed before its handler ran (a payload or hook error) has no run time.
        if started is not None:
            counts.run_failed.observe(time.monotonic() - started)
        else:
            self._left_local_queue()

    def on_job_permanently_fail(self, event: JobPermanentlyFail) -> None:
        self._task(event.job.task_identifier).permanently_failed += 1

    def on_job_interrupted(self, event: JobInterrupted) -> None:
        if self._finished(event.job.id) is None:
            self._left_local_queue()
        self._task(event.job.task_identifier).interrupted += 1

    def on_local_queue_fetched(self, event: LocalQueueFetched) -> None:
        self._local_held = event.held

    def on_local_queue_returned(self, event: LocalQueueReturned) -> None:
        self._local_held = max(0, self._local_held - len(event.job_ids))

    def on_local_queue_mode_change(self, event: LocalQueueModeChange) -> None:
        if event.mode != "WAITING":  # every other mode means memory is empty
            self._local_held = 0

    def _task(self, task: str) -> _TaskCounts:
        counts = self._by_task.get(task)
        if counts is None:
            counts = self._by_task[task] = _TaskCounts()
        return counts

    def _finished(self, job_id: int) -> float | None:
        entry = self._running_jobs.pop(job_id, None)
        if entry is None:
            return None
        entry[1].running -= 1
        return entry[0]

    # ------------------------------------------------------------------------- health

    def health(self, max_outage: float) -> tuple[bool, dict[str, object]]:
        """Whether the worker is up, and a JSON-ready body saying why not.

        Healthy means the worker started (connected, migrated, listening), has not begun
        to shut down, and, when depth is read, the database answered within the last
        ``max_outage`` seconds. That last check reuses the depth read, with its rate limit
        and bounded wait, so a health check every second costs no more than scrapes do.
        """
        if self._worker_id is None:
            return False, {"status": "starting", "reason": "the worker has not started yet"}
        body: dict[str, object] = {"worker_id": self._worker_id}
        if self._shutdown_reason is not None:
            return False, {**body, "status": "stopping", "reason": self._shutdown_reason}
        if self.depth is not None:
            reading = self.depth.read()
            outage = reading.outage
            if outage is not None and outage > max_outage:
                return False, {
                    **body,
                    "status": "database unreachable",
                    "reason": f"no successful database read for {outage:.0f} s "
                    f"(limit {max_outage:g} s): {reading.error}",
                }
        return True, {**body, "status": "ok"}

    def close(self) -> None:
        """Close the depth reader's connection (a read in flight closes it when done)."""
        if self.depth is not None:
            self.depth.close()


# ------------------------------------------------------------------------------ job counts
#
# Counted in plain integers and turned into metric families only when scraped: a
# prometheus_client Counter or Histogram takes a lock on every update, and a job makes six
# of them, which cost a few percent of the drain rate. Every update happens on the
# worker's event loop thread, so there is one writer; a scrape reads, in another thread,
# values at most one update old.


@final
class _Histogram:
    """Bucket counts (not cumulative) and a sum, for :data:`RUN_TIME_BUCKETS`."""

    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(RUN_TIME_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(RUN_TIME_BUCKETS, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        counts = list(self.buckets)  # one copy, so the buckets agree with each other
        return list(zip(_BOUNDS, itertools.accumulate(counts), strict=True))


@final
class _TaskCounts:
    """What one task's jobs did in this worker."""

    __slots__ = (
        "completed",
        "failed",
        "interrupted",
        "permanently_failed",
        "run_completed",
        "run_failed",
        "running",
        "start_latency",
        "started",
    )

    def __init__(self) -> None:
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.permanently_failed = 0
        self.interrupted = 0
        self.running = 0
        self.run_completed = _Histogram()
        self.run_failed = _Histogram()
        self.start_latency = _Histogram()


_COUNTERS = (
    ("jobs_started", "started", "Jobs whose handler was called."),
    ("jobs_completed", "completed", "Jobs that succeeded."),
    ("jobs_failed", "failed", "Failed attempts (every attempt, including the last)."),
    (
        "jobs_permanently_failed",
        "permanently_failed",
        "Jobs that failed for good (their last attempt, or a permanent error).",
    ),
    ("jobs_interrupted", "interrupted", "Running jobs released by shutdown, attempt refunded."),
)


class _JobCollector(Collector):
    """Turns the plugin's job counts into metric families when the registry is collected."""

    def __init__(self, plugin: PrometheusPlugin, namespace: str) -> None:
        self._plugin = plugin
        self._prefix = f"{namespace}_" if namespace else ""

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        prefix = self._prefix
        by_task = sorted(dict(self._plugin._by_task).items())
        for name, attribute, documentation in _COUNTERS:
            counter = CounterMetricFamily(prefix + name, documentation, labels=("task",))
            for task, counts in by_task:
                counter.add_metric([task], getattr(counts, attribute))
            yield counter
        run_time = HistogramMetricFamily(
            f"{prefix}job_run_seconds",
            "Handler run time, by task and outcome (completed/failed).",
            labels=("task", "outcome"),
        )
        latency = HistogramMetricFamily(
            f"{prefix}job_start_latency_seconds",
            "From when a job became due (the later of run_at and created_at) to its start.",
            labels=("task",),
        )
        running = GaugeMetricFamily(
            f"{prefix}jobs_running", "Jobs whose handler is running now.", labels=("task",)
        )
        for task, counts in by_task:
            for outcome, histogram in (
                ("completed", counts.run_completed),
                ("failed", counts.run_failed),
            ):
                run_time.add_metric([task, outcome], histogram.cumulative(), histogram.sum)
            latency.add_metric([task], counts.start_latency.cumulative(), counts.start_latency.sum)
            running.add_metric([task], counts.running)
        local_queue = GaugeMetricFamily(
            f"{prefix}local_queue_jobs",
            "Claimed jobs waiting in the local queue: held after the last fetch, less those "
            "started or handed back since (0 whenever the queue reports itself empty).",
        )
        local_queue.add_metric([], self._plugin._local_held)
        yield from (run_time, latency, running, local_queue)


# ---------------------------------------------------------------------------------- depth


@final
class DepthReading:
    """What :meth:`DepthReader.read` saw: the last stats, and how the reads have gone."""

    __slots__ = ("age", "error", "errors", "outage", "stats")

    def __init__(
        self,
        stats: QueueStats | None,
        age: float | None,
        errors: int,
        outage: float | None,
        error: str | None,
    ) -> None:
        self.stats: QueueStats | None = stats
        self.age: float | None = age
        self.errors: int = errors
        self.outage: float | None = outage
        self.error: str | None = error


@final
class DepthReader:
    """Reads :class:`~graphile_worker.inspection.QueueStats`, rate-limited and with a bound.

    A read runs in a daemon thread on the reader's own blocking connection; callers wait
    for it at most ``timeout`` seconds and otherwise get the previous result. At most one
    read is in flight and a new one starts only ``min_interval`` seconds after the last
    began, so neither a fast scrape interval nor a hung database piles up connections.
    """

    def __init__(
        self, url: str | None, *, schema: str, min_interval: float, timeout: float
    ) -> None:
        self._url = url
        self._schema = schema
        self._min_interval = min_interval
        self._timeout = timeout
        self._lock = threading.Lock()
        self._utils: SyncWorkerUtils | None = None
        self._in_flight: threading.Thread | None = None
        self._began: float | None = None
        self._stats: QueueStats | None = None
        self._succeeded: float | None = None
        self._failing_since: float | None = None
        self._error: str | None = None
        self._errors = 0
        self._closed = False
        self.reads: int = 0
        """Database reads begun; for tests and for curiosity."""

    def read(self) -> DepthReading:
        """The latest reading, after starting a fresh read if one is due and waiting for it."""
        with self._lock:
            now = time.monotonic()
            due = self._began is None or now - self._began >= self._min_interval
            if due and self._in_flight is None and not self._closed:
                self._began = now
                self.reads += 1
                self._in_flight = threading.Thread(
                    target=self._read, name="graphile_worker depth", daemon=True
                )
                self._in_flight.start()
            in_flight = self._in_flight
        if in_flight is not None:
            in_flight.join(self._timeout)
        with self._lock:
            now = time.monotonic()
            since = self._succeeded if self._succeeded is not None else self._failing_since
            outage = None if self._failing_since is None or since is None else now - since
            age = None if self._succeeded is None else now - self._succeeded
            return DepthReading(self._stats, age, self._errors, outage, self._error)

    def _read(self) -> None:
        try:
            if self._utils is None:
                self._utils = SyncWorkerUtils.connect(self._url, schema=self._schema)
            stats = self._utils.stats()
        except Exception as error:  # noqa: BLE001 - any failure means "serve the last figures"
            _logger.warning("could not read queue depth for Prometheus: %s", error)
            self._drop_connection()
            with self._lock:
                self._errors += 1
                self._error = str(error) or type(error).__name__
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                self._in_flight = None
            return
        with self._lock:
            self._stats = stats
            self._succeeded = time.monotonic()
            self._failing_since = None
            self._error = None
            self._in_flight = None
            closed = self._closed
        if closed:
            self._drop_connection()

    def _drop_connection(self) -> None:
        utils, self._utils = self._utils, None
        if utils is not None:
            try:
                utils.close()
            except Exception:  # already broken; nothing more to learn from it
                _logger.debug("closing the depth connection failed", exc_info=True)

    def close(self) -> None:
        """Stop reading; close the connection now, or when the read in flight ends."""
        with self._lock:
            self._closed = True
            idle = self._in_flight is None
        if idle:
            self._drop_connection()


class _DepthCollector(Collector):
    """Turns a depth reading into metric families when the registry is collected."""

    def __init__(self, reader: DepthReader, namespace: str) -> None:
        self._reader = reader
        self._prefix = f"{namespace}_" if namespace else ""

    def describe(self) -> Iterable[Metric]:
        # Without this the default registry would collect, and so read the database,
        # when the collector is registered.
        return ()

    def collect(self) -> Iterator[Metric]:
        reading = self._reader.read()
        prefix = self._prefix
        errors = CounterMetricFamily(
            f"{prefix}depth_errors", "Failed queue-depth reads from the database."
        )
        errors.add_metric([], reading.errors)
        yield errors
        if reading.stats is None or reading.age is None:
            return
        age = GaugeMetricFamily(
            f"{prefix}depth_age_seconds",
            "How old the queue-depth figures are (grows while reads fail).",
        )
        age.add_metric([], reading.age)
        yield age
        stats = reading.stats
        by_task = GaugeMetricFamily(
            f"{prefix}task_jobs",
            "Jobs in the database by task and state.",
            labels=("task", "state"),
        )
        oldest = GaugeMetricFamily(
            f"{prefix}task_oldest_ready_age_seconds",
            "How long the oldest ready job of a task has been due.",
            labels=("task",),
        )
        for task, counts in sorted(stats.by_task.items()):
            for state in _STATES:
                by_task.add_metric([task, state], getattr(counts, state))
            if counts.oldest_ready_age is not None:
                oldest.add_metric([task], counts.oldest_ready_age.total_seconds())
        by_queue = GaugeMetricFamily(
            f"{prefix}queue_jobs",
            "Jobs in the database by named queue and state.",
            labels=("queue", "state"),
        )
        for queue, counts in sorted(stats.by_queue.items()):
            for state in _STATES:
                by_queue.add_metric([queue, state], getattr(counts, state))
        yield by_task
        yield oldest
        yield by_queue


# --------------------------------------------------------------------------------- server


@final
class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` for one plugin from a daemon thread.

    ``/healthz`` answers 200 with a small JSON body while :meth:`PrometheusPlugin.health`
    says the worker is up, and 503 with the reason otherwise. Use it as a context
    manager, or call :meth:`close`.

    Args:
        plugin: The plugin whose registry and health are served.
        host: Address to listen on; the default keeps it off other machines.
        port: Port to listen on; 0 picks a free one (see :attr:`port`).
        max_outage: Seconds the database may be unreachable before ``/healthz`` fails.
    """

    def __init__(
        self,
        plugin: PrometheusPlugin,
        *,
        host: str = "127.0.0.1",
        port: int,
        max_outage: float = 60.0,
    ) -> None:
        handler = _handler(plugin, max_outage)
        self._server = http.server.ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        """The port listened on (the one picked, when ``port`` was 0)."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="graphile_worker metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _handler(
    plugin: PrometheusPlugin, max_outage: float
) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, content_type, encoder(plugin.registry))
            elif path == "/healthz":
                healthy, body = plugin.health(max_outage)
                payload = json.dumps(body).encode()
                self._send(200 if healthy else 503, "application/json", payload)
            else:
                self._send(404, "text/plain", b"not found; try /metrics or /healthz\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            _logger.debug("metrics server: %s", format % args)

    return Handler
