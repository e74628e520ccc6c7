"""Copying a message that will never succeed to its queue's dead-letter queue."""

from __future__ import annotations

import logging

from aiosqsq.backends.base import (
    MAX_MESSAGE_ATTRIBUTES,
    MAX_MESSAGE_BYTES,
    MessageAttributes,
    MessageAttributeValue,
    QueueBackend,
    QueueInfo,
    QueueMessage,
    SendEntry,
    message_size,
)
from aiosqsq.codec import PayloadError
from aiosqsq.errors import CALL_FAILURES
from aiosqsq.message import ERROR_ATTRIBUTE, SOURCE_ATTRIBUTE

logger = logging.getLogger("aiosqsq.consumer")

_MAX_REASON_CHARS = 1024


def dead_letter_attributes(
    message: QueueMessage, queue_name: str, error: PayloadError
) -> MessageAttributes:
    """The sender's attributes plus aiosqsq's reason and source, where they fit: SQS allows
    10 attributes and 1 MiB of body and attributes, and the sender's own always stay."""
    attributes: MessageAttributes = dict(message.message_attributes)
    ours: dict[str, MessageAttributeValue] = {
        ERROR_ATTRIBUTE: {
            "DataType": "String",
            "StringValue": f"{error.error_class}: {error.reason}"[:_MAX_REASON_CHARS],
        },
        SOURCE_ATTRIBUTE: {
            "DataType": "String",
            "StringValue": f"{queue_name} {message.message_id}",
        },
    }
    for name, value in ours.items():
        with_it = {**attributes, name: value}
        if len(with_it) <= MAX_MESSAGE_ATTRIBUTES and (
            message_size(message.body, with_it) <= MAX_MESSAGE_BYTES
        ):
            attributes = with_it
    return attributes


async def copy_to_dead_letter_queue(
    backend: QueueBackend,
    message: QueueMessage,
    info: QueueInfo,
    dead_letter_queue_url: str,
    error: PayloadError,
) -> str | None:
    """Send a copy of ``message`` to the DLQ; return the copy's MessageId once SQS
    accepted it (None otherwise).

    A transient failure (throttling, 5xx, network) or a refusal returns None with one
    warning: the caller keeps the original instead, so nothing is lost.
    """
    entry = SendEntry(
        id="0",
        body=message.body,
        message_attributes=dead_letter_attributes(message, info.name, error),
        group_id=message.group_id,
        deduplication_id=message.message_id if info.fifo else None,
    )
    try:
        result = await backend.send_batch(dead_letter_queue_url, [entry])
    except CALL_FAILURES as exc:
        logger.warning("sending message %s to the DLQ failed: %s", message.message_id, exc)
        return None
    if not result.successful:
        failure = result.failed[0] if result.failed else None
        logger.warning(
            "sending message %s to the DLQ was refused: %s",
            message.message_id,
            f"{failure.code}: {failure.message}" if failure else "no outcome",
        )
        return None
    return result.message_ids.get("0")
