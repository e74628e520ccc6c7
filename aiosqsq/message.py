"""The message a handler receives, with the calls that manage its lease."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from aiosqsq.backends.base import MessageAttributes, QueueMessage

if TYPE_CHECKING:
    from aiosqsq.envelopes import EnvelopeMetadata

#: Message attributes aiosqsq writes on a copy it moves to a dead-letter queue.
ERROR_ATTRIBUTE = "aiosqsq-error"  # why: "<error class>: <reason>", never body text
SOURCE_ATTRIBUTE = "aiosqsq-source"  # from where: "<queue name> <original MessageId>"


class Lease(Protocol):
    """What a :class:`Message` asks of the engine that holds it."""

    async def extend(self, seconds: float) -> None: ...

    async def release(self, delay_s: float) -> None: ...


@dataclass(frozen=True, slots=True, repr=False)
class Message:
    """One delivery of an SQS message to a handler.

    Delivery is at-least-once: the same ``message_id`` can arrive again (after a crash,
    a lapsed visibility timeout, or a standard queue's own redelivery), so handlers
    should be idempotent. ``receive_count`` is SQS's ApproximateReceiveCount.
    ``envelope`` is the metadata of the envelope the body came in (``SNSMetadata``,
    ``EventBridgeMetadata``) for a handler registered with ``envelope=``, else None.
    """

    message_id: str
    body: str
    receive_count: int
    attributes: Mapping[str, str]
    message_attributes: MessageAttributes
    group_id: str | None
    queue: str
    _lease: Lease = field(compare=False)
    envelope: EnvelopeMetadata | None = field(default=None, compare=False)

    @classmethod
    def from_queue_message(cls, message: QueueMessage, lease: Lease) -> Message:
        return cls(
            message_id=message.message_id,
            body=message.body,
            receive_count=message.receive_count,
            attributes=message.attributes,
            message_attributes=message.message_attributes,
            group_id=message.group_id,
            queue=message.queue_url,
            _lease=lease,
        )

    @property
    def sent_at(self) -> datetime | None:
        """When SQS accepted the message (its SentTimestamp), in UTC."""
        sent = self.attributes.get("SentTimestamp")
        return datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None

    def _unwrapped(self, metadata: Any) -> None:
        """Set :attr:`envelope` once the body was taken out of its envelope (the message
        is made before decoding, for middleware)."""
        object.__setattr__(self, "envelope", metadata)

    async def extend(self, seconds: float) -> None:
        """Keep the message hidden for ``seconds`` from now (SQS ChangeMessageVisibility).

        The heartbeat already does this for running handlers; call it to ask for a
        specific lease. Raises :class:`~aiosqsq.errors.BackendError` if SQS refuses, for
        example past the 12-hour limit counted from the first receive.
        """
        await self._lease.extend(seconds)

    async def release(self, delay_s: float = 0) -> None:
        """Hand the message back: visible again after ``delay_s`` seconds, not deleted.

        The handler's outcome no longer decides the fate: returning after ``release``
        does not delete the message.
        """
        await self._lease.release(delay_s)

    def __repr__(self) -> str:
        return (
            f"Message(message_id={self.message_id!r}, queue={self.queue!r}, "
            f"receive_count={self.receive_count}, group_id={self.group_id!r})"
        )
