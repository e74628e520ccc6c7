"""OpenTelemetry through the SDK's in-memory exporter: app.send -> handler parentage,
a traceparent written by hand as other SDKs write it, X-Ray's AWSTraceHeader, batches,
failures, the 10-attribute limit, the OTel metrics, and QUEUE_TRACING=off."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aiosqsq import Message
from aiosqsq.backends.base import QueueMessage, SendEntry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.observability.log_context import current
from aiosqsq.observability.tracing import Tracing, xray_context
from aiosqsq.testing import AppTester
from tests.helpers import make_app, make_queue

EXPORTER = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def sdk() -> None:
    """The global providers can be set once per process: the first test module sets them."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def named(name: str) -> list[ReadableSpan]:
    return [span for span in EXPORTER.get_finished_spans() if span.name == name]


async def test_send_to_handler_is_one_trace_producer_parent_of_consumer() -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend)
    seen: list[dict[str, Any]] = []

    @app.handler()
    async def work(payload: str, message: Message) -> None:
        seen.append({"attributes": dict(message.message_attributes), "log": current()})

    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("request"):
        message_id = await app.send("x", attributes={"tenant": "t1"})
    await AppTester(app, backend=backend).drain()

    (request,) = named("request")
    (send,) = named("send jobs")
    (process,) = named("process jobs")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None
    assert send.parent.span_id == request.context.span_id
    assert send.attributes is not None
    assert send.attributes["messaging.system"] == "aws_sqs"
    assert send.attributes["messaging.operation.type"] == "send"
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.context.trace_id == request.context.trace_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    assert process.attributes is not None
    assert dict(process.attributes) == {
        "messaging.system": "aws_sqs",
        "messaging.destination.name": "jobs",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": message_id,
        "aiosqsq.receive_count": 1,
        "aiosqsq.fate": "succeeded",
    }
    (handled,) = seen
    traceparent = handled["attributes"]["traceparent"]
    assert traceparent["DataType"] == "String"
    assert traceparent["StringValue"].split("-")[2] == format(send.context.span_id, "016x")
    assert handled["attributes"]["tenant"]["StringValue"] == "t1"
    assert handled["log"]["trace_id"] == format(process.context.trace_id, "032x")
    assert handled["log"]["span_id"] == format(process.context.span_id, "016x")


async def test_a_traceparent_written_by_hand_continues_its_trace() -> None:
    backend = MemoryBackend()
    url = await make_queue(backend, "jobs")
    app = make_app(backend)

    @app.handler()
    async def work(payload: str) -> None:
        pass

    # as OpenTelemetry's JS and Java SQS instrumentations write it: a String attribute
    written: dict[str, Any] = {
        "traceparent": {
            "DataType": "String",
            "StringValue": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
        "tracestate": {"DataType": "String", "StringValue": "vendor=opaque"},
    }
    await backend.send_batch(url, [SendEntry("0", "x", message_attributes=written)])
    await AppTester(app, backend=backend).drain()

    (process,) = named("process jobs")
    assert format(process.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert process.parent is not None
    assert format(process.parent.span_id, "016x") == "b7ad6b7169203331"
    assert process.parent.is_remote
    assert process.context.trace_state.to_header() == "vendor=opaque"


async def test_aws_trace_header_is_the_parent_without_a_traceparent() -> None:
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    parent = xray_context(header)
    assert parent is not None
    assert format(parent.trace_id, "032x") == "5759e988bd862e3fe1be46a994272793"
    assert xray_context("Root=garbage") is None
    tracing = Tracing()
    queued = QueueMessage("memory://queues/jobs", "m-1", "rh", "x", {"AWSTraceHeader": header})
    message = Message.from_queue_message(queued, lease=None)  # type: ignore[arg-type]

    async def handler() -> None:
        return None

    await tracing.middleware(message, handler)
    tracing.observe("succeeded", queued)
    (process,) = named("process jobs")
    assert process.parent is not None
    assert format(process.parent.span_id, "016x") == "53995c3f42cd8ad8"
    assert process.context.trace_id == parent.trace_id


async def test_batch_span_links_every_message_and_failures_are_marked() -> None:
    backend = MemoryBackend()
    await make_queue(backend, "events")
    await make_queue(backend, "jobs")
    app = make_app(backend, retry_base_delay=0)

    @app.handler("events", batch=True, max_batch_size=3, max_wait_s=0.05)
    async def ingest(items: list[str]) -> None:
        pass

    @app.handler("jobs")
    async def work(payload: str, message: Message) -> None:
        if message.receive_count == 1:
            raise ValueError("first time")

    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("request"):
        await app.send_batch(["a", "b", "c"], "events")
        await app.send("j", "jobs")
    await AppTester(app, backend=backend).drain()

    (send_batch,) = named("send events")
    assert send_batch.attributes is not None
    assert send_batch.attributes["messaging.batch.message_count"] == 3
    batches = named("process events")
    counts: list[Any] = [
        dict(span.attributes or {})["messaging.batch.message_count"] for span in batches
    ]
    assert sum(counts) == 3
    linked = [link.context.span_id for span in batches for link in span.links]
    assert linked == [send_batch.context.span_id] * 3
    failed, succeeded = named("process jobs")
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "ValueError"
    assert failed.attributes["aiosqsq.fate"] == "retried"
    assert failed.status.status_code is StatusCode.ERROR
    assert succeeded.attributes is not None
    assert succeeded.attributes["aiosqsq.receive_count"] == 2
    assert "error.type" not in succeeded.attributes

    data = READER.get_metrics_data()
    assert data is not None
    found: dict[str, Any] = {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    consumed = {
        point.attributes["messaging.destination.name"]: point.value
        for point in found["messaging.client.consumed.messages"].data.data_points
    }
    assert consumed["events"] >= 3
    durations = found["messaging.process.duration"].data.data_points
    assert any(p.attributes.get("error.type") == "ValueError" for p in durations)


async def test_no_room_under_ten_attributes_sends_without_context(caplog) -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend)
    received: list[set[str]] = []

    @app.handler()
    async def work(payload: str, message: Message) -> None:
        received.append(set(message.message_attributes))

    full = {f"a{n}": "v" for n in range(10)}
    caplog.set_level(logging.DEBUG, logger="aiosqsq.observability")
    await app.send("x", attributes=full)
    await AppTester(app, backend=backend).drain()
    assert received == [set(full)]
    lines = [r.getMessage() for r in caplog.records if r.name == "aiosqsq.observability"]
    assert lines == [
        "trace context not added to a message: it has 10 message attributes and SQS allows 10"
    ]


async def test_tracing_off_makes_no_spans_and_adds_no_attributes() -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend, tracing="off")
    received: list[set[str]] = []

    @app.handler()
    async def work(payload: str, message: Message) -> None:
        received.append(set(message.message_attributes))

    with trace.get_tracer("tests").start_as_current_span("request"):
        await app.send("x")
    await AppTester(app, backend=backend).drain()
    assert received == [set()]
    assert [span.name for span in EXPORTER.get_finished_spans()] == ["request"]
