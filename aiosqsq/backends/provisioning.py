"""Creating a queue the way a well-configured SQS queue is: with a dead-letter queue.

The memory backend's queues made on first use, ``aiosqsq run --local`` and ``aiosqsq
queues create`` all make ``<name>-dlq`` (``<name>-dlq.fifo`` for a FIFO queue) and a
redrive policy after :data:`DEFAULT_MAX_RECEIVE_COUNT` receives.
"""

from __future__ import annotations

import json
from typing import Final

from aiosqsq.backends.base import QueueBackend

DEFAULT_MAX_RECEIVE_COUNT: Final = 5  # AWS's usual advice for maxReceiveCount


def dead_letter_queue_name(name: str) -> str:
    """``orders`` -> ``orders-dlq``; ``orders.fifo`` -> ``orders-dlq.fifo`` (SQS requires
    a FIFO queue's dead-letter queue to be FIFO)."""
    fifo = name.endswith(".fifo")
    return f"{name.removesuffix('.fifo')}-dlq" + (".fifo" if fifo else "")


def redrive_policy(dead_letter_arn: str, max_receive_count: int) -> str:
    """The ``RedrivePolicy`` attribute moving messages to ``dead_letter_arn``."""
    return json.dumps(
        {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receive_count}
    )


async def create_with_dead_letter_queue(
    backend: QueueBackend,
    name: str,
    *,
    visibility_timeout_s: int | None = None,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
) -> tuple[str, str]:
    """Create ``name`` and its dead-letter queue (both kept if they exist with the same
    attributes, as CreateQueue does); return their URLs. Raises BackendError as
    CreateQueue does, for example when an existing queue has other attributes."""
    base = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    dead_letter_url = await backend.create_queue(dead_letter_queue_name(name), base)
    dead_letter_arn = (await backend.get_queue_info(dead_letter_url)).arn
    attributes = {**base, "RedrivePolicy": redrive_policy(dead_letter_arn, max_receive_count)}
    if visibility_timeout_s is not None:
        attributes["VisibilityTimeout"] = str(visibility_timeout_s)
    return await backend.create_queue(name, attributes), dead_letter_url
