"""What feeds the metrics: the app's observability middleware around every handler call
(:meth:`Recorder.begin`, :meth:`Recorder.end`), an observer of every fate, and timing
around the backend's calls (see :mod:`aiosqsq.observability.metrics`). Counts are kept
here and added to the metrics once a second (:meth:`Recorder.flush`): one lock per
metric per second instead of one per message.

The outcome of a message joins what the middleware saw (the handler raised ``Retry``,
raised something else, returned) with the fate the engine decided: ``retried`` after a
``Retry``, ``error`` after any other failure; ``released`` when the handler released
the message itself, ``shutdown`` when it was handed back without (or cut by) a stop.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import lru_cache, wraps
from typing import Any, Final

from aiosqsq.backends.base import BatchResult, QueueBackend, QueueMessage
from aiosqsq.backends.queue_address import queue_name as address_queue_name
from aiosqsq.engine.settle import Fate
from aiosqsq.engine.stats import Statistics
from aiosqsq.message import Message
from aiosqsq.observability.metrics import OPERATIONS, Metrics

#: How a handler call ended, as the middleware saw it.
RUNNING: Final = "running"
RAN: Final = "ran"
RETRY: Final = "retry"
RAISED: Final = "raised"
CANCELLED: Final = "cancelled"
# What the middleware saw per message id, until its fate: bounded, as a message whose
# lease was lost never gets one.
_PENDING_LIMIT: Final = 100_000
_WRAPPED: Final = "_aiosqsq_metrics_wrapped"


#: A queue's name from its URL (or the name itself): the ``queue`` label, cached, as it
#: is read for every message.
queue_name = lru_cache(maxsize=4096)(address_queue_name)


class Recorder:
    """Feeds ``metrics`` for one app (:meth:`use_handlers` says which handler consumes
    which queue)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._handlers: dict[str, str] = {}
        self._children: dict[tuple[str, str], Any] = {}
        self._pending: dict[str, str] = {}
        self._synced: dict[tuple[str, str], Statistics] = {}

    def _child(self, what: str, queue: str) -> Any:
        """Where to count ``what`` for ``queue``: a :class:`Tally` or :class:`Buckets` of
        its labelled child (made once: ``labels()`` costs a lock and a tuple per call)."""
        key = (what, queue)
        child = self._children.get(key)
        if child is None:
            metrics, handler = self.metrics, self.handler_of(queue)
            if what == "duration":
                child = Buckets(metrics.handler_duration.labels(queue, handler))
            elif what == "lag":
                child = Buckets(metrics.lag.labels(queue))
            elif what == "in_flight":
                child = Tally(metrics.in_flight.labels(queue))
            elif what == "received":
                child = Tally(metrics.received.labels(queue))
            else:  # an outcome
                child = Tally(metrics.processed.labels(queue, handler, what))
            self._children[key] = child
        return child

    def flush(self) -> None:
        """Add what was counted since the last flush to the metrics (the app's tick does,
        every second, and its stop)."""
        for child in self._children.values():
            child.flush()

    def use_handlers(self, handlers: Mapping[str, str]) -> None:
        """``handlers``: each queue's name and its handler's (the ``handler`` label)."""
        self._handlers = dict(handlers)
        self._children.clear()

    def handler_of(self, queue: str) -> str:
        return self._handlers.get(queue, "")

    def begin(self, messages: Sequence[Message]) -> None:
        """A handler call on ``messages`` begins (a release during it finds them running)."""
        pending = self._pending
        for each in messages:
            pending[each.message_id] = RUNNING

    def end(self, messages: Sequence[Message], queue: str, seconds: float, seen: str) -> None:
        """The call ended after ``seconds``, as ``seen`` (:data:`RAN`, :data:`RETRY`,
        :data:`RAISED` or :data:`CANCELLED`)."""
        self._child("duration", queue).observe(seconds)
        pending = self._pending
        for each in messages:
            pending[each.message_id] = seen
        while len(pending) > _PENDING_LIMIT:
            del pending[next(iter(pending))]

    def observe(self, fate: Fate, message: QueueMessage) -> None:
        """The engine decided ``message``'s fate: count it, with its outcome."""
        seen = self._pending.pop(message.message_id, None)
        if fate == "retried":
            outcome = "retried" if seen == RETRY else "error"
        elif fate == "released":
            outcome = "released" if seen in (RUNNING, RAN, RETRY, RAISED) else "shutdown"
        else:
            outcome = fate
        queue = queue_name(message.queue_url)
        self._child(outcome, queue).add(1)
        self._child("in_flight", queue).add(-1)

    def sync(self, consumers: Mapping[tuple[str, str], Statistics]) -> None:
        """Count what only the consumers' counters know: lost leases and heartbeat
        extensions, as the change since the last call."""
        for key, stats in consumers.items():
            before = self._synced.get(key, Statistics())
            self._synced[key] = stats
            queue, _ = key
            lost = stats.lease_lost - before.lease_lost
            if lost > 0:
                self._child("lease_lost", queue).add(lost)
                self._child("in_flight", queue).add(-lost)
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
        metrics, children = self.metrics, self._children
        duration = children.setdefault(
            ("sqs_duration", operation), Buckets(metrics.sqs_duration.labels(operation))
        )
        succeeded = children.setdefault(
            ("sqs_success", operation), Tally(metrics.sqs_requests.labels(operation, "success"))
        )
        failed = children.setdefault(
            ("sqs_error", operation), Tally(metrics.sqs_requests.labels(operation, "error"))
        )
        receiving = operation == "ReceiveMessage"

        @wraps(call)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = await call(*args, **kwargs)
            except Exception:
                failed.add(1)
                raise
            finally:
                duration.observe(time.perf_counter() - started)
            if isinstance(result, BatchResult) and result.failed and not result.successful:
                failed.add(1)
            else:
                succeeded.add(1)
            if receiving and result:
                self.received(result)
            return result

        return timed

    def received(self, messages: list[QueueMessage]) -> None:
        queue = queue_name(messages[0].queue_url)
        self._child("received", queue).add(len(messages))
        self._child("in_flight", queue).add(len(messages))
        now_ms = time.time() * 1000
        lag = self._child("lag", queue)
        for message in messages:
            sent = message.attributes.get("SentTimestamp")
            if sent and sent.isdigit():
                lag.observe(max(0.0, (now_ms - int(sent)) / 1000))


class Tally:
    """Counts for a counter's (or a gauge's) labelled child, added to it by :meth:`flush`:
    one lock per second instead of one per message."""

    __slots__ = ("_child", "_value")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._value = 0.0

    def add(self, amount: float) -> None:
        self._value += amount

    def flush(self) -> None:
        if self._value:
            value, self._value = self._value, 0.0
            self._child.inc(value)


class Buckets:
    """Observations for a histogram's labelled child, added to it by :meth:`flush`.

    prometheus-client's histogram has no public way to add many observations at once: this
    adds the counts to its ``_buckets`` and ``_sum`` values (each bucket holds the count of
    its own range; ``le`` sums them at collection), as its ``observe`` does one at a time.
    """

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds = tuple(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def flush(self) -> None:
        counts, total = self._counts, self._sum
        if not any(counts):
            return
        self._counts, self._sum = [0] * len(self._bounds), 0.0
        buckets = self._child._buckets
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)
        self._child._sum.inc(total)
