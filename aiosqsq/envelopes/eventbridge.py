"""The EventBridge envelope: an event an EventBridge rule sent to an SQS target.

The event's ``detail`` (always a JSON object) is the payload; its top-level fields say
where and when the event happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiosqsq.envelopes.fields import expect, required, required_time

WHERE: Final = "EventBridge envelope"


@dataclass(frozen=True, slots=True)
class EventBridgeMetadata:
    """An EventBridge event's top-level fields (``detail-type`` as ``detail_type``)."""

    source: str
    detail_type: str
    id: str
    time: datetime
    account: str
    region: str
    resources: tuple[str, ...]


def read_event(event: Any, where: str = WHERE) -> tuple[EventBridgeMetadata, dict[str, Any]]:
    """The metadata and the ``detail`` object of a parsed event.

    Raises :class:`~aiosqsq.codec.PayloadError` when ``event`` is not an object, or a
    field is missing or of the wrong type.
    """
    event = expect(event, dict, where)
    detail_type = required(event, "detail-type", str, where)
    source = required(event, "source", str, where)
    detail = required(event, "detail", dict, where)
    resources = required(event, "resources", list, where)
    metadata = EventBridgeMetadata(
        source=source,
        detail_type=detail_type,
        id=required(event, "id", str, where),
        time=required_time(event, "time", where),
        account=required(event, "account", str, where),
        region=required(event, "region", str, where),
        resources=tuple(expect(arn, str, f"{where}: a resources entry") for arn in resources),
    )
    return metadata, detail
