"""A traced worker: the OpenTelemetry SDK writes every finished span as one JSON line to
$SPANS_FILE. Its handler forwards each body to $FORWARD_QUEUE with ``app.send`` (a
PRODUCER span inside the CONSUMER one); a body "bad" fails."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import IO

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from aiosqsq import App


class JsonLinesExporter(SpanExporter):
    """Each span as one line of JSON, flushed at once (the worker may be stopped any time)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self.out.write(json.dumps(json.loads(span.to_json())) + "\n")
        self.out.flush()
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(
    SimpleSpanProcessor(JsonLinesExporter(open(os.environ["SPANS_FILE"], "a")))  # noqa: SIM115
)
trace.set_tracer_provider(provider)

app = App()


@app.handler()
async def forward(payload: str) -> None:
    if payload == "bad":
        raise ValueError("a bad order")
    await app.send(payload, os.environ["FORWARD_QUEUE"])
