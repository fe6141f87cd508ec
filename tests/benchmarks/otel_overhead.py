"""What OpenTelemetry tracing costs: the drain and enqueue rates with it on and off.

Run with ``python -m tests.benchmarks.otel_overhead [--jobs N] [--runs R]`` (PostgreSQL
from ``DATABASE_URL``, or a temporary cluster). Unlike the main drain figure the worker
runs in this process, because the tracer provider must be set up in the process that runs
the jobs; the settings otherwise match it (concurrency 24, a local queue of 500, batched
outcomes with no delay, no log line per job). Modes run back to back, interleaved run by
run, so that the load of a shared machine falls on all of them alike:

- ``off``: no tracing at all.
- ``hooks``: no tracing, but a plugin with do-nothing ``before_job_run`` and
  ``after_job_run`` interceptors: what any such plugin costs the worker, to tell that
  apart from the cost of the spans.
- ``sdk``: :func:`graphile_worker.otel.instrument` and :class:`~graphile_worker.otel.TracingPlugin`
  with an SDK ``TracerProvider`` that has no span processor: every span is built, recorded
  and dropped, the cost of the instrumentation itself.
- ``batch``: the same with a ``BatchSpanProcessor`` feeding an exporter that discards,
  closer to production (the processor's queue and thread).

Enqueue (``add_jobs`` in chunks of 1,000, producer spans and ``_trace`` included) and the
drain (``run_once`` until the queue is empty, consumer spans) are timed separately. Like
every benchmark here it prints figures and never asserts them.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Sequence

import anyio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from graphile_worker import WorkerUtils, otel, task
from graphile_worker.hooks import Outcome, Plugin, Run
from graphile_worker.spec import Job
from graphile_worker.worker import LocalQueueOptions, Worker, WorkerContext, WorkerOptions

from .environment import BenchServer, prepare_run

MODES = ("off", "hooks", "sdk", "batch")
CHUNK = 1000


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@task("otel_bench_noop")
async def otel_bench_noop(payload: object) -> None:
    pass


def _pass_run(job: Job, ctx: WorkerContext) -> Run:
    return Run()


def _pass_outcome(job: Job, ctx: WorkerContext, outcome: Outcome) -> Outcome:
    return outcome


def _hooks(mode: str, provider: TracerProvider | None) -> list[Plugin]:
    if mode == "hooks":
        return [Plugin("pass", before_job_run=[_pass_run], after_job_run=[_pass_outcome])]
    if provider is None:
        return []
    return [otel.TracingPlugin(tracer_provider=provider)]


def _provider(mode: str) -> TracerProvider | None:
    if mode in ("off", "hooks"):
        return None
    provider = TracerProvider()
    if mode == "batch":
        provider.add_span_processor(BatchSpanProcessor(_Discard()))
    return provider


async def _one_run(url: str, jobs: int, hooks: list[Plugin]) -> tuple[float, float]:
    """Seconds to queue ``jobs`` and seconds to drain them."""
    async with await WorkerUtils.connect(url, driver="asyncpg") as utils:
        started = time.perf_counter()
        for start in range(0, jobs, CHUNK):
            stop = min(start + CHUNK, jobs)
            await utils.add_jobs([("otel_bench_noop", {"n": n}) for n in range(start, stop)])
        enqueue_seconds = time.perf_counter() - started
    await anyio.to_thread.run_sync(prepare_run, url)
    worker = Worker(
        WorkerOptions(
            tasks=[otel_bench_noop],
            database_url=url,
            driver="asyncpg",
            concurrency=24,
            local_queue=LocalQueueOptions(size=500),
            complete_job_batch_delay=0,
            fail_job_batch_delay=0,
            install_signal_handlers=False,
            migrate=False,
            hooks=hooks,
        )
    )
    started = time.perf_counter()
    summary = await worker.run_once()
    drain_seconds = time.perf_counter() - started
    if summary.completed != jobs:
        raise RuntimeError(f"drained {summary.completed} of {jobs} jobs")
    return enqueue_seconds, drain_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    logging.getLogger("graphile_worker").setLevel(logging.WARNING)
    rates: dict[str, tuple[list[float], list[float]]] = {mode: ([], []) for mode in MODES}
    with BenchServer(os.environ.get("DATABASE_URL"), {}) as server:
        for run in range(1, arguments.runs + 1):
            for mode in MODES:
                provider = _provider(mode)
                if provider is not None:
                    otel.instrument(tracer_provider=provider)
                try:
                    with server.fresh_database() as url:
                        enqueue_s, drain_s = anyio.run(
                            _one_run, url, arguments.jobs, _hooks(mode, provider)
                        )
                finally:
                    otel.uninstrument()
                    if provider is not None:
                        provider.shutdown()
                enqueue_rate, drain_rate = arguments.jobs / enqueue_s, arguments.jobs / drain_s
                rates[mode][0].append(enqueue_rate)
                rates[mode][1].append(drain_rate)
                print(
                    f"run {run} {mode:>5}: enqueue {enqueue_rate:8,.0f} jobs/s, "
                    f"drain {drain_rate:8,.0f} jobs/s (load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    base_enqueue = statistics.median(rates["off"][0])
    base_drain = statistics.median(rates["off"][1])
    print(f"\nmedians of {arguments.runs} runs of {arguments.jobs:,} jobs:")
    for mode in MODES:
        enqueue_rate = statistics.median(rates[mode][0])
        drain_rate = statistics.median(rates[mode][1])
        print(
            f"{mode:>5}: enqueue {enqueue_rate:8,.0f} jobs/s ({enqueue_rate / base_enqueue - 1:+.1%}), "
            f"drain {drain_rate:8,.0f} jobs/s ({drain_rate / base_drain - 1:+.1%})"
        )


if __name__ == "__main__":
    main()
