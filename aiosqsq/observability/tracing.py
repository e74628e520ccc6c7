"""OpenTelemetry: a PRODUCER span per send, a CONSUMER span per handled message (or
batch), the W3C trace context carried in message attributes, and the OTel metrics
``messaging.process.duration`` and ``messaging.client.consumed.messages``.

aiosqsq uses the global tracer and meter providers (the user's SDK sets them up; without
one every call is a no-op) and the global propagator (W3C ``traceparent`` and
``tracestate`` unless the user configured another). Conventions: the messaging semantic
conventions with ``messaging.system = "aws_sqs"``.

* Sending: the span ``send <queue>`` (kind PRODUCER) around ``app.send`` and
  ``app.send_batch``; its context is injected as String message attributes into every
  message that has room for them under SQS's 10 attributes (one DEBUG line otherwise).
* Handling: the span ``process <queue>`` (kind CONSUMER), a child of the context the
  producer injected (and linked to it), else of the X-Ray ``AWSTraceHeader`` system
  attribute; it ends once the message's fate is decided, with ``aiosqsq.fate``, and
  ``error.type`` when the handler raised. A batch handler's span links every message's
  context and sets ``messaging.batch.message_count``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
)

from aiosqsq.backends.base import MAX_MESSAGE_ATTRIBUTES, MessageAttributes, QueueMessage
from aiosqsq.codec import PayloadError
from aiosqsq.errors import Retry
from aiosqsq.observability import log_context
from aiosqsq.observability.recorder import queue_name

logger = logging.getLogger("aiosqsq.observability")

SYSTEM: Final = "aws_sqs"
_XRAY: Final = re.compile(
    r"Root=1-(?P<time>[0-9a-f]{8})-(?P<rest>[0-9a-f]{24});Parent=(?P<parent>[0-9a-f]{16})"
    r"(?:;Sampled=(?P<sampled>[01]))?"
)
# spans waiting for their fate: bounded, as a message whose lease is lost gets none
_OPEN_LIMIT: Final = 10_000
_OPEN_MAX_S: Final = 300.0

Attributes = Mapping[str, str | int | float | bytes]


class _AttributeGetter(Getter[MessageAttributes]):
    """Reads String message attributes for a propagator."""

    def get(self, carrier: MessageAttributes, key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None or not value["DataType"].startswith("String"):
            return None
        text = value.get("StringValue")
        return [text] if text is not None else None

    def keys(self, carrier: MessageAttributes) -> list[str]:
        return list(carrier)


_GETTER: Final = _AttributeGetter()


def xray_context(header: str | None) -> SpanContext | None:
    """The span context of an ``AWSTraceHeader`` (``Root=1-...;Parent=...;Sampled=1``)."""
    match = _XRAY.match(header or "")
    if match is None:
        return None
    return SpanContext(
        trace_id=int(match["time"] + match["rest"], 16),
        span_id=int(match["parent"], 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if match["sampled"] == "1" else 0),
    )


class Tracing:
    """The spans and OTel metrics of one app."""

    def __init__(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            release = version("aiosqsq")
        except PackageNotFoundError:
            release = "0"
        self._tracer = trace.get_tracer("aiosqsq", release)
        meter = metrics.get_meter("aiosqsq", release)
        self._duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Duration of processing a message (or a batch) by its handler.",
        )
        self._consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Messages delivered to a handler.",
        )
        self._open: OrderedDict[str, tuple[Span, float]] = OrderedDict()

    # -- sending -----------------------------------------------------------------------

    @contextlib.contextmanager
    def sending(self, queue: str, count: int) -> Iterator[Span]:
        """The PRODUCER span of one ``send``/``send_batch`` call, current in the body."""
        name = queue_name(queue)
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": name,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        }
        if count != 1:
            attributes["messaging.batch.message_count"] = count
        with self._tracer.start_as_current_span(
            f"send {name}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            yield span

    def inject(self, attributes: Attributes | None) -> Attributes | None:
        """``attributes`` with the current trace context added, when there is room for it
        under SQS's 10 message attributes; unchanged (one DEBUG line) otherwise."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if not carrier:
            return attributes
        given = dict(attributes or {})
        added = {key: value for key, value in carrier.items() if key not in given}
        if len(given) + len(added) > MAX_MESSAGE_ATTRIBUTES:
            logger.debug(
                "trace context not added to a message: it has %d message attributes and "
                "SQS allows %d",
                len(given),
                MAX_MESSAGE_ATTRIBUTES,
            )
            return attributes
        return {**given, **added}

    # -- handling ----------------------------------------------------------------------

    async def middleware(self, message: Any, call_next: Any) -> Any:
        if isinstance(message, list):
            return await self._batch(message, call_next)
        queue = queue_name(message.queue)
        parent = self._parent(message.message_attributes, message.attributes)
        links = [Link(parent)] if parent is not None else None
        parent_context = (
            trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        )
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": queue,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": message.message_id,
            "aiosqsq.receive_count": message.receive_count,
        }
        if message.group_id is not None:
            attributes["messaging.message.conversation_id"] = message.group_id
        span = self._tracer.start_span(
            f"process {queue}",
            context=parent_context or otel_context.Context(),
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        )
        span_context = span.get_span_context()
        if span_context.is_valid:
            log_context.set_trace(
                format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
            )
        self._keep_open(message.message_id, span)
        token = otel_context.attach(trace.set_span_in_context(span))
        started = time.perf_counter()
        error_type: str | None = None
        try:
            return await call_next()
        except Retry:
            raise
        except BaseException as exc:
            error_type = _error_type(exc)
            if span.is_recording():  # not ended by a fate decided meanwhile (a release)
                if isinstance(exc, Exception):
                    span.record_exception(exc)
                span.set_attribute("error.type", error_type)
                span.set_status(StatusCode.ERROR, error_type)
            raise
        finally:
            otel_context.detach(token)
            self._measure(queue, time.perf_counter() - started, 1, error_type)

    async def _batch(self, messages: Sequence[Any], call_next: Any) -> Any:
        if not messages:
            return await call_next()
        queue = queue_name(messages[0].queue)
        links = []
        for each in messages:
            parent = self._parent(each.message_attributes, each.attributes)
            if parent is not None:
                links.append(Link(parent, {"messaging.message.id": each.message_id}))
        started = time.perf_counter()
        error_type: str | None = None
        with self._tracer.start_as_current_span(
            f"process {queue}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.destination.name": queue,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.batch.message_count": len(messages),
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                failed = await call_next()
            except Retry:
                raise
            except BaseException as exc:
                error_type = _error_type(exc)
                span.set_attribute("error.type", error_type)
                span.set_status(StatusCode.ERROR, error_type)
                raise
            finally:
                self._measure(queue, time.perf_counter() - started, len(messages), error_type)
            if failed:
                span.set_attribute("aiosqsq.failed_count", len(failed))
            return failed

    def observe(self, fate: str, message: QueueMessage) -> None:
        """The engine decided a message's fate: its span ends with it."""
        found = self._open.pop(message.message_id, None)
        if found is not None:
            span, _ = found
            span.set_attribute("aiosqsq.fate", fate)
            span.end()

    def sweep(self) -> None:
        """End the spans of messages that got no fate (their lease was lost)."""
        deadline = time.monotonic() - _OPEN_MAX_S
        while self._open:
            message_id, (span, opened) = next(iter(self._open.items()))
            if opened > deadline and len(self._open) <= _OPEN_LIMIT:
                return
            del self._open[message_id]
            span.set_attribute("aiosqsq.fate", "lease_lost")
            span.end()

    def _keep_open(self, message_id: str, span: Span) -> None:
        previous = self._open.pop(message_id, None)
        if previous is not None:  # the same message again: the earlier delivery is over
            previous[0].end()
        self._open[message_id] = (span, time.monotonic())

    def _parent(
        self, message_attributes: MessageAttributes, attributes: Mapping[str, str]
    ) -> SpanContext | None:
        extracted = propagate.extract(message_attributes, getter=_GETTER)
        found = trace.get_current_span(extracted).get_span_context()
        if found.is_valid:
            return found
        return xray_context(attributes.get("AWSTraceHeader"))

    def _measure(self, queue: str, seconds: float, count: int, error_type: str | None) -> None:
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": queue,
            "messaging.operation.name": "process",
        }
        self._consumed.add(count, attributes)
        if error_type is not None:
            attributes["error.type"] = error_type
        self._duration.record(seconds, attributes)


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, PayloadError):
        return exc.error_class
    return type(exc).__qualname__
