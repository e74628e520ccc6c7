"""What the memory backend refuses, as SQS's server does, where it depends on a queue's state.

* ``CreateQueue``: each attribute's documented range, FIFO naming, ``RedrivePolicy``;
* ``ReceiveMessage``: the ranges of its parameters (:func:`check_range`);
* ``SendMessageBatch``, per entry: the queue's ``MaximumMessageSize``, delays, FIFO group
  and deduplication ids (:func:`send_problem`);
* ``ChangeMessageVisibilityBatch``, per entry: the timeout's range, the newest receipt
  handle only, in flight only, the 12-hour cap (:func:`visibility_problem`).

Rules that hold for every queue (batch shape and size, body characters, message
attributes) live in :mod:`aiosqsq.backends.limits`, shared with the SQS backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiosqsq.backends.base import (
    MAX_DELAY_S,
    MAX_MESSAGE_BYTES,
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_TIME_S,
    SendEntry,
    VisibilityEntry,
    message_size,
)
from aiosqsq.backends.limits import SQS_NAME, message_problem
from aiosqsq.errors import BackendError

# Queue attribute -> (config field, lowest, highest), per CreateQueue's documented ranges.
_NUMERIC_ATTRIBUTES: Final = {
    "VisibilityTimeout": ("visibility_timeout_s", 0, MAX_VISIBILITY_TIMEOUT_S),
    "DelaySeconds": ("delay_s", 0, MAX_DELAY_S),
    "ReceiveMessageWaitTimeSeconds": ("wait_time_s", 0, MAX_WAIT_TIME_S),
    "MessageRetentionPeriod": ("retention_s", 60, 1_209_600),
    "MaximumMessageSize": ("max_message_bytes", 1024, MAX_MESSAGE_BYTES),
}
# Accepted and compared on re-creation, but without effect in memory.
_INERT_ATTRIBUTES: Final = frozenset(
    [
        "Policy",
        "RedriveAllowPolicy",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "SqsManagedSseEnabled",
        "DeduplicationScope",
        "FifoThroughputLimit",
    ]
)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue's attributes, parsed; two queues are "the same" when their configs are equal."""

    visibility_timeout_s: float = 30
    delay_s: float = 0
    wait_time_s: float = 0
    retention_s: float = 345_600
    max_message_bytes: float = MAX_MESSAGE_BYTES
    fifo: bool = False
    content_based_deduplication: bool = False
    dead_letter_queue: str | None = None  # a queue name
    max_receive_count: int | None = None
    inert: tuple[tuple[str, str], ...] = ()


#: Finds a dead-letter queue by ARN: its name and config, or None if there is none.
DeadLetterLookup = Callable[[str], tuple[str, QueueConfig] | None]


class StoredMessage(Protocol):
    """What the visibility rules read of a message the memory backend holds."""

    @property
    def message_id(self) -> str: ...
    @property
    def receipt_handle(self) -> str | None: ...  # the newest one issued
    @property
    def visible_at(self) -> float: ...
    @property
    def received_at(self) -> float: ...  # clock time of the newest receive


def invalid(message: str) -> BackendError:
    return BackendError("InvalidParameterValue", message)


def check_range(parameter: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise invalid(
            f"Value {value} for parameter {parameter} is invalid. "
            f"Reason: Must be between {low} and {high}."
        )


def parse_queue_attributes(
    name: str, attributes: Mapping[str, str], dead_letter_queue: DeadLetterLookup
) -> QueueConfig:
    """The config of queue ``name`` created with ``attributes``, or the error SQS raises."""
    values: dict[str, Any] = {}
    inert: list[tuple[str, str]] = []
    for key, value in attributes.items():
        if key in _NUMERIC_ATTRIBUTES:
            target, low, high = _NUMERIC_ATTRIBUTES[key]
            try:
                number = float(value)
            except ValueError:
                raise invalid(f"attribute {key}={value!r} is not a number") from None
            check_range(key, number, low, high)
            values[target] = number
        elif key in ("FifoQueue", "ContentBasedDeduplication"):
            if value.lower() not in ("true", "false"):
                raise invalid(f"attribute {key}={value!r} must be 'true' or 'false'")
            flag = "fifo" if key == "FifoQueue" else "content_based_deduplication"
            values[flag] = value.lower() == "true"
        elif key in _INERT_ATTRIBUTES:
            inert.append((key, value))
        elif key != "RedrivePolicy":
            raise BackendError("InvalidAttributeName", f"unknown queue attribute {key!r}")
    fifo = bool(values.get("fifo", False))
    if not SQS_NAME.fullmatch(name.removesuffix(".fifo")) or len(name) > 80:
        raise invalid(f"queue name {name!r} is not 1-80 characters of [A-Za-z0-9_-]")
    if fifo != name.endswith(".fifo"):
        raise invalid(
            f"queue name {name!r}: a queue is FIFO (FifoQueue=true) exactly when "
            "its name ends with '.fifo'"
        )
    if values.get("content_based_deduplication") and not fifo:
        raise invalid("ContentBasedDeduplication applies to FIFO queues only")
    if "RedrivePolicy" in attributes:
        values["dead_letter_queue"], values["max_receive_count"] = _parse_redrive(
            attributes["RedrivePolicy"], fifo, dead_letter_queue
        )
    return QueueConfig(**values, inert=tuple(sorted(inert)))


def _parse_redrive(policy: str, fifo: bool, dead_letter_queue: DeadLetterLookup) -> tuple[str, int]:
    problem = f"Value {policy} for parameter RedrivePolicy is invalid. Reason: "
    try:
        parsed = json.loads(policy)
        arn = str(parsed["deadLetterTargetArn"])
        max_receive_count = int(parsed["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        raise invalid(
            problem + "expected JSON with deadLetterTargetArn and maxReceiveCount"
        ) from None
    target = dead_letter_queue(arn)
    if target is None:
        raise invalid(problem + f"dead-letter target {arn} does not exist")
    dlq_name, dlq_config = target
    if dlq_config.fifo != fifo:
        raise invalid(problem + "the dead-letter queue must be of the same type (FIFO)")
    check_range("maxReceiveCount", max_receive_count, 1, 1000)
    return dlq_name, max_receive_count


def send_problem(entry: SendEntry, config: QueueConfig) -> tuple[str, str] | None:
    """(code, message) of the first reason SQS would refuse this entry, or None."""
    if (problem := message_problem(entry.body, entry.message_attributes)) is not None:
        return problem
    size = message_size(entry.body, entry.message_attributes)
    if size > config.max_message_bytes:
        return "InvalidParameterValue", (
            f"One or more parameters are invalid. Reason: Message must be shorter than "
            f"{int(config.max_message_bytes)} bytes (body and attributes); "
            f"it is {size} bytes."
        )
    if not 0 <= entry.delay_s <= MAX_DELAY_S:
        return "InvalidParameterValue", (
            f"Value {entry.delay_s} for parameter DelaySeconds is invalid. "
            f"Reason: DelaySeconds must be >= 0 and <= {MAX_DELAY_S}."
        )
    if not config.fifo:
        if entry.deduplication_id is not None:
            return "InvalidParameterValue", "MessageDeduplicationId applies to FIFO queues only"
        return None
    if entry.delay_s:
        return "InvalidParameterValue", (
            f"Value {entry.delay_s} for parameter DelaySeconds is invalid. Reason: "
            "FIFO queues take no per-message delay: set the queue's DelaySeconds instead."
        )
    if not entry.group_id:
        return "MissingParameter", "The request must contain the parameter MessageGroupId."
    if entry.deduplication_id is None and not config.content_based_deduplication:
        return "InvalidParameterValue", (
            "The queue should either have ContentBasedDeduplication enabled or "
            "MessageDeduplicationId provided explicitly"
        )
    return None


def visibility_timeout_problem(timeout_s: float) -> tuple[str, str] | None:
    """(code, message) if SQS refuses ``timeout_s`` as a VisibilityTimeout, or None."""
    if not 0 <= timeout_s <= MAX_VISIBILITY_TIMEOUT_S:
        return "InvalidParameterValue", (
            f"Value {timeout_s} for parameter VisibilityTimeout is invalid. "
            f"Reason: Must be between 0 and {MAX_VISIBILITY_TIMEOUT_S}."
        )
    return None


def visibility_problem(
    entry: VisibilityEntry, message: StoredMessage | None, now: float
) -> tuple[str, str] | None:
    """(code, message) if SQS refuses ``entry`` for ``message`` (the one its receipt handle,
    issued by this queue, names; None if that message is gone), or None.

    The 12-hour cap counts whole seconds from the receive that issued the newest handle.
    """
    if message is None:
        return (
            "ReceiptHandleIsInvalid",
            "Message does not exist or is not available for visibility timeout change",
        )
    if message.receipt_handle != entry.receipt_handle:
        return "InvalidParameterValue", (
            f"Value {entry.receipt_handle} for parameter ReceiptHandle is invalid. "
            "Reason: The receipt handle has expired."
        )
    if message.visible_at <= now:
        return (
            "AWS.SimpleQueueService.MessageNotInflight",
            f"message {message.message_id} is not in flight: its visibility timeout has lapsed",
        )
    timeout_s = entry.visibility_timeout_s
    if math.floor(now - message.received_at) + timeout_s > MAX_VISIBILITY_TIMEOUT_S:
        return "InvalidParameterValue", (
            f"Value {timeout_s} for parameter VisibilityTimeout is invalid. Reason: Total "
            f"VisibilityTimeout for the message is beyond the limit "
            f"[{MAX_VISIBILITY_TIMEOUT_S} seconds]"
        )
    return None
