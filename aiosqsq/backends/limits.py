"""SQS's request rules that hold for every queue, written once for every backend.

Both backends check a batch before anything is sent: at most 10 entries, at least one,
ids of 1-80 characters from ``[A-Za-z0-9_-]`` and unique within the request, and for
``SendMessageBatch`` at most 1 MiB of bodies and attributes in all. A batch that breaks
one is refused whole with the :class:`~aiosqsq.errors.BatchRequestError` SQS itself
returns (code ``AWS.SimpleQueueService.<Code>``), whatever the endpoint.

:func:`message_problem` holds the per-message rules that do not depend on the queue (body
characters, message attributes). SQS's server applies them per entry; the memory backend
applies them as it does, and the SQS backend leaves them to SQS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from aiosqsq.backends.base import (
    MAX_BATCH_ENTRIES,
    MAX_MESSAGE_ATTRIBUTES,
    MAX_MESSAGE_BYTES,
    DeleteEntry,
    MessageAttributes,
    SendEntry,
    VisibilityEntry,
    message_size,
)
from aiosqsq.errors import BatchRequestError

# The query protocol's prefix of SQS's own error codes.
CODE_PREFIX: Final = "AWS.SimpleQueueService."
# Batch entry ids, and queue names without ".fifo".
SQS_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,80}")
# SQS accepts only these characters in a body (XML 1.0's Char production).
_FORBIDDEN_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTRIBUTE_TYPES: Final = ("Binary", "String", "Number")


def check_batch(
    operation: str, entries: Sequence[DeleteEntry | VisibilityEntry | SendEntry]
) -> None:
    """Raise :class:`BatchRequestError` if SQS would refuse this batch whole."""
    if not entries:
        raise BatchRequestError(
            f"{CODE_PREFIX}EmptyBatchRequest", f"{operation}: a batch needs at least one entry"
        )
    if len(entries) > MAX_BATCH_ENTRIES:
        raise BatchRequestError(
            f"{CODE_PREFIX}TooManyEntriesInBatchRequest",
            f"{operation}: {len(entries)} entries; SQS allows at most {MAX_BATCH_ENTRIES}",
        )
    seen: set[str] = set()
    for entry in entries:
        if not SQS_NAME.fullmatch(entry.id):
            raise BatchRequestError(
                f"{CODE_PREFIX}InvalidBatchEntryId",
                f"{operation}: entry id {entry.id!r} is invalid: expected 1-80 characters "
                "from A-Z, a-z, 0-9, '-' and '_'",
            )
        if entry.id in seen:
            raise BatchRequestError(
                f"{CODE_PREFIX}BatchEntryIdsNotDistinct",
                f"{operation}: entry id {entry.id!r} is repeated; ids must be unique per request",
            )
        seen.add(entry.id)


def batch_has_room(count: int, size: int, entry_size: int) -> bool:
    """Whether an entry of ``entry_size`` bytes (body and attributes) still fits in a
    ``SendMessageBatch`` that holds ``count`` entries of ``size`` bytes: SQS caps a batch at
    10 entries and 1 MiB in all."""
    return count < MAX_BATCH_ENTRIES and size + entry_size <= MAX_MESSAGE_BYTES


def pack(entries: Iterable[SendEntry]) -> Iterator[list[SendEntry]]:
    """Consecutive batches of at most 10 entries and 1 MiB of bodies and attributes,
    taken from ``entries`` as they come (one entry ahead of the batch yielded).

    Entry ids are kept: they must be unique within each batch (SQS takes up to 80 of
    A-Z, a-z, 0-9, '-' and '_'). An entry over 1 MiB alone goes in a batch of its own, for
    SQS to refuse.
    """
    batch: list[SendEntry] = []
    size = 0
    for entry in entries:
        entry_size = message_size(entry.body, entry.message_attributes)
        if batch and not batch_has_room(len(batch), size, entry_size):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch


def check_send_batch(entries: Sequence[SendEntry]) -> None:
    """:func:`check_batch`, then SQS's cap on the whole request's size.

    SQS refuses a batch whose entries (bodies and attributes) total over 1 MiB whole
    (``BatchRequestTooLong``), even when one entry alone is what is too big.
    """
    check_batch("SendMessageBatch", entries)
    size = sum(message_size(entry.body, entry.message_attributes) for entry in entries)
    if size > MAX_MESSAGE_BYTES:
        raise BatchRequestError(
            f"{CODE_PREFIX}BatchRequestTooLong",
            f"SendMessageBatch: Batch requests cannot be longer than {MAX_MESSAGE_BYTES} bytes "
            f"of bodies and attributes. You have sent {size} bytes.",
        )


def message_problem(body: str, attributes: MessageAttributes) -> tuple[str, str] | None:
    """(code, message) of the first queue-independent reason SQS refuses a message, or None."""
    if not body:
        return "InvalidParameterValue", "the message body must not be empty"
    if (match := _FORBIDDEN_CHAR.search(body)) is not None:
        return "InvalidMessageContents", (
            f"Invalid characters found: the body holds {match.group()!r} at offset "
            f"{match.start()}, outside #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF"
        )
    if (problem := _attributes_problem(attributes)) is not None:
        return "InvalidParameterValue", problem
    return None


def _attributes_problem(attributes: MessageAttributes) -> str | None:
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        return f"a message has at most {MAX_MESSAGE_ATTRIBUTES} attributes, not {len(attributes)}"
    for name, value in attributes.items():
        kind = value["DataType"].split(".", 1)[0]
        if kind == "Binary" and "BinaryValue" not in value:
            return f"message attribute {name!r} of type Binary needs a BinaryValue"
        if kind in ("String", "Number") and not value.get("StringValue"):
            return f"message attribute {name!r} of type {kind} needs a non-empty StringValue"
        if kind not in _ATTRIBUTE_TYPES:
            return (
                f"message attribute {name!r} has type {value['DataType']!r}: "
                "use String, Number or Binary"
            )
    return None
