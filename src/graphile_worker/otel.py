"""OpenTelemetry tracing: a producer span per job added, a consumer span per job run.

Two halves, because jobs are added in more places than they are run:

- :func:`instrument` (once per process that adds jobs) registers a callback with the one
  function every ``add_job``/``add_jobs`` path goes through (``WorkerUtils``,
  ``SyncWorkerUtils``, :mod:`graphile_worker.sqlalchemy`, ``ctx.add_job``). It records a
  ``<task> publish`` span and writes its W3C trace context into the payload under
  ``"_trace"`` (``{"traceparent": ..., "tracestate": ...}``), as the Rust crate
  graphile_worker does. A payload field rather than a column or a flag: the Node schema
  has no column for it, flags are what every claim compares with ``forbidden_flags`` (a
  value unique to each job has no place there), and Node handlers simply see one more key.
  Only JSON object payloads get it: a list or a scalar is left exactly as it was.
- :class:`TracingPlugin` (a worker hook) runs each job inside a ``<task> process`` span,
  linked to the producer's (or, with ``parent="child"``, a child of it), and current while
  the handler runs, so spans the handler starts are its children. Plain ``def`` handlers
  see it too: their thread runs in a copy of the job's context. With
  ``debug_spans=True`` it also records the worker's own round trips: a span per claim and
  per statement that writes outcomes.

Nothing here is imported by ``import graphile_worker``; this module needs
``opentelemetry-api`` (the ``otel`` extra). Without an SDK configured, spans are
non-recording and no ``_trace`` is written.
"""

from __future__ import annotations

import json
import re
from contextvars import Token
from typing import TYPE_CHECKING, Literal

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import (
        Link,
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
        TraceState,
    )
except ImportError as _missing:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "graphile_worker.otel needs the OpenTelemetry API: pip install 'graphile-worker[otel]'"
        " (plus an SDK, such as opentelemetry-sdk, to record spans)"
    ) from _missing

from ._error_text import error_text
from ._payload import JOB_DECORATORS
from .hooks import Failed, JobInterrupted, JobsClaimed, Observer, OutcomesWritten, Plugin, Run
from .task._decode import TRACE_KEY

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from .context import WorkerContext
    from .hooks import Outcome
    from .spec import Job, JobSpec

__all__ = ["TRACE_KEY", "TracingPlugin", "instrument", "is_instrumented", "uninstrument"]

_SCOPE = "graphile_worker"
_ROOT = otel_context.Context()
"""An empty context: the parent of ``process`` spans that are linked, not children."""
_SYSTEM = "graphile_worker"
_RUN = Run()
"""The answer of every ``before_job_run`` here: one object, not one per job."""


class _Producer:
    """The job decorator :func:`instrument` registers: one span and one ``_trace`` per job."""

    def __init__(self, tracer_provider: TracerProvider | None) -> None:
        self.tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)

    def __call__(self, identifier: str, payload_json: str, spec: JobSpec) -> str:
        if payload_json[:1] != "{" or '"_trace"' in payload_json:
            # Not an object (nowhere to put it), or it already carries trace context: the
            # caller's own, or ours when ctx.add_job prepares a job twice around its hooks.
            return payload_json
        destination = spec.queue_name or identifier
        span = self.tracer.start_span(
            f"{identifier} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": _SYSTEM,
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": destination,
                "graphile_worker.task": identifier,
            },
        )
        context = span.get_span_context()
        span.end()
        if not context.is_valid:
            return payload_json  # no SDK: a non-recording span has nothing to propagate
        # W3C traceparent, written directly: the same text TraceContextTextMapPropagator
        # would produce, without its carrier round trip (this runs once per job added).
        trace_json = (
            f'{{"traceparent":"00-{context.trace_id:032x}-{context.span_id:016x}-'
            f'{context.trace_flags:02x}"'
        )
        if context.trace_state:
            trace_json += ',"tracestate":' + json.dumps(context.trace_state.to_header())
        rest = payload_json[1:]
        return '{"_trace":' + trace_json + ("}" if rest == "}" else "},") + rest


def instrument(*, tracer_provider: TracerProvider | None = None) -> None:
    """Trace every job this process adds, from any entry point; call it once at start-up.

    ``tracer_provider`` defaults to the global one (``trace.set_tracer_provider``; setting
    it after this call works too). Calling it again replaces the previous registration.
    """
    uninstrument()
    JOB_DECORATORS.append(_Producer(tracer_provider))


def uninstrument() -> None:
    """Stop tracing added jobs (tests, or a process that wants it off again)."""
    JOB_DECORATORS[:] = [item for item in JOB_DECORATORS if not isinstance(item, _Producer)]


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    return any(isinstance(item, _Producer) for item in JOB_DECORATORS)


_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
"""W3C ``traceparent``: version, trace id, parent id, flags (later versions may add fields)."""
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16


def _producer_span(payload: object) -> SpanContext | None:
    """The span that added the job, from the ``_trace`` its producer stored, or ``None``.

    Read by the W3C Trace Context rules directly rather than through the global propagator:
    ``_trace`` always holds W3C fields (that is its documented format, shared with the Rust
    crate), whatever propagator the process uses for its own requests.
    """
    if type(payload) is not dict:
        return None
    carrier = payload.get(TRACE_KEY)
    if type(carrier) is not dict:
        return None
    header = carrier.get("traceparent")
    if type(header) is not str:
        return None
    match = _TRACEPARENT.fullmatch(header)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if (
        version == "ff"
        or (version == "00" and rest is not None)
        or trace_id == _INVALID_TRACE_ID
        or span_id == _INVALID_SPAN_ID
    ):
        return None
    state = carrier.get("tracestate")
    # This runs once per job: positional arguments, and the all-zero ids (the one invalid
    # value the regex lets through) checked as text, are measurably cheaper than keywords
    # and SpanContext.is_valid.
    return SpanContext(
        int(trace_id, 16),
        int(span_id, 16),
        True,
        TraceFlags(int(flags, 16)),
        TraceState.from_header([state]) if type(state) is str else None,
    )


class TracingPlugin(Plugin, Observer):
    """Runs each job in a ``<task> process`` span (kind CONSUMER); pass it in ``hooks``.

    Args:
        tracer_provider: Defaults to the global provider.
        parent: ``"link"`` (default) starts a new trace per run that links to the span that
            added the job, as the messaging conventions advise for work that happens
            later; ``"child"`` makes the run part of the producer's trace instead.
        debug_spans: Also record the worker's own round trips (see below). Off by
            default: they say how the worker spends its time, not what happened to a job,
            and a busy worker makes many of them.

    Attributes follow the OpenTelemetry messaging conventions (``messaging.system``,
    ``messaging.operation.type = "process"``, ``messaging.destination.name`` = queue name
    or task, ``messaging.message.id`` = job id) plus ``graphile_worker.task``,
    ``graphile_worker.job.attempt`` and ``graphile_worker.job.max_attempts``. A failed
    attempt records the exception and sets status ERROR.

    With ``debug_spans=True``, two more kinds of span (kind CLIENT), each the root of a
    trace of its own:

    - ``graphile_worker claim`` for every claim statement (``messaging.operation.type =
      "receive"``), with ``messaging.batch.message_count`` (jobs claimed),
      ``graphile_worker.claim.requested`` and ``graphile_worker.claim.local_queue``
      (whether the claim filled the local queue);
    - ``graphile_worker complete`` and ``graphile_worker fail`` for every statement that
      records outcomes, a batch or a single job (``messaging.operation.type = "settle"``),
      with ``messaging.batch.message_count``, ``graphile_worker.batch.completed``,
      ``graphile_worker.batch.failed`` and ``graphile_worker.batch.written`` (how many the
      statement changed; fewer when jobs were handed back meanwhile).

    Both carry ``messaging.client.id`` (the worker id). A claim or write that fails (a lost
    connection, a timeout) records the exception and sets status ERROR; each retry of a
    write gets a span of its own.
    """

    name = "opentelemetry"

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        parent: Literal["link", "child"] = "link",
        debug_spans: bool = False,
    ) -> None:
        if parent not in ("link", "child"):
            raise ValueError(f'parent must be "link" or "child", not {parent!r}')
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        # A separate observer, listed only when asked for: the worker watches an event
        # only if some observer overrides its method, so with debug_spans off no claim
        # or write so much as reads the clock for us.
        super().__init__(
            before_job_run=[self.start_span],
            after_job_run=[self.end_span],
            observers=[_WorkerSpans(self._tracer)] if debug_spans else (),
        )
        self._child = parent == "child"
        # Job id -> its span and the token that made it current; both interceptors of one
        # attempt run in the job's own task, so the token is detached where it was attached.
        self._running: dict[int, tuple[Span, Token[Context]]] = {}

    def _new_span(self, job: Job) -> tuple[Span, Context]:
        producer = _producer_span(job.payload)
        parent = _ROOT  # never the worker's own ambient context: each run starts its trace
        links: list[Link] | None = None
        if producer is not None:
            if self._child:
                parent = trace.set_span_in_context(NonRecordingSpan(producer))
            else:
                links = [Link(producer)]
        span = self._tracer.start_span(
            f"{job.task_identifier} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": _SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": job.queue_name or job.task_identifier,
                "messaging.message.id": str(job.id),
                "graphile_worker.task": job.task_identifier,
                "graphile_worker.job.attempt": job.attempts,
                "graphile_worker.job.max_attempts": job.max_attempts,
            },
        )
        return span, parent

    def start_span(self, job: Job, ctx: WorkerContext) -> Run:
        """``before_job_run``: start the job's span and make it current for the handler."""
        span, parent = self._new_span(job)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        self._running[job.id] = (span, token)
        return _RUN

    def end_span(self, job: Job, ctx: WorkerContext, outcome: Outcome) -> Outcome:
        """``after_job_run``: record how the attempt ended and end the span."""
        entry = self._running.pop(job.id, None)
        if entry is None:
            # Our before_job_run never ran: the payload did not decode, or an earlier hook
            # skipped or failed the job. Still worth a span saying so.
            span, _ = self._new_span(job)
            token: Token[Context] | None = None
        else:
            span, token = entry
        if isinstance(outcome, Failed) and span.is_recording():
            span.record_exception(outcome.error)
            span.set_status(Status(StatusCode.ERROR, _describe(outcome.error)))
        span.end()
        if token is not None:
            otel_context.detach(token)
        return outcome

    def on_job_interrupted(self, event: JobInterrupted) -> None:
        """Shutdown cancelled the job: its ``after_job_run`` never comes, so end it here."""
        entry = self._running.pop(event.job.id, None)
        if entry is not None:
            span = entry[0]
            span.set_status(Status(StatusCode.ERROR, "interrupted by worker shutdown"))
            span.end()


class _WorkerSpans(Observer):
    """The spans of ``TracingPlugin(debug_spans=True)``: one per claim, one per outcome write.

    Each is the root of a trace of its own, never a child. A claim or a batch serves many
    jobs, usually of unrelated traces (a batch of 500 outcomes may close 500 of them), so
    no job's trace is its parent; and the context the worker was started in (an
    application's start-up span, say) would gather every claim of the worker's life into
    one endless trace. The spans are built after the fact from the times the events carry,
    so the worker never holds one open or switches context for them.
    """

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def on_jobs_claimed(self, event: JobsClaimed) -> None:
        span = self._tracer.start_span(
            "graphile_worker claim",
            context=_ROOT,
            kind=SpanKind.CLIENT,
            attributes={
                "messaging.system": _SYSTEM,
                "messaging.operation.type": "receive",
                "messaging.operation.name": "claim",
                "messaging.client.id": event.worker_id,
                "messaging.batch.message_count": len(event.jobs),
                "graphile_worker.claim.requested": event.requested,
                "graphile_worker.claim.local_queue": event.local_queue,
            },
            start_time=event.started_ns,
        )
        _end_worker_span(span, event.error, event.ended_ns)

    def on_outcomes_written(self, event: OutcomesWritten) -> None:
        count = len(event.job_ids)
        span = self._tracer.start_span(
            f"graphile_worker {event.action}",
            context=_ROOT,
            kind=SpanKind.CLIENT,
            attributes={
                "messaging.system": _SYSTEM,
                "messaging.operation.type": "settle",
                "messaging.operation.name": event.action,
                "messaging.client.id": event.worker_id,
                "messaging.batch.message_count": count,
                "graphile_worker.batch.completed": count if event.action == "complete" else 0,
                "graphile_worker.batch.failed": count if event.action == "fail" else 0,
                "graphile_worker.batch.written": event.written,
            },
            start_time=event.started_ns,
        )
        _end_worker_span(span, event.error, event.ended_ns)


def _end_worker_span(span: Span, error: Exception | None, end_ns: int) -> None:
    if error is not None:
        span.record_exception(error, timestamp=end_ns)
        span.set_status(Status(StatusCode.ERROR, _describe(error)))
    span.end(end_time=end_ns)


def _describe(error: BaseException) -> str:
    try:
        return error_text(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the span
        return type(error).__name__
