"""SQS's request and response shapes, to and from :mod:`aiosqsq.backends.base`'s types.

Responses are read defensively: a field of the wrong type reads as empty (``text``,
``mapping``, ``items``) rather than raising, because an endpoint that is not quite SQS
(a proxy, an emulator) must not crash a poller. Server text in failed entries is
scrubbed of key material (:func:`aiosqsq.redaction.scrub`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiosqsq.backends.base import (
    BatchFailure,
    BatchResult,
    MessageAttributes,
    MessageAttributeValue,
    QueueMessage,
    SendEntry,
)
from aiosqsq.redaction import scrub


def send_entry(entry: SendEntry) -> dict[str, Any]:
    """One ``SendMessageBatch`` entry; ``delay_s=0`` leaves ``DelaySeconds`` out."""
    raw: dict[str, Any] = {"Id": entry.id, "MessageBody": entry.body}
    if entry.delay_s:
        raw["DelaySeconds"] = entry.delay_s
    if entry.message_attributes:
        raw["MessageAttributes"] = {
            name: dict(value) for name, value in entry.message_attributes.items()
        }
    if entry.group_id is not None:
        raw["MessageGroupId"] = entry.group_id
    if entry.deduplication_id is not None:
        raw["MessageDeduplicationId"] = entry.deduplication_id
    return raw


def queue_message(queue_url: str, raw: Mapping[str, Any]) -> QueueMessage:
    """One received message of ``ReceiveMessage``'s ``Messages``."""
    # Run for every message received: positional arguments and plain copies (see
    # _string_map) keep it to about a microsecond.
    message_attributes = raw.get("MessageAttributes")
    return QueueMessage(
        queue_url,
        text(raw, "MessageId"),
        text(raw, "ReceiptHandle"),
        text(raw, "Body"),
        _string_map(raw.get("Attributes")),
        _message_attributes(message_attributes)
        if message_attributes and isinstance(message_attributes, Mapping)
        else {},
    )


def _string_map(value: object) -> dict[str, str]:
    """``value`` as a new dict of strings; botocore's parsed maps already hold only strings,
    so that is a plain copy after a check."""
    if not isinstance(value, Mapping):
        return {}
    copied = dict(value)
    for key, item in copied.items():
        if type(key) is not str or type(item) is not str:
            return {str(k): str(v) for k, v in copied.items()}
    return copied


def _message_attributes(raw: Mapping[str, Any]) -> MessageAttributes:
    attributes: dict[str, MessageAttributeValue] = {}
    for name, value in raw.items():
        if not isinstance(value, Mapping):
            continue
        attribute = MessageAttributeValue(DataType=str(value.get("DataType", "String")))
        if isinstance(value.get("StringValue"), str):
            attribute["StringValue"] = value["StringValue"]
        if isinstance(value.get("BinaryValue"), bytes | bytearray):
            attribute["BinaryValue"] = bytes(value["BinaryValue"])
        attributes[str(name)] = attribute
    return attributes


def batch_result(response: Mapping[str, Any], *, message_ids: bool = False) -> BatchResult:
    """A batch call's ``Successful`` and ``Failed`` entries (and, for a send, the ids)."""
    successful = items(response, "Successful")
    return BatchResult(
        successful=tuple(text(entry, "Id") for entry in successful),
        failed=tuple(
            BatchFailure(
                id=text(entry, "Id"),
                code=text(entry, "Code"),
                message=scrub(text(entry, "Message")),
                sender_fault=entry.get("SenderFault") is True,
            )
            for entry in items(response, "Failed")
        ),
        message_ids=(
            {text(entry, "Id"): text(entry, "MessageId") for entry in successful}
            if message_ids
            else {}
        ),
    )


def sibling_url(queue_url: str, queue_arn: str, other_arn: str) -> str | None:
    """The URL of the queue ``other_arn`` when it is in ``queue_arn``'s partition, region
    and account and ``queue_url`` has SQS's ``.../ACCOUNT/NAME`` form; else None."""
    ours, theirs = queue_arn.split(":", 5), other_arn.split(":", 5)
    if len(ours) != 6 or len(theirs) != 6 or ours[:5] != theirs[:5]:
        return None
    base, account, name = queue_url.rstrip("/").rsplit("/", 2)
    if (account, name) != (ours[4], ours[5]):
        return None
    return f"{base}/{account}/{theirs[5]}"


def redrive_policy(policy: str | None) -> tuple[str | None, int | None]:
    """(deadLetterTargetArn, maxReceiveCount) from a RedrivePolicy, or (None, None) when
    there is none. Raises :class:`ValueError` when it is not JSON of SQS's shape."""
    if not policy:
        return None, None
    try:
        parsed = json.loads(policy)
        target = parsed["deadLetterTargetArn"]
        count = int(parsed["maxReceiveCount"])  # SQS returns it as a string or a number
    except (ValueError, TypeError, KeyError):
        raise ValueError("RedrivePolicy is not JSON of SQS's shape") from None
    return (target if isinstance(target, str) else None), count


def mapping(value: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``value[key]`` if it is a mapping, else an empty one."""
    item = value.get(key)
    return item if isinstance(item, Mapping) else {}


def items(value: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """The mappings in the list ``value[key]`` (none when it is not a list)."""
    item = value.get(key)
    if not isinstance(item, list):
        return []
    return [entry for entry in item if isinstance(entry, Mapping)]


def text(value: Mapping[str, Any], key: str) -> str:
    """``value[key]`` if it is a string, else ``""``."""
    item = value.get(key)
    return item if isinstance(item, str) else ""
