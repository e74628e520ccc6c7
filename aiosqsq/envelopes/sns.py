"""The SNS envelope: a notification SNS delivered to an SQS subscription.

With raw message delivery off (SNS's default) the SQS body is a JSON document whose
``Message`` is what the publisher sent; with it on, the body is that message itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiosqsq.codec import PayloadError
from aiosqsq.envelopes.fields import ENVELOPE_ERROR, expect, optional, required, required_time

WHERE: Final = "SNS envelope"
_NOT_NOTIFICATIONS: Final = {
    "SubscriptionConfirmation": (
        "the subscription awaits confirmation: open the SubscribeURL in this message's "
        "body, or subscribe the queue from the topic owner's account"
    ),
    "UnsubscribeConfirmation": "the subscription was deleted; there is nothing to process",
}


@dataclass(frozen=True, slots=True)
class SNSMessageAttribute:
    """One SNS message attribute: ``type`` is String, String.Array, Number or Binary
    (a Binary ``value`` is base64 text)."""

    type: str
    value: str


@dataclass(frozen=True, slots=True)
class SNSMetadata:
    """What SNS says about a notification, next to its ``Message``.

    ``message_id`` is SNS's id (the same on SNS's own retries), not the SQS message's;
    ``subject`` is None when the publisher gave none.
    """

    type: str
    message_id: str
    topic_arn: str
    subject: str | None
    timestamp: datetime
    message_attributes: Mapping[str, SNSMessageAttribute]


def is_sns_envelope(data: Any) -> bool:
    """Whether parsed ``data`` is something SNS wrote: an object with a ``TopicArn`` and
    an SNS ``Type``. Anything else is taken for a raw-delivered message."""
    if type(data) is not dict or "TopicArn" not in data:
        return False
    kind = data.get("Type")
    return kind == "Notification" or (type(kind) is str and kind in _NOT_NOTIFICATIONS)


def read_notification(envelope: dict[str, Any]) -> tuple[SNSMetadata, str]:
    """The metadata and the ``Message`` of an object :func:`is_sns_envelope` accepted.

    Raises :class:`PayloadError` for a confirmation (not a notification) or a field that
    is missing or of the wrong type.
    """
    kind = envelope["Type"]
    if kind != "Notification":
        raise PayloadError(
            ENVELOPE_ERROR, f"{WHERE}: Type is {kind}, not Notification: {_NOT_NOTIFICATIONS[kind]}"
        )
    message = required(envelope, "Message", str, WHERE)
    metadata = SNSMetadata(
        type=kind,
        message_id=required(envelope, "MessageId", str, WHERE),
        topic_arn=required(envelope, "TopicArn", str, WHERE),
        subject=optional(envelope, "Subject", str, WHERE),
        timestamp=required_time(envelope, "Timestamp", WHERE),
        message_attributes=_attributes(optional(envelope, "MessageAttributes", dict, WHERE)),
    )
    return metadata, message


def _attributes(raw: dict[str, Any] | None) -> dict[str, SNSMessageAttribute]:
    if not raw:
        return {}
    where = f"{WHERE}: a MessageAttributes entry"
    attributes = {}
    for name, value in raw.items():
        entry = expect(value, dict, where)
        attributes[name] = SNSMessageAttribute(
            type=required(entry, "Type", str, where), value=required(entry, "Value", str, where)
        )
    return attributes
