"""The queue backend protocol: the seam between the engine and a queue service.

A backend speaks SQS's vocabulary (receipt handles, batches of at most 10, per-entry
failures) whether it talks to Amazon SQS over the network or keeps queues in memory.
The engine only ever sees this protocol, so the same engine and the same contract
tests run on every backend.

Queues are addressed by *queue URL* everywhere except :meth:`QueueBackend.get_queue_url`,
which turns a name (or a URL) into one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NotRequired, Protocol, TypedDict

# SQS limits (Amazon SQS Developer Guide, "Quotas"). Both backends check a request's shape
# by them (limits.py); the memory backend enforces the server's side too (memory_rules.py).
MAX_BATCH_ENTRIES = 10
MAX_RECEIVE_MESSAGES = 10
MAX_WAIT_TIME_S = 20
MAX_MESSAGE_BYTES = 1_048_576  # body + message attributes, and the whole batch request
# 12 hours, counted from the receive that issued the current receipt handle (each in-flight
# period anew), not from the message's first receive.
MAX_VISIBILITY_TIMEOUT_S = 43_200
MAX_DELAY_S = 900
MAX_MESSAGE_ATTRIBUTES = 10


class MessageAttributeValue(TypedDict):
    """One message attribute, in SQS's own shape."""

    DataType: str  # "String", "Number", "Binary", optionally with a ".custom" suffix
    StringValue: NotRequired[str]
    BinaryValue: NotRequired[bytes]


MessageAttributes = Mapping[str, MessageAttributeValue]


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One received message: what ``ReceiveMessage`` returns for it.

    ``message_id`` names the message for its whole life; ``receipt_handle`` names this
    one *receive* of it and is what delete and visibility changes need (always the newest).
    ``attributes`` are SQS's system attributes (``ApproximateReceiveCount``,
    ``SentTimestamp``, ``ApproximateFirstReceiveTimestamp``, ``MessageGroupId``, ...).
    """

    queue_url: str
    message_id: str
    receipt_handle: str
    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    message_attributes: MessageAttributes = field(default_factory=dict)

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", "1"))

    @property
    def group_id(self) -> str | None:
        return self.attributes.get("MessageGroupId")

    def __repr__(self) -> str:
        # Bodies may hold personal data: a repr shows ids and size only.
        return (
            f"QueueMessage(message_id={self.message_id!r}, receive_count={self.receive_count}, "
            f"body_bytes={len(self.body.encode('utf-8', 'surrogatepass'))})"
        )


@dataclass(frozen=True, slots=True)
class DeleteEntry:
    id: str  # unique within one request: [A-Za-z0-9_-]{1,80}
    receipt_handle: str


@dataclass(frozen=True, slots=True)
class VisibilityEntry:
    id: str
    receipt_handle: str
    visibility_timeout_s: float  # counted from the call; 0 makes the message visible now


@dataclass(frozen=True, slots=True)
class SendEntry:
    id: str
    body: str
    delay_s: int = 0
    message_attributes: MessageAttributes = field(default_factory=dict)
    group_id: str | None = None  # FIFO: MessageGroupId (required on FIFO queues)
    deduplication_id: str | None = None  # FIFO: MessageDeduplicationId


@dataclass(frozen=True, slots=True)
class BatchFailure:
    """One entry SQS refused. ``sender_fault`` entries will never succeed as they are."""

    id: str
    code: str
    message: str
    sender_fault: bool


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-entry outcome of a batch call: ``successful`` entry ids and ``failed`` entries.

    For ``send_batch``, ``message_ids`` maps each successful entry id to its new MessageId.
    """

    successful: tuple[str, ...] = ()
    failed: tuple[BatchFailure, ...] = ()
    message_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """What the engine needs to know about a queue, read once at start-up."""

    url: str
    name: str
    arn: str
    visibility_timeout_s: float
    fifo: bool
    dead_letter_queue_url: str | None = None  # from the RedrivePolicy
    max_receive_count: int | None = None
    message_retention_s: float = 345_600  # MessageRetentionPeriod: SQS's default is 4 days


@dataclass(frozen=True, slots=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int


class QueueBackend(Protocol):
    """A queue service with SQS's semantics.

    Batch methods take at most 10 entries with ids unique within the request and raise
    :class:`~aiosqsq.errors.BatchRequestError` otherwise; per-entry failures come back in
    the :class:`BatchResult`, as SQS returns them. A missing queue raises
    :class:`~aiosqsq.errors.QueueNotFoundError`; a failure that may pass on retry raises
    :class:`~aiosqsq.errors.BackendError` with ``retryable=True``.
    """

    #: True when cancelling :meth:`receive` can never lose messages (nothing was
    #: received on the wire yet). The engine then aborts long polls at shutdown
    #: instead of waiting for them to end.
    receive_is_cancel_safe: bool

    def ensure_connections(self, needed: int) -> None:
        """Make room for ``needed`` requests at once (long polls must not starve deletes);
        a backend without a connection pool does nothing."""
        ...

    async def get_queue_url(self, name_or_url: str) -> str:
        """The URL of the queue named ``name_or_url`` (a URL is checked and returned)."""
        ...

    async def get_queue_info(self, queue_url: str) -> QueueInfo: ...

    async def get_queue_depth(self, queue_url: str) -> QueueDepth: ...

    async def create_queue(self, name: str, attributes: Mapping[str, str] | None = None) -> str:
        """Create (or find, if it exists with the same attributes) a queue; return its URL."""
        ...

    async def delete_queue(self, queue_url: str) -> None: ...

    async def receive(
        self,
        queue_url: str,
        *,
        max_messages: int,
        wait_time_s: float,
        visibility_timeout_s: float | None = None,
        attempt_id: str | None = None,
    ) -> list[QueueMessage]:
        """Receive up to ``max_messages`` (1-10), long polling up to ``wait_time_s`` (0-20)."""
        ...

    async def delete_batch(self, queue_url: str, entries: Sequence[DeleteEntry]) -> BatchResult: ...

    async def change_visibility_batch(
        self, queue_url: str, entries: Sequence[VisibilityEntry]
    ) -> BatchResult: ...

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult: ...

    async def aclose(self) -> None:
        """Release connections. Calls after this fail."""
        ...


def message_size(body: str, attributes: MessageAttributes) -> int:
    """Bytes SQS counts against the 1 MiB limit: the body plus each attribute's name,
    type and value."""
    size = utf8_size(body)
    for name, value in attributes.items():
        size += utf8_size(name) + utf8_size(value["DataType"])
        if "StringValue" in value:
            size += utf8_size(value["StringValue"])
        if "BinaryValue" in value:
            size += len(value["BinaryValue"])
    return size


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (lone surrogates as 3 each), without a copy when it is
    ASCII (a check CPython answers at once): a body may be tens of MiB, sized often."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
