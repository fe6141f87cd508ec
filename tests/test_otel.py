"""OpenTelemetry tracing: producer spans and ``_trace`` on every add path, consumer spans on run,
and the worker's claim and outcome-write spans of ``debug_spans``.

Spans are collected with the SDK's in-memory exporter; jobs go through a real worker on a
real database, and what was stored is read back over a separate connection.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
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
from graphile_worker.errors import DatabaseError
from graphile_worker.hooks import JobsClaimed, OutcomesWritten, Plugin, Schedule
from graphile_worker.hooks._dispatch import Hooks
from graphile_worker.spec import JobSpec
from graphile_worker.sql.worker import FailureSpec
from graphile_worker.task import task
from graphile_worker.task._decode import compile_decoder
from graphile_worker.utils import SyncWorkerUtils, WorkerUtils
from graphile_worker.worker import LocalQueueOptions, Worker, WorkerContext
from graphile_worker.worker._fetch import JobSource

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


# ------------------------------------------------------------------ debug spans

CLAIM = "graphile_worker claim"
WRITES = ("graphile_worker complete", "graphile_worker fail")


def attributes_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def worker_spans(exporter: InMemorySpanExporter) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    """The claim spans and the outcome-write spans, in the order they ended."""
    finished = exporter.get_finished_spans()
    claims = [span for span in finished if span.name == CLAIM]
    writes = [span for span in finished if span.name in WRITES]
    return claims, writes


def times(span: ReadableSpan) -> tuple[int, int]:
    assert span.start_time is not None and span.end_time is not None
    return span.start_time, span.end_time


def test_debug_spans_are_off_by_default_and_then_watch_nothing() -> None:
    # What keeps the worker's hot path free: with the option off, no observer watches the
    # claim and write events, so the worker never reads a clock or builds one.
    assert not Hooks([otel.TracingPlugin()]).observes(JobsClaimed, OutcomesWritten)
    on = Hooks([otel.TracingPlugin(debug_spans=True)])
    assert on.watching(JobsClaimed) and on.watching(OutcomesWritten)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "mode",
    ["direct", "local_queue"],
    ids=["direct-claims-single-writes", "local-queue-batched-writes"],
)
async def test_debug_spans_cover_every_claim_and_outcome_write(
    driver: DatabaseDriver, provider: tuple[TracerProvider, InMemorySpanExporter], mode: str
) -> None:
    tracer_provider, exporter = provider
    utils = WorkerUtils(driver)
    for n in range(6):
        await utils.add_job("traced_async", {"n": n})
    await utils.add_job("traced_fail", {}, spec=JobSpec(max_attempts=1))
    exporter.clear()  # the publish spans; only the worker's from here on
    local_queue = mode == "local_queue"
    batching: dict[str, Any] = (
        {
            "local_queue": LocalQueueOptions(size=4),
            "complete_job_batch_delay": 0.0,
            "fail_job_batch_delay": 0.0,
        }
        if local_queue
        else {}
    )
    plugin = otel.TracingPlugin(tracer_provider=tracer_provider, debug_spans=True)
    worker = Worker(options(driver, TASKS, hooks=[plugin], concurrency=3, **batching))
    before = time.time_ns()
    # A span current where the worker starts is the parent of none of its spans.
    ambient = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False)
    with use_span(NonRecordingSpan(ambient)):
        summary = await worker.run_once()
    after = time.time_ns()
    assert (summary.completed, summary.failed) == (6, 1)

    claims, writes = worker_spans(exporter)
    processes = [span for span in exporter.get_finished_spans() if span.name.endswith("process")]
    assert len(processes) == 7
    # Every job was claimed once and its outcome written once.
    claim_attributes = [attributes_of(span) for span in claims]
    assert sum(a["messaging.batch.message_count"] for a in claim_attributes) == 7
    write_attributes = [attributes_of(span) for span in writes]
    assert sum(a["graphile_worker.batch.completed"] for a in write_attributes) == 6
    assert sum(a["graphile_worker.batch.failed"] for a in write_attributes) == 1
    (failed_write,) = [a for a in write_attributes if a["graphile_worker.batch.failed"]]
    assert failed_write["messaging.operation.name"] == "fail"
    if not local_queue:
        # Without batching every outcome is a statement of its own.
        assert sorted(a["messaging.batch.message_count"] for a in write_attributes) == [1] * 7

    trace_ids = set()
    for span in claims + writes:
        assert span.kind is SpanKind.CLIENT
        assert span.parent is None  # the root of a trace of its own
        assert span.status.status_code is StatusCode.UNSET
        trace_ids.add(span.get_span_context().trace_id)  # type: ignore[union-attr]
        start, end = times(span)
        assert before <= start <= end <= after
        found = attributes_of(span)
        assert found["messaging.system"] == "graphile_worker"
        assert found["messaging.client.id"] == worker.worker_id
    assert len(trace_ids) == len(claims) + len(writes)
    for found in claim_attributes:
        assert found["messaging.operation.type"] == "receive"
        assert found["messaging.operation.name"] == "claim"
        assert found["graphile_worker.claim.local_queue"] is local_queue
        assert (
            0 <= found["messaging.batch.message_count"] <= found["graphile_worker.claim.requested"]
        )
        assert found["graphile_worker.claim.requested"] <= (4 if local_queue else 3)
    for found in write_attributes:
        assert found["messaging.operation.type"] == "settle"
        count = found["messaging.batch.message_count"]
        assert (
            found["graphile_worker.batch.completed"] + found["graphile_worker.batch.failed"]
            == count
        )
        assert found["graphile_worker.batch.written"] == count

    # The times are those of the round trips: a job starts after a claim that returned
    # something has come back, and outcomes are written after their job's span ended.
    returned = [
        times(span)[1] for span in claims if attributes_of(span)["messaging.batch.message_count"]
    ]
    first_end = min(times(span)[1] for span in processes)
    for span in processes:
        assert min(returned) <= times(span)[0]
    for span in writes:
        assert first_end <= times(span)[0]


@pytest.mark.anyio
async def test_without_debug_spans_the_worker_records_only_job_spans(
    driver: DatabaseDriver, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    tracer_provider, exporter = provider
    await WorkerUtils(driver).add_jobs([("traced_async", {}), ("traced_fail", {})])
    exporter.clear()
    plugin = otel.TracingPlugin(tracer_provider=tracer_provider)
    await Worker(options(driver, TASKS, hooks=[plugin], concurrency=2)).run_once()
    names = sorted(span.name for span in exporter.get_finished_spans())
    assert names == ["traced_async process", "traced_fail process"]


@pytest.mark.anyio
async def test_debug_spans_show_failed_and_partial_writes(
    driver: DatabaseDriver, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    tracer_provider, exporter = provider
    job = await WorkerUtils(driver).add_job("traced_async", {})
    exporter.clear()
    hooks = Hooks([otel.TracingPlugin(tracer_provider=tracer_provider, debug_spans=True)])

    def source(schema: str, worker_id: str = "graphile_worker_debug_test") -> JobSource:
        return JobSource(
            driver=driver,
            schema=schema,
            worker_id=worker_id,
            task_identifiers=["traced_async"],
            forbidden_flags=(),
            use_local_time=False,
            logger=logging.getLogger("tests.otel"),
            hooks=hooks,
        )

    # A schema that does not exist: every statement fails in the database.
    broken = source("no_such_schema")
    raised: list[DatabaseError] = []
    for statement in (
        lambda: broken.claim(5),
        lambda: broken.complete([job], retry_delays=()),
        lambda: broken.fail([FailureSpec(job_id=job.id, message="x")], retry_delays=()),
    ):
        with pytest.raises(DatabaseError) as caught:
            await statement()
        raised.append(caught.value)
    claims, writes = worker_spans(exporter)
    assert [span.name for span in claims + writes] == [CLAIM, *WRITES]
    for span, error in zip(claims + writes, raised, strict=True):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description
        (event,) = span.events
        assert event.name == "exception"
        assert event.attributes is not None
        kind = type(error)
        assert event.attributes["exception.type"] == f"{kind.__module__}.{kind.__qualname__}"
        assert event.timestamp == times(span)[1]
    assert attributes_of(claims[0])["messaging.batch.message_count"] == 0
    assert [attributes_of(span)["graphile_worker.batch.written"] for span in writes] == [0, 0]

    # Another worker holds the job: the statement runs, but a failure is recorded only by
    # the worker holding the job.
    (held,) = await source("graphile_worker", "graphile_worker_other").claim(1)
    assert held.id == job.id
    exporter.clear()
    failure = FailureSpec(job_id=job.id, message="x")
    assert await source("graphile_worker").fail([failure], retry_delays=()) == {}
    (write,) = worker_spans(exporter)[1]
    assert write.status.status_code is StatusCode.UNSET
    found = attributes_of(write)
    assert found["graphile_worker.batch.failed"] == 1
    assert found["graphile_worker.batch.written"] == 0
