"""Node graphile-worker runs jobs that carry ``_trace`` trace context as any other job."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import anyio
import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider

from graphile_worker import otel
from graphile_worker.utils import WorkerUtils

from .node import run_node_once
from .tables import results

pytestmark = [pytest.mark.anyio, pytest.mark.node]


@pytest.fixture
def instrumented() -> Iterator[None]:
    provider = TracerProvider()
    otel.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        otel.uninstrument()
        provider.shutdown()


async def test_node_runs_a_traced_job_and_sees_the_payload_as_stored(
    interop_url: str,
    schema: str,
    driver_name: str,
    db: psycopg.Connection[Any],
    instrumented: None,
) -> None:
    async with await WorkerUtils.connect(interop_url, driver=driver_name, schema=schema) as utils:
        job = await utils.add_job("record", {"order": 7})
    assert isinstance(job.payload, dict)
    assert set(job.payload) == {"_trace", "order"}
    assert set(job.payload["_trace"]) == {"traceparent"}
    output = await anyio.to_thread.run_sync(functools.partial(run_node_once, interop_url, schema))
    assert output.messages("warning", "error") == []
    (seen,) = results(db)
    assert (seen.side, seen.outcome, seen.job_id) == ("node", "ran", job.id)
    assert seen.payload == job.payload
