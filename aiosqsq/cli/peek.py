"""Look at messages without consuming them: receive, then hand them back at once.

SQS has no "peek": reading a message is receiving it. :func:`peeking` receives up to
``limit`` messages, hidden for :data:`HOLD_S` so that one run does not see a message twice,
and makes all of them visible again (visibility timeout 0) as soon as the caller is done,
on an error or Ctrl-C too. What it costs: each message's receive count goes up by one,
and a FIFO queue's groups are locked while the messages are held. If the process is
killed, SQS makes them visible again once :data:`HOLD_S` has passed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Final

import anyio

from aiosqsq.backends.base import MAX_RECEIVE_MESSAGES, QueueBackend, QueueMessage, VisibilityEntry
from aiosqsq.cli.ops import chunks
from aiosqsq.errors import BackendError

HOLD_S: Final = 60
# A receive waits this long for messages: long enough that SQS asks all its servers (a
# short poll samples some and can answer "empty" for a queue that is not).
RECEIVE_WAIT_S: Final = 1
_HAND_BACK_TIMEOUT_S: Final = 10.0

logger = logging.getLogger("aiosqsq.cli")


@contextlib.asynccontextmanager
async def peeking(
    backend: QueueBackend, queue_url: str, limit: int
) -> AsyncIterator[list[QueueMessage]]:
    """Up to ``limit`` messages of the queue, each once; visible again on exit."""
    held: list[QueueMessage] = []
    try:
        while len(held) < limit:
            batch = await backend.receive(
                queue_url,
                max_messages=min(MAX_RECEIVE_MESSAGES, limit - len(held)),
                wait_time_s=RECEIVE_WAIT_S,
                visibility_timeout_s=HOLD_S,
            )
            if not batch:
                break
            held.extend(batch)
        yield held
    finally:
        await hand_back(backend, queue_url, held)


async def hand_back(
    backend: QueueBackend, queue_url: str, messages: Sequence[QueueMessage]
) -> None:
    """Make ``messages`` visible again now; shielded from cancellation, so that Ctrl-C
    still hands them back. A message SQS refuses is visible once its timeout runs out."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(_HAND_BACK_TIMEOUT_S):
        for batch in chunks(messages):
            entries = [VisibilityEntry(str(i), m.receipt_handle, 0) for i, m in enumerate(batch)]
            try:
                result = await backend.change_visibility_batch(queue_url, entries)
            except BackendError as exc:
                logger.warning("%d messages stay hidden up to %d s: %s", len(batch), HOLD_S, exc)
                continue
            if result.failed:
                logger.warning(
                    "%d messages stay hidden up to %d s: %s",
                    len(result.failed),
                    HOLD_S,
                    result.failed[0].message,
                )
