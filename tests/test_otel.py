"""OpenTelemetry tracing: producer spans and ``_trace`` on every add path, consumer spans on run.

Spans are collected with the SDK's in-memory exporter; jobs go through a real worker on a
real database, and what was stored is read back over a separate connection.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import psycopg
import pydantic
import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
    use_span,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import graphile_worker.sqlalchemy as gw_sqlalchemy
from graphile_worker import otel
from graphile_worker._payload import prepare_job
from graphile_worker.drivers import DatabaseDriver
from graphile_worker.hooks import Plugin, Schedule
from graphile_worker.spec import JobSpec
from graphile_worker.task import task
from graphile_worker.task._decode import compile_decoder
from graphile_worker.utils import SyncWorkerUtils, WorkerUtils
from graphile_worker.worker import Worker, WorkerContext

from .worker.conftest import options


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider exporting to memory, with add paths instrumented to use it."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(tracer_provider=tracer_provider)
    try:
        yield tracer_provider, exporter
    finally:
        otel.uninstrument()
        tracer_provider.shutdown()


def stored_payload(connection: psycopg.Connection[Any], job_id: int) -> Any:
    """The payload column as text, parsed the way any JSON reader (Node's too) would."""
    row = connection.execute(
        "select payload::text from graphile_worker._private_jobs where id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return json.loads(row[0])


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = spans_named(exporter, name)
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


def traceparent_of(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


# --------------------------------------------------------------------------- no database


@dataclasses.dataclass
class Point:
    x: int
    y: int


class StrictPoint(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    x: int
    y: int


@pytest.mark.parametrize("annotation", [Point, StrictPoint])
def test_typed_payloads_ignore_trace_context(annotation: type) -> None:
    decode = compile_decoder(annotation, owner="test")
    trace_context = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    decoded = decode({"_trace": trace_context, "x": 1, "y": 2}, "payload")
    assert (decoded.x, decoded.y) == (1, 2)  # type: ignore[attr-defined]
    with pytest.raises(Exception, match=r"\bz\b|'z'"):
        decode({"_trace": trace_context, "x": 1, "y": 2, "z": 3}, "payload")


def test_a_dataclass_declaring_trace_gets_it() -> None:
    @dataclasses.dataclass
    class Traced:
        _trace: dict[str, str]

    decoded = compile_decoder(Traced, owner="test")({"_trace": {"a": "b"}}, "payload")
    assert decoded == Traced({"a": "b"})


def test_instrument_is_process_wide_and_reversible() -> None:
    assert not otel.is_instrumented()
    otel.instrument()
    otel.instrument()
    try:
        assert otel.is_instrumented()
    finally:
        otel.uninstrument()
    assert not otel.is_instrumented()


def test_parent_must_be_link_or_child() -> None:
    with pytest.raises(ValueError, match="link"):
        otel.TracingPlugin(parent="sibling")  # type: ignore[arg-type]


def test_trace_state_travels_and_bad_trace_context_is_ignored(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    remote = SpanContext(
        trace_id=0x1234,
        span_id=0x5678,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "value")]),
    )
    with use_span(NonRecordingSpan(remote)):
        prepared = prepare_job("traced_async", {"n": 1}, None)
    payload = json.loads(prepared.payload_json)
    assert payload["_trace"]["tracestate"] == "vendor=value"
    assert payload["_trace"]["traceparent"].startswith(f"00-{0x1234:032x}-")
    read = otel._producer_span(payload)
    assert read is not None and read.trace_state == TraceState([("vendor", "value")])
    assert read.trace_id == 0x1234 and read.is_remote
    for bad in (
        {"_trace": {"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"}},  # zero id
        {"_trace": {"traceparent": "ff-" + "1" * 32 + "-" + "1" * 16 + "-01"}},  # version ff
        {"_trace": {"traceparent": "not a traceparent"}},
        {"_trace": "00-" + "1" * 32 + "-" + "1" * 16 + "-01"},
        {"_trace": {"traceparent": 7}},
        ["_trace"],
    ):
        assert otel._producer_span(bad) is None, bad


# ------------------------------------------------------------------------- round trips

current_spans: dict[str, int] = {}
"""Handler name -> the span id current inside it (spans it starts become its children)."""


def _record_inner(name: str) -> None:
    current_spans[name] = trace.get_current_span().get_span_context().span_id


@task("traced_async")
async def traced_async(payload: Any) -> None:
    _record_inner("inside async")


@task("traced_sync")
def traced_sync(payload: Any) -> None:
    assert threading.current_thread() is not threading.main_thread()
    _record_inner("inside sync")


@task("traced_fail")
async def traced_fail(payload: Any) -> None:
    raise LookupError("no such order")


@task("traced_parent")
async def traced_parent(payload: Any, ctx: WorkerContext) -> None:
    await ctx.add_job("traced_async", {"from": "job"})


@dataclasses.dataclass
class Order:
    IDENTIFIER: ClassVar[str] = "traced_order"
    order_id: int


@task()
async def traced_order(payload: Order) -> None:
    assert payload == Order(7)
    seen.append("dataclass")


class Invoice(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    IDENTIFIER: ClassVar[str] = "traced_invoice"
    number: str


@task()
async def traced_invoice(payload: Invoice) -> None:
    assert payload == Invoice(number="A-1")
    seen.append("pydantic")


seen: list[str] = []

TASKS: list[object] = [
    traced_async,
    traced_sync,
    traced_fail,
    traced_parent,
    traced_order,
    traced_invoice,
]


@pytest.mark.anyio
@pytest.mark.parametrize("handler", ["traced_async", "traced_sync"])
async def test_a_job_runs_in_a_span_linked_to_where_it_was_added(
    driver: DatabaseDriver,
    sync_connection: psycopg.Connection[Any],
    provider: tuple[TracerProvider, InMemorySpanExporter],
    handler: str,
) -> None:
    tracer_provider, exporter = provider
    current_spans.clear()
    job = await WorkerUtils(driver).add_job(handler, {"n": 1}, spec=JobSpec(queue_name="q1"))
    producer = only(exporter, f"{handler} publish")
    assert producer.kind is SpanKind.PRODUCER
    assert producer.attributes is not None
    assert producer.attributes["messaging.destination.name"] == "q1"
    payload = stored_payload(sync_connection, job.id)
    assert payload == {"_trace": {"traceparent": traceparent_of(producer)}, "n": 1}

    plugin = otel.TracingPlugin(tracer_provider=tracer_provider)
    # A span current where the worker starts is not the parent of its jobs' spans.
    ambient = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False)
    with use_span(NonRecordingSpan(ambient)):
        await Worker(options(driver, TASKS, hooks=[plugin])).run_once()

    consumer = only(exporter, f"{handler} process")
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.parent is None  # a new trace, linked to the producer
    assert [link.context.span_id for link in consumer.links] == [
        producer.get_span_context().span_id  # type: ignore[union-attr]
    ]
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "graphile_worker",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "q1",
        "messaging.message.id": str(job.id),
        "graphile_worker.task": handler,
        "graphile_worker.job.attempt": 1,
        "graphile_worker.job.max_attempts": 25,
    }
    assert consumer.status.status_code is StatusCode.UNSET
    inner = "inside async" if handler == "traced_async" else "inside sync"
    assert current_spans == {inner: consumer.get_span_context().span_id}  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_child_mode_continues_the_producer_trace(
    driver: DatabaseDriver, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    tracer_provider, exporter = provider
    await WorkerUtils(driver).add_job("traced_async", {})
    plugin = otel.TracingPlugin(tracer_provider=tracer_provider, parent="child")
    await Worker(options(driver, TASKS, hooks=[plugin])).run_once()
    producer = only(exporter, "traced_async publish").get_span_context()
    consumer = only(exporter, "traced_async process")
    assert producer is not None and consumer.parent is not None
    assert consumer.parent.span_id == producer.span_id
    assert consumer.get_span_context().trace_id == producer.trace_id  # type: ignore[union-attr]
    assert not consumer.links


@pytest.mark.anyio
async def test_a_failed_job_records_the_exception(
    driver: DatabaseDriver, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    tracer_provider, exporter = provider
    await WorkerUtils(driver).add_job("traced_fail", {}, spec=JobSpec(max_attempts=1))
    plugin = otel.TracingPlugin(tracer_provider=tracer_provider)
    await Worker(options(driver, TASKS, hooks=[plugin])).run_once()
    consumer = only(exporter, "traced_fail process")
    assert consumer.status.status_code is StatusCode.ERROR
    assert consumer.status.description == "no such order"
    (event,) = consumer.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "LookupError"


@pytest.mark.anyio
async def test_jobs_added_by_a_job_carry_its_span(
    driver: DatabaseDriver,
    sync_connection: psycopg.Connection[Any],
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer_provider, exporter = provider
    await WorkerUtils(driver).add_job("traced_parent", {})
    plugin = otel.TracingPlugin(tracer_provider=tracer_provider)
    # A before_job_schedule hook makes ctx.add_job prepare the job twice (before and after
    # the hook); it must still be published once.
    schedule_hook = Plugin("pass", before_job_schedule=[lambda request: Schedule()])
    await Worker(options(driver, TASKS, hooks=[plugin, schedule_hook])).run_once()
    parent_run = only(exporter, "traced_parent process").get_span_context()
    child_publish = only(exporter, "traced_async publish")
    assert parent_run is not None and child_publish.parent is not None
    assert child_publish.parent.span_id == parent_run.span_id
    child_run = only(exporter, "traced_async process")
    assert [link.context.span_id for link in child_run.links] == [
        child_publish.get_span_context().span_id  # type: ignore[union-attr]
    ]


@pytest.mark.anyio
async def test_add_jobs_traces_each_object_payload_and_leaves_others_alone(
    driver: DatabaseDriver,
    sync_connection: psycopg.Connection[Any],
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _, exporter = provider
    jobs = await WorkerUtils(driver).add_jobs(
        [("traced_async", {"a": 1}), ("traced_async", None), ("traced_async", [1, 2])]
    )
    publishes = spans_named(exporter, "traced_async publish")
    assert len(publishes) == 2
    first, second, third = (stored_payload(sync_connection, job.id) for job in jobs)
    assert first == {"_trace": {"traceparent": traceparent_of(publishes[0])}, "a": 1}
    assert second == {"_trace": {"traceparent": traceparent_of(publishes[1])}}
    assert third == [1, 2]


@pytest.mark.anyio
async def test_typed_payloads_decode_with_trace_context(
    driver: DatabaseDriver,
    sync_connection: psycopg.Connection[Any],
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer_provider, _ = provider
    seen.clear()
    utils = WorkerUtils(driver)
    jobs = [await utils.add_job(Order(7)), await utils.add_job(Invoice(number="A-1"))]
    assert all("_trace" in stored_payload(sync_connection, job.id) for job in jobs)
    plugin = otel.TracingPlugin(tracer_provider=tracer_provider)
    summary = await Worker(options(driver, TASKS, hooks=[plugin])).run_once()
    assert sorted(seen) == ["dataclass", "pydantic"]
    assert summary.failed == 0


@pytest.mark.anyio
async def test_without_instrument_nothing_is_added(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    job = await WorkerUtils(driver).add_job("traced_async", {"n": 1})
    assert stored_payload(sync_connection, job.id) == {"n": 1}


# ----------------------------------------------------------------- sync add paths


def test_sync_worker_utils_write_trace_context(
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    _, exporter = provider
    with SyncWorkerUtils.connect(database_url) as utils:
        job = utils.add_job("traced_sync", {"n": 2})
    producer = only(exporter, "traced_sync publish")
    payload = stored_payload(sync_connection, job.id)
    assert payload == {"_trace": {"traceparent": traceparent_of(producer)}, "n": 2}


def test_sqlalchemy_session_add_job_writes_trace_context(
    database_url: str,
    sync_connection: psycopg.Connection[Any],
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer_provider, exporter = provider
    engine = sa.create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    try:
        with Session(engine) as session:
            with trace.get_tracer("test", tracer_provider=tracer_provider).start_as_current_span(
                "checkout"
            ) as request_span:
                job = gw_sqlalchemy.add_job(session, "traced_sync", {"n": 3})
            session.commit()
    finally:
        engine.dispose()
    producer = only(exporter, "traced_sync publish")
    assert producer.parent is not None
    assert producer.parent.span_id == request_span.get_span_context().span_id
    payload = stored_payload(sync_connection, job.id)
    assert payload["_trace"] == {"traceparent": traceparent_of(producer)}
