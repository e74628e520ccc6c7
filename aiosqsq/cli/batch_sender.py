"""Send many messages in batches without losing track of any: which were sent, which SQS
refused, and why. Used by ``aiosqsq send --file`` and by the copying ``dlq redrive``.

* :func:`pack` (from :mod:`aiosqsq.backends.limits`) groups entries into batches of at
  most 10 entries and 1 MiB, SQS's caps: the one packing rule the producer shares.
* :func:`send_batch` sends one batch. Entries SQS fails for a reason of its own (not the
  sender's fault) are sent again, up to :data:`ENTRY_ATTEMPTS` times in all. When SQS
  refuses a whole batch for the content of one of its messages (some servers refuse the
  request rather than the entry), each entry is sent alone to tell the bad one apart.
  Any other refusal of the whole request (the queue is gone, access denied) is raised.

Each entry is sent until it succeeds or fails once for good: a success is never resent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import anyio

from aiosqsq.backends.base import (
    BatchFailure,
    BatchResult,
    QueueBackend,
    SendEntry,
)
from aiosqsq.backends.limits import CODE_PREFIX
from aiosqsq.errors import BackendError, QueueNotFoundError

ENTRY_ATTEMPTS: Final = 3
_RETRY_DELAY_S: Final = 0.2  # doubled after each attempt
# Refusals of a whole SendMessageBatch that are about a message in it, not the request.
_CONTENT_REFUSALS: Final = frozenset(
    {
        "InvalidParameterValue",
        "InvalidMessageContents",
        "MissingParameter",
        "InvalidAttributeValue",
        "BatchRequestTooLong",
    }
)


async def send_batch(
    backend: QueueBackend, queue_url: str, batch: Sequence[SendEntry]
) -> BatchResult:
    """Send ``batch`` (ids unique within it); every entry ends successful or failed.

    Raises :class:`~aiosqsq.errors.BackendError` when SQS refuses the request as a whole
    for a reason that is not one message's content; nothing of ``batch`` was sent then.
    """
    try:
        result = await backend.send_batch(queue_url, batch)
    except QueueNotFoundError:
        raise
    except BackendError as exc:
        if exc.code.removeprefix(CODE_PREFIX) not in _CONTENT_REFUSALS:
            raise
        if len(batch) == 1:
            return BatchResult(failed=(BatchFailure(batch[0].id, exc.code, exc.message, True),))
        return _merge([await send_batch(backend, queue_url, [entry]) for entry in batch])
    by_id = {entry.id: entry for entry in batch}
    delay_s = _RETRY_DELAY_S
    for _ in range(ENTRY_ATTEMPTS - 1):
        again = [by_id[failure.id] for failure in result.failed if not failure.sender_fault]
        if not again:
            break
        await anyio.sleep(delay_s)
        delay_s *= 2
        retried = await backend.send_batch(queue_url, again)
        final = tuple(failure for failure in result.failed if failure.sender_fault)
        result = _merge([BatchResult(result.successful, final, result.message_ids), retried])
    return result


def _merge(results: Sequence[BatchResult]) -> BatchResult:
    return BatchResult(
        successful=tuple(entry_id for result in results for entry_id in result.successful),
        failed=tuple(failure for result in results for failure in result.failed),
        message_ids={k: v for result in results for k, v in result.message_ids.items()},
    )
