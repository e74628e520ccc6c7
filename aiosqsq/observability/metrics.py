"""The ``aiosqsq_*`` Prometheus metrics, and what feeds them.

Names (stable: dashboards and alerts are written against them):

=============================================  ==========  ====================================
metric                                         type        labels
=============================================  ==========  ====================================
``aiosqsq_messages_received_total``            counter     queue
``aiosqsq_messages_processed_total``           counter     queue, handler, outcome
``aiosqsq_handler_duration_seconds``           histogram   queue, handler
``aiosqsq_messages_in_flight``                 gauge       queue
``aiosqsq_message_lag_seconds``                histogram   queue (receive time - SentTimestamp)
``aiosqsq_sqs_requests_total``                 counter     operation, result
``aiosqsq_sqs_request_duration_seconds``       histogram   operation
``aiosqsq_visibility_extensions_total``        counter     queue
``aiosqsq_event_loop_lag_seconds``             gauge       (none)
``aiosqsq_queue_messages``                     gauge       queue, state
=============================================  ==========  ====================================

``outcome`` is one of :data:`OUTCOMES`. Under ``--workers`` the metrics are written in
prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``): counters of a worker
that stopped stay in the sum, so a restart neither loses nor double-counts them; gauges
count live workers only.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

#: What happened to a handled message (the ``outcome`` label).
OUTCOMES: Final = (
    "succeeded",  # the handler returned: deleted
    "retried",  # the handler raised Retry
    "error",  # the handler raised (or timed out): retried with backoff
    "dead_lettered",  # did not decode: moved to the dead-letter queue
    "released",  # the handler called message.release()
    "lease_lost",  # SQS said the message was gone: its handler was cancelled
    "shutdown",  # handed back unhandled at a stop (or behind a failed FIFO message)
)

#: SQS operations as ``aiosqsq_sqs_requests_total`` names them.
OPERATIONS: Final = {
    "receive": "ReceiveMessage",
    "delete_batch": "DeleteMessageBatch",
    "change_visibility_batch": "ChangeMessageVisibilityBatch",
    "send_batch": "SendMessageBatch",
    "get_queue_depth": "GetQueueAttributes",
    "get_queue_info": "GetQueueAttributes",
    "get_queue_url": "GetQueueUrl",
}

_LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip
_LAG_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)
_REQUEST_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 21)


class Metrics:
    """The aiosqsq metrics, registered once in ``registry`` (see :func:`metrics_for`)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.received = Counter(
            "aiosqsq_messages_received",
            "Messages received from SQS (a message delivered twice counts twice).",
            ["queue"],
            registry=registry,
        )
        self.processed = Counter(
            "aiosqsq_messages_processed",
            "Messages whose fate was decided, by outcome.",
            ["queue", "handler", "outcome"],
            registry=registry,
        )
        self.handler_duration = Histogram(
            "aiosqsq_handler_duration_seconds",
            "Time in the handler (and its middleware), per message or per batch.",
            ["queue", "handler"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "aiosqsq_messages_in_flight",
            "Messages held: received and not yet deleted or handed back.",
            ["queue"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.lag = Histogram(
            "aiosqsq_message_lag_seconds",
            "Receive time minus the message's SentTimestamp.",
            ["queue"],
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.sqs_requests = Counter(
            "aiosqsq_sqs_requests",
            "Requests to SQS, by operation and result (success, error).",
            ["operation", "result"],
            registry=registry,
        )
        self.sqs_duration = Histogram(
            "aiosqsq_sqs_request_duration_seconds",
            "Duration of requests to SQS (a long poll lasts up to its wait time).",
            ["operation"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self.visibility_extensions = Counter(
            "aiosqsq_visibility_extensions",
            "Visibility extensions the heartbeat made for held messages.",
            ["queue"],
            registry=registry,
        )
        self.loop_lag = Gauge(
            "aiosqsq_event_loop_lag_seconds",
            "How late the event loop ran its last tick (blocking code in a handler).",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.queue_messages = Gauge(
            "aiosqsq_queue_messages",
            "Messages in the queue by state (visible, in_flight, delayed), from "
            "GetQueueAttributes every QUEUE_QUEUE_STATS_INTERVAL seconds.",
            ["queue", "state"],
            multiprocess_mode="livemax",
            registry=registry,
        )


_BY_REGISTRY: dict[int, Metrics] = {}


def metrics_for(registry: CollectorRegistry = REGISTRY) -> Metrics:
    """The one :class:`Metrics` of ``registry`` (created on first use): every app of a
    process shares it, the queue label tells them apart."""
    found = _BY_REGISTRY.get(id(registry))
    if found is None or found.registry is not registry:
        found = _BY_REGISTRY[id(registry)] = Metrics(registry)
    return found
