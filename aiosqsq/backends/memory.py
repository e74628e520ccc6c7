"""In-process queues with SQS's semantics: the backend tests and ``aiosqsq.testing`` run on.

Modelled, as Amazon SQS behaves:

* visibility timeouts, per-receive receipt handles (random and unguessable, only the newest
  may change visibility), ``ApproximateReceiveCount`` and the system attributes;
* long polling that wakes at once when a message is sent or released, and at the exact
  moment the next hidden or delayed message becomes visible;
* queue-level and per-message delays, redrive to a dead-letter queue after
  ``maxReceiveCount`` receives (the DLQ's receive count restarts);
* FIFO queues: strict order and one-batch-at-a-time per ``MessageGroupId``, the 5-minute
  deduplication window (explicit id or ``ContentBasedDeduplication``), sequence numbers;
* every batch, entry and size limit of ``base.py``, with SQS's error codes: the rules
  shared with the SQS backend are in ``limits.py``, the ones that depend on a queue in
  ``memory_rules.py``.

Not modelled: message retention (``MessageRetentionPeriod`` is validated, but messages
never expire), ``ReceiveRequestAttemptId`` (accepted and ignored: a cancelled receive here
never loses messages, so a retry never needs it), the queue's
``ReceiveMessageWaitTimeSeconds`` default (the protocol always passes ``wait_time_s``),
the in-flight limits, throttling, and the occasional duplicate delivery of standard queues.

Message timing follows ``clock`` (a fake clock makes visibility and delays deterministic);
a long poll's ``wait_time_s`` is measured in event-loop time, so a receive always ends.
Not thread-safe: use one instance from one event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from aiosqsq.backends.base import (
    MAX_RECEIVE_MESSAGES,
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_TIME_S,
    BatchFailure,
    BatchResult,
    DeleteEntry,
    MessageAttributes,
    QueueDepth,
    QueueInfo,
    QueueMessage,
    SendEntry,
    VisibilityEntry,
)
from aiosqsq.backends.limits import check_batch, check_send_batch
from aiosqsq.backends.memory_rules import (
    QueueConfig,
    check_range,
    parse_queue_attributes,
    send_problem,
    visibility_problem,
    visibility_timeout_problem,
)
from aiosqsq.errors import BackendError, QueueNotFoundError

URL_PREFIX = "memory://queues/"
ARN_PREFIX = "arn:aws:sqs:memory:000000000000:"
DEDUPLICATION_WINDOW_S = 300  # SQS FIFO: a repeated deduplication id is dropped for 5 minutes
_SENDER_ID = "000000000000"


@dataclass(eq=False, slots=True)
class _Message:
    message_id: str
    body: str
    message_attributes: MessageAttributes
    sent_ms: int
    visible_at: float  # clock time; visible once reached (FIFO: and its group is free)
    group_id: str | None = None
    deduplication_id: str | None = None
    sequence_number: str | None = None
    receive_count: int = 0
    first_receive_ms: int | None = None
    received_at: float = 0.0  # clock time of the newest receive: the 12 h cap counts from it
    receipt_handle: str | None = None  # the newest; older ones are stale


@dataclass(eq=False, slots=True)
class _Queue:
    name: str
    config: QueueConfig
    messages: dict[str, _Message] = field(default_factory=dict)  # by MessageId, send order
    deduplication: dict[str, tuple[float, str]] = field(default_factory=dict)  # -> expiry, id
    sequence: int = 0
    wakeup: anyio.Event | None = None  # set, then replaced, whenever receivers should look again

    @property
    def url(self) -> str:
        return URL_PREFIX + self.name

    def notify(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()
            self.wakeup = None


def _fail(entry_id: str, code: str, message: str) -> BatchFailure:
    return BatchFailure(id=entry_id, code=code, message=message, sender_fault=True)


class MemoryBackend:
    """A :class:`~aiosqsq.backends.base.QueueBackend` whose queues live in this process.

    ``clock`` (monotonic seconds) drives visibility, delays and deduplication windows;
    ``wall_clock`` (epoch seconds) stamps ``SentTimestamp`` and
    ``ApproximateFirstReceiveTimestamp``. After :meth:`aclose` every call raises
    :class:`~aiosqsq.errors.BackendError` with code ``BackendClosed``.
    """

    #: Messages are marked received only in the step that returns them (no await in between),
    #: and a cancelled receive takes nothing: cancelling one never loses a message.
    receive_is_cancel_safe = True

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._queues: dict[str, _Queue] = {}
        self._secret = secrets.token_bytes(32)  # signs receipt handles
        self._closed = False

    def ensure_connections(self, needed: int) -> None:
        """Nothing to do: no connections in process."""

    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock this backend's queues follow; an app's engine reads the same
        one, so a fake clock drives visibility, backoff and the 12-hour cap together."""
        return self._clock

    def __repr__(self) -> str:
        messages = sum(len(queue.messages) for queue in self._queues.values())
        state = " closed" if self._closed else ""
        return f"<MemoryBackend{state} queues={len(self._queues)} messages={messages}>"

    # -- queues -----------------------------------------------------------------------

    async def get_queue_url(self, name_or_url: str) -> str:
        return self._queue(name_or_url.removeprefix(URL_PREFIX), name_or_url).url

    async def create_queue(self, name: str, attributes: Mapping[str, str] | None = None) -> str:
        self._check_open()
        config = parse_queue_attributes(name, attributes or {}, self._dead_letter_queue)
        existing = self._queues.get(name)
        if existing is not None:
            if existing.config != config:
                raise BackendError(
                    "QueueAlreadyExists",
                    f"queue {name!r} already exists with different attributes: "
                    "delete it first or pass the same attributes",
                )
            return existing.url
        self._queues[name] = _Queue(name, config)
        return URL_PREFIX + name

    async def delete_queue(self, queue_url: str) -> None:
        queue = self._queue_by_url(queue_url)
        del self._queues[queue.name]
        queue.notify()  # its long pollers fail with QueueNotFoundError

    async def get_queue_info(self, queue_url: str) -> QueueInfo:
        queue = self._queue_by_url(queue_url)
        dlq = queue.config.dead_letter_queue
        return QueueInfo(
            url=queue.url,
            name=queue.name,
            arn=ARN_PREFIX + queue.name,
            visibility_timeout_s=queue.config.visibility_timeout_s,
            fifo=queue.config.fifo,
            dead_letter_queue_url=None if dlq is None else URL_PREFIX + dlq,
            max_receive_count=queue.config.max_receive_count,
            message_retention_s=queue.config.retention_s,
        )

    async def get_queue_depth(self, queue_url: str) -> QueueDepth:
        queue = self._queue_by_url(queue_url)
        now = self._clock()
        hidden = [m for m in queue.messages.values() if m.visible_at > now]
        in_flight = sum(1 for m in hidden if m.receive_count > 0)
        return QueueDepth(
            visible=len(queue.messages) - len(hidden),
            in_flight=in_flight,
            delayed=len(hidden) - in_flight,
        )

    async def aclose(self) -> None:
        """Close the backend; waiting receives wake up and fail. Closing twice is harmless."""
        self._closed = True
        for queue in self._queues.values():
            queue.notify()

    # -- messages ---------------------------------------------------------------------

    async def receive(
        self,
        queue_url: str,
        *,
        max_messages: int,
        wait_time_s: float,
        visibility_timeout_s: float | None = None,
        attempt_id: str | None = None,
    ) -> list[QueueMessage]:
        """Receive up to ``max_messages`` visible messages in send order.

        Waits up to ``wait_time_s`` (event-loop time) for the first one. Raises
        :class:`~aiosqsq.errors.QueueNotFoundError` if the queue is deleted meanwhile.
        Cancel-safe: messages are marked received only in the step that returns them, and
        a receive cancelled before that step (even one already woken) takes nothing.
        """
        check_range("MaxNumberOfMessages", max_messages, 1, MAX_RECEIVE_MESSAGES)
        check_range("WaitTimeSeconds", wait_time_s, 0, MAX_WAIT_TIME_S)
        if visibility_timeout_s is not None:
            check_range("VisibilityTimeout", visibility_timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S)
        deadline = anyio.current_time() + wait_time_s
        while True:
            # A cancel requested while we were waiting may arrive after the wake-up: honour it
            # before taking anything, so a cancelled receive returns nothing and takes nothing.
            await anyio.lowlevel.checkpoint_if_cancelled()
            queue = self._queue_by_url(queue_url)
            received = self._take(queue, max_messages, visibility_timeout_s)
            remaining = deadline - anyio.current_time()
            if received or remaining <= 0:
                return received
            if queue.wakeup is None:
                queue.wakeup = anyio.Event()
            wakeup = queue.wakeup
            with anyio.move_on_after(min(remaining, self._until_next_visible(queue))):
                await wakeup.wait()

    async def delete_batch(self, queue_url: str, entries: Sequence[DeleteEntry]) -> BatchResult:
        """Delete messages. A handle of an already deleted message succeeds (as in SQS).

        A stale handle (the message was received again since) still deletes the message:
        that is what SQS standard queues do in practice, although the API reference asks
        for the newest handle.
        """
        queue = self._queue_by_url(queue_url)
        check_batch("DeleteMessageBatch", entries)
        successful: list[str] = []
        failed: list[BatchFailure] = []
        for entry in entries:
            message_id = self._open_handle(queue, entry.receipt_handle)
            if message_id is None:
                failed.append(self._invalid_handle(entry))
                continue
            queue.messages.pop(message_id, None)
            successful.append(entry.id)
        if queue.config.fifo and successful:
            queue.notify()  # a deleted message may free its group
        return BatchResult(successful=tuple(successful), failed=tuple(failed))

    async def change_visibility_batch(
        self, queue_url: str, entries: Sequence[VisibilityEntry]
    ) -> BatchResult:
        """Hide in-flight messages for ``visibility_timeout_s`` from now (0: visible at once).

        SQS rejects, per entry, a timeout that would keep the message hidden more than
        12 hours after the receive that issued the handle (it does not clamp); it counts
        whole seconds, so 43,200 right after a receive is accepted.
        """
        queue = self._queue_by_url(queue_url)
        check_batch("ChangeMessageVisibilityBatch", entries)
        now = self._clock()
        successful: list[str] = []
        failed: list[BatchFailure] = []
        for entry in entries:
            target = self._visibility_target(queue, entry, now)
            if isinstance(target, BatchFailure):
                failed.append(target)
                continue
            target.visible_at = now + entry.visibility_timeout_s
            successful.append(entry.id)
        if successful:
            queue.notify()  # released now, or visible at a new moment
        return BatchResult(successful=tuple(successful), failed=tuple(failed))

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        """Enqueue messages; ``message_ids`` maps entry ids to MessageIds.

        ``delay_s=0`` means "the queue's DelaySeconds". As SQS does, a batch whose entries
        (bodies and attributes) total over 1 MiB is rejected whole (``BatchRequestTooLong``),
        even when one entry alone is what is too big; within that, an entry over the queue's
        ``MaximumMessageSize`` fails on its own. A FIFO duplicate within 5 minutes succeeds
        with the original MessageId and is not enqueued again.
        """
        queue = self._queue_by_url(queue_url)
        check_send_batch(entries)
        problems = {e.id: p for e in entries if (p := send_problem(e, queue.config)) is not None}
        now = self._clock()
        while queue.deduplication:  # entries expire in insertion order
            oldest = next(iter(queue.deduplication))
            if queue.deduplication[oldest][0] > now:
                break
            del queue.deduplication[oldest]
        message_ids = {e.id: self._enqueue(queue, e, now) for e in entries if e.id not in problems}
        if message_ids:
            queue.notify()
        failed = tuple(_fail(entry_id, *problem) for entry_id, problem in problems.items())
        return BatchResult(successful=tuple(message_ids), failed=failed, message_ids=message_ids)

    # -- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("BackendClosed", "this MemoryBackend was closed with aclose()")

    def _queue(self, name: str, shown_as: str) -> _Queue:
        self._check_open()
        queue = self._queues.get(name)
        if queue is None:
            raise QueueNotFoundError(shown_as)
        return queue

    def _queue_by_url(self, queue_url: str) -> _Queue:
        if not queue_url.startswith(URL_PREFIX):
            self._check_open()
            raise QueueNotFoundError(queue_url)
        return self._queue(queue_url.removeprefix(URL_PREFIX), queue_url)

    def _dead_letter_queue(self, arn: str) -> tuple[str, QueueConfig] | None:
        """The name and config of the queue a RedrivePolicy's ARN names, or None."""
        if not arn.startswith(ARN_PREFIX):
            return None
        queue = self._queues.get(arn.removeprefix(ARN_PREFIX))
        return None if queue is None else (queue.name, queue.config)

    def _take(
        self, queue: _Queue, max_messages: int, visibility_timeout_s: float | None
    ) -> list[QueueMessage]:
        # Synchronous from the first mark to the return: this is what makes receive cancel-safe.
        now = self._clock()
        timeout = queue.config.visibility_timeout_s
        if visibility_timeout_s is not None:
            timeout = visibility_timeout_s
        dlq = self._queues.get(queue.config.dead_letter_queue or "")
        max_receive_count = queue.config.max_receive_count or math.inf
        blocked: set[str | None] = set()  # FIFO groups whose head is hidden (in flight)
        dead: list[_Message] = []  # moved to the DLQ after the scan
        taken: list[QueueMessage] = []
        for message in queue.messages.values():
            if len(taken) == max_messages:
                break
            if queue.config.fifo and message.group_id in blocked:
                continue
            if message.visible_at > now:
                if queue.config.fifo:
                    blocked.add(message.group_id)
                continue
            if dlq is not None and message.receive_count >= max_receive_count:
                dead.append(message)  # SQS redrives instead of a receive past maxReceiveCount
                continue
            message.receive_count += 1
            if message.first_receive_ms is None:
                message.first_receive_ms = int(self._wall_clock() * 1000)
            message.received_at = now
            message.visible_at = now + timeout
            message.receipt_handle = self._issue_handle(queue, message)
            taken.append(self._snapshot(queue, message))
        if dlq is not None and dead:
            for message in dead:
                del queue.messages[message.message_id]
                message.receive_count, message.first_receive_ms = 0, None  # the DLQ counts anew
                message.receipt_handle, message.visible_at = None, now
                dlq.messages[message.message_id] = message
            dlq.notify()
        if taken:
            queue.notify()  # other long pollers recompute when the next message shows up
        return taken

    def _until_next_visible(self, queue: _Queue) -> float:
        now = self._clock()
        hidden = [m.visible_at for m in queue.messages.values() if m.visible_at > now]
        return min(hidden) - now if hidden else math.inf

    def _snapshot(self, queue: _Queue, message: _Message) -> QueueMessage:
        attributes = {
            "ApproximateReceiveCount": str(message.receive_count),
            "ApproximateFirstReceiveTimestamp": str(message.first_receive_ms),
            "SentTimestamp": str(message.sent_ms),
            "SenderId": _SENDER_ID,
        }
        if message.group_id is not None:
            attributes["MessageGroupId"] = message.group_id
        if message.sequence_number is not None and message.deduplication_id is not None:
            attributes["SequenceNumber"] = message.sequence_number
            attributes["MessageDeduplicationId"] = message.deduplication_id
        assert message.receipt_handle is not None
        return QueueMessage(
            queue_url=queue.url,
            message_id=message.message_id,
            receipt_handle=message.receipt_handle,
            body=message.body,
            attributes=attributes,
            message_attributes={k: v.copy() for k, v in message.message_attributes.items()},
        )

    def _issue_handle(self, queue: _Queue, message: _Message) -> str:
        payload = f"{message.message_id}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._sign(queue, payload)}"

    def _open_handle(self, queue: _Queue, handle: str) -> str | None:
        """The MessageId a handle was issued for, or None if this queue never issued it."""
        payload, _, signature = handle.rpartition(".")
        expected = self._sign(queue, payload).encode()
        if not hmac.compare_digest(signature.encode("utf-8", "surrogatepass"), expected):
            return None
        return payload.partition(".")[0]

    def _sign(self, queue: _Queue, payload: str) -> str:
        signed = f"{queue.name}/{payload}".encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, signed, hashlib.sha256).hexdigest()[:32]

    @staticmethod
    def _invalid_handle(entry: DeleteEntry | VisibilityEntry) -> BatchFailure:
        return _fail(
            entry.id,
            "ReceiptHandleIsInvalid",
            f'The input receipt handle "{entry.receipt_handle}" is not a valid receipt handle.',
        )

    def _visibility_target(
        self, queue: _Queue, entry: VisibilityEntry, now: float
    ) -> _Message | BatchFailure:
        """The in-flight message ``entry`` may change, or why SQS would refuse the entry."""
        if (problem := visibility_timeout_problem(entry.visibility_timeout_s)) is not None:
            return _fail(entry.id, *problem)
        message_id = self._open_handle(queue, entry.receipt_handle)
        if message_id is None:
            return self._invalid_handle(entry)
        message = queue.messages.get(message_id)
        if (problem := visibility_problem(entry, message, now)) is not None:
            return _fail(entry.id, *problem)
        assert message is not None  # visibility_problem refuses a missing message
        return message

    def _enqueue(self, queue: _Queue, entry: SendEntry, now: float) -> str:
        deduplication_id = sequence_number = None
        if queue.config.fifo:
            deduplication_id = (
                entry.deduplication_id
                or hashlib.sha256(entry.body.encode("utf-8", "surrogatepass")).hexdigest()
            )
            seen = queue.deduplication.get(deduplication_id)
            if seen is not None:
                return seen[1]
            queue.sequence += 1
            sequence_number = f"{queue.sequence:020d}"
        message = _Message(
            message_id=str(uuid.uuid4()),
            body=entry.body,
            message_attributes={k: v.copy() for k, v in entry.message_attributes.items()},
            sent_ms=int(self._wall_clock() * 1000),
            visible_at=now + (entry.delay_s or queue.config.delay_s),
            group_id=entry.group_id,
            deduplication_id=deduplication_id,
            sequence_number=sequence_number,
        )
        queue.messages[message.message_id] = message
        if deduplication_id is not None:
            queue.deduplication[deduplication_id] = (
                now + DEDUPLICATION_WINDOW_S,
                message.message_id,
            )
        return message.message_id
