"""What feeds the metrics: a middleware around every handler call, an observer of every
fate, and timing around the backend's calls (see :mod:`aiosqsq.observability.metrics`).

The outcome of a message joins what the middleware saw (the handler raised ``Retry``,
raised something else, returned) with the fate the engine decided: ``retried`` after a
``Retry``, ``error`` after any other failure; ``released`` when the handler released
the message itself, ``shutdown`` when it was handed back without (or cut by) a stop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, Final

import anyio

from aiosqsq.backends.base import BatchResult, QueueBackend, QueueMessage
from aiosqsq.engine.settle import Fate
from aiosqsq.engine.stats import Statistics
from aiosqsq.errors import Retry
from aiosqsq.middleware import CallNext
from aiosqsq.observability.metrics import OPERATIONS, Metrics

_RUNNING: Final = "running"
_RAN: Final = "ran"
_RETRY: Final = "retry"
_RAISED: Final = "raised"
_CANCELLED: Final = "cancelled"
# What the middleware saw per message id, until its fate: bounded, as a message whose
# lease was lost never gets one.
_PENDING_LIMIT: Final = 100_000
_WRAPPED: Final = "_aiosqsq_metrics_wrapped"


def queue_name(queue_url: str) -> str:
    """A queue's name from its URL (or the name itself): the ``queue`` label."""
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


class Recorder:
    """Feeds ``metrics`` for one app (:meth:`use_handlers` says which handler consumes
    which queue)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._handlers: dict[str, str] = {}
        self._pending: OrderedDict[str, str] = OrderedDict()
        self._synced: dict[tuple[str, str], Statistics] = {}

    def use_handlers(self, handlers: Mapping[str, str]) -> None:
        """``handlers``: each queue's name and its handler's (the ``handler`` label)."""
        self._handlers = dict(handlers)

    def handler_of(self, queue: str) -> str:
        return self._handlers.get(queue, "")

    async def middleware(self, message: Any, call_next: CallNext) -> Any:
        """Time the handler (with the middleware inside this one) and note how it ended."""
        messages = message if isinstance(message, list) else (message,)
        if not messages:
            return await call_next()
        queue = queue_name(messages[0].queue)
        pending = self._pending
        for each in messages:  # a release during the call finds it running
            pending[each.message_id] = _RUNNING
        started = time.perf_counter()
        seen = _RAISED
        try:
            result = await call_next()
            seen = _RAN
            return result
        except Retry:
            seen = _RETRY
            raise
        except anyio.get_cancelled_exc_class():
            seen = _CANCELLED
            raise
        finally:
            self.metrics.handler_duration.labels(queue, self.handler_of(queue)).observe(
                time.perf_counter() - started
            )
            for each in messages:
                pending[each.message_id] = seen
            while len(pending) > _PENDING_LIMIT:
                pending.popitem(last=False)

    def observe(self, fate: Fate, message: QueueMessage) -> None:
        """The engine decided ``message``'s fate: count it, with its outcome."""
        seen = self._pending.pop(message.message_id, None)
        if fate == "retried":
            outcome = "retried" if seen == _RETRY else "error"
        elif fate == "released":
            outcome = "released" if seen in (_RUNNING, _RAN, _RETRY, _RAISED) else "shutdown"
        else:
            outcome = fate
        queue = queue_name(message.queue_url)
        self.metrics.processed.labels(queue, self.handler_of(queue), outcome).inc()
        self.metrics.in_flight.labels(queue).dec()

    def sync(self, consumers: Mapping[tuple[str, str], Statistics]) -> None:
        """Count what only the consumers' counters know: lost leases and heartbeat
        extensions, as the change since the last call."""
        for key, stats in consumers.items():
            before = self._synced.get(key, Statistics())
            self._synced[key] = stats
            queue, handler = key
            lost = stats.lease_lost - before.lease_lost
            if lost > 0:
                self.metrics.processed.labels(queue, handler, "lease_lost").inc(lost)
                self.metrics.in_flight.labels(queue).dec(lost)
            extended = stats.heartbeats_sent - before.heartbeats_sent
            if extended > 0:
                self.metrics.visibility_extensions.labels(queue).inc(extended)

    def instrument_backend(self, backend: QueueBackend) -> None:
        """Time every SQS call of ``backend`` (its methods wrapped on the instance, once),
        and count received messages and their lag."""
        if getattr(backend, _WRAPPED, False):
            return
        for method, operation in OPERATIONS.items():
            original = getattr(backend, method, None)
            if original is not None:
                setattr(backend, method, self._timed(original, operation))
        setattr(backend, _WRAPPED, True)

    def _timed(
        self, call: Callable[..., Awaitable[Any]], operation: str
    ) -> Callable[..., Awaitable[Any]]:
        metrics = self.metrics
        duration = metrics.sqs_duration.labels(operation)
        succeeded = metrics.sqs_requests.labels(operation, "success")
        failed = metrics.sqs_requests.labels(operation, "error")
        receiving = operation == "ReceiveMessage"

        @wraps(call)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = await call(*args, **kwargs)
            except Exception:
                failed.inc()
                raise
            finally:
                duration.observe(time.perf_counter() - started)
            if isinstance(result, BatchResult) and result.failed and not result.successful:
                failed.inc()
            else:
                succeeded.inc()
            if receiving and result:
                self.received(result)
            return result

        return timed

    def received(self, messages: list[QueueMessage]) -> None:
        queue = queue_name(messages[0].queue_url)
        metrics = self.metrics
        metrics.received.labels(queue).inc(len(messages))
        metrics.in_flight.labels(queue).inc(len(messages))
        now_ms = time.time() * 1000
        lag = metrics.lag.labels(queue)
        for message in messages:
            sent = message.attributes.get("SentTimestamp")
            if sent and sent.isdigit():
                lag.observe(max(0.0, (now_ms - int(sent)) / 1000))
