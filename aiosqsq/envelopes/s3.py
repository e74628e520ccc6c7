"""S3 event notifications, as S3 sends them to a queue or topic, or through EventBridge.

Sent to SQS or SNS, a notification is ``{"Records": [...]}`` with each object key
URL-encoded (``+`` for a space, ``%XX`` for UTF-8 bytes); through EventBridge it is one
event per object, its key as it is. Both become :class:`S3Record` values with the key
decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote_plus

from aiosqsq.codec import PayloadError
from aiosqsq.envelopes.eventbridge import EventBridgeMetadata, read_event
from aiosqsq.envelopes.fields import ENVELOPE_ERROR, expect, optional, required, required_time

WHERE: Final = "S3 notification"
VIA_EVENTBRIDGE: Final = "S3 event via EventBridge"


@dataclass(frozen=True, slots=True)
class S3Record:
    """One object event.

    ``event_name`` is S3's own (``ObjectCreated:Put``, ``ObjectRemoved:Delete``, ...) or,
    through EventBridge, the detail-type (``Object Created``, ``Object Deleted``, ...), with
    the operation in ``reason`` (``PutObject``, ``DeleteObject``...; None otherwise).
    ``size`` and ``etag`` are None for deletions; ``version_id`` is None in an unversioned
    bucket; ``sequencer`` orders events of one key (compare as hex of equal length).
    """

    bucket: str
    key: str
    size: int | None
    etag: str | None
    event_name: str
    event_time: datetime
    sequencer: str | None
    version_id: str | None
    region: str
    reason: str | None = None


def is_test_event(notification: dict[str, Any]) -> bool:
    """Whether ``notification`` is the ``s3:TestEvent`` S3 sends when a bucket's
    notification configuration is saved: no object behind it."""
    return notification.get("Event") == "s3:TestEvent"


def read_records(notification: dict[str, Any]) -> tuple[S3Record, ...]:
    """The records of a ``{"Records": [...]}`` notification, keys decoded.

    Raises :class:`PayloadError` naming the first record and field that is missing or
    of the wrong type, or a record whose ``eventSource`` is not ``aws:s3``.
    """
    records = required(notification, "Records", list, WHERE)
    return tuple(_record(raw, index) for index, raw in enumerate(records))


def read_eventbridge_record(event: dict[str, Any]) -> tuple[EventBridgeMetadata, S3Record]:
    """The metadata and the one record of an EventBridge event from ``aws.s3``."""
    metadata, detail = read_event(event, VIA_EVENTBRIDGE)
    if metadata.source != "aws.s3":
        raise PayloadError(ENVELOPE_ERROR, f"{VIA_EVENTBRIDGE}: field 'source' must be 'aws.s3'")
    where = f"{VIA_EVENTBRIDGE}: detail"
    bucket = required(detail, "bucket", dict, where)
    obj = required(detail, "object", dict, where)
    where_object = f"{where}.object"
    record = S3Record(
        bucket=required(bucket, "name", str, f"{where}.bucket"),
        key=required(obj, "key", str, where_object),  # EventBridge does not URL-encode keys
        size=_size(obj, where_object),
        etag=optional(obj, "etag", str, where_object),
        event_name=metadata.detail_type,
        event_time=metadata.time,
        sequencer=optional(obj, "sequencer", str, where_object),
        version_id=optional(obj, "version-id", str, where_object),
        region=metadata.region,
        reason=optional(detail, "reason", str, where),
    )
    return metadata, record


def _record(raw: Any, index: int) -> S3Record:
    where = f"{WHERE}: Records[{index}]"
    record = expect(raw, dict, where)
    if required(record, "eventSource", str, where) != "aws:s3":
        raise PayloadError(ENVELOPE_ERROR, f"{where}: field 'eventSource' must be 'aws:s3'")
    s3 = required(record, "s3", dict, where)
    bucket = required(s3, "bucket", dict, f"{where}.s3")
    obj = required(s3, "object", dict, f"{where}.s3")
    where_object = f"{where}.s3.object"
    return S3Record(
        bucket=required(bucket, "name", str, f"{where}.s3.bucket"),
        key=_decode_key(required(obj, "key", str, where_object), where_object),
        size=_size(obj, where_object),
        etag=optional(obj, "eTag", str, where_object),
        event_name=required(record, "eventName", str, where),
        event_time=required_time(record, "eventTime", where),
        sequencer=optional(obj, "sequencer", str, where_object),
        version_id=optional(obj, "versionId", str, where_object),
        region=required(record, "awsRegion", str, where),
    )


def _decode_key(key: str, where: str) -> str:
    """S3's form encoding undone: ``my+folder/caf%C3%A9.txt`` is ``my folder/café.txt``."""
    try:
        return unquote_plus(key, errors="strict")
    except UnicodeDecodeError:
        raise PayloadError(
            ENVELOPE_ERROR, f"{where}: field 'key' is not URL-encoded UTF-8"
        ) from None


def _size(obj: dict[str, Any], where: str) -> int | None:
    size = optional(obj, "size", int, where)
    if size is not None and size < 0:
        raise PayloadError(ENVELOPE_ERROR, f"{where}: field 'size' must not be negative")
    return size
