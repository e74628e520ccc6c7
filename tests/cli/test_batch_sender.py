"""``send_batch`` accounts for every entry: once part of a batch was sent, a refusal of a
later request fails the entries left instead of raising (raising means nothing was sent)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from aiosqsq.backends.base import BatchFailure, BatchResult, SendEntry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.cli.batch_sender import send_batch
from aiosqsq.errors import BackendError, QueueNotFoundError


class _GoneAfterFirst(MemoryBackend):
    """Sends the first entry of the first request and fails the rest for a reason of
    SQS's own (to be retried); every later request finds the queue gone."""

    calls = 0

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        self.calls += 1
        if self.calls > 1:
            raise QueueNotFoundError("orders", "SendMessageBatch")
        sent = await super().send_batch(queue_url, entries[:1])
        failed = tuple(BatchFailure(e.id, "InternalError", "try again", False) for e in entries[1:])
        return BatchResult(sent.successful, failed, sent.message_ids)


def _sent(backend: MemoryBackend, batch: list[SendEntry]) -> BatchResult:
    async def go() -> BatchResult:
        try:
            url = await backend.create_queue("orders")
            return await send_batch(backend, url, batch)
        finally:
            await backend.aclose()

    return anyio.run(go)


def test_a_refused_retry_fails_the_entries_left() -> None:
    result = _sent(_GoneAfterFirst(), [SendEntry("1", '"a"'), SendEntry("2", '"b"')])
    assert result.successful == ("1",)
    assert [(f.id, f.code) for f in result.failed] == [
        ("2", "AWS.SimpleQueueService.NonExistentQueue")
    ]


class _RefusedWholeThenGone(MemoryBackend):
    """Refuses a batch of several for one message's content (as some servers do), sends
    the first entry alone, then finds the queue gone."""

    singles = 0

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        if len(entries) > 1:
            raise BackendError("AWS.SimpleQueueService.InvalidParameterValue", "one is bad")
        self.singles += 1
        if self.singles > 1:
            raise QueueNotFoundError("orders", "SendMessageBatch")
        return await super().send_batch(queue_url, entries)


def test_a_refused_lone_send_after_one_was_sent_fails_the_entries_left() -> None:
    batch = [SendEntry("1", '"a"'), SendEntry("2", '"b"'), SendEntry("3", '"c"')]
    result = _sent(_RefusedWholeThenGone(), batch)
    assert result.successful == ("1",)
    assert [f.id for f in result.failed] == ["2", "3"]


def test_a_refused_first_request_raises() -> None:
    class Gone(MemoryBackend):
        async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
            raise QueueNotFoundError("orders", "SendMessageBatch")

    with pytest.raises(BackendError):
        _sent(Gone(), [SendEntry("1", '"a"')])
