"""Receives ask for full batches at saturation: the request cost stays at its floor."""

from __future__ import annotations

from typing import Any

import pytest

from aiosqsq import Message, Retry
from aiosqsq.backends.base import QueueMessage
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester
from tests.helpers import make_app, make_queue


class _CountingBackend(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.receives: list[tuple[int, int]] = []  # (asked, got)

    async def receive(self, queue_url: str, **options: Any) -> list[QueueMessage]:
        messages = await super().receive(queue_url, **options)
        if messages:
            self.receives.append((options["max_messages"], len(messages)))
        return messages


@pytest.mark.parametrize(("concurrency", "batch"), [(8, 8), (32, 10), (100, 10)])
async def test_receives_ask_for_full_batches_when_handlers_finish_fast(
    concurrency: int, batch: int
) -> None:
    backend = _CountingBackend()
    await make_queue(backend)
    app = make_app(backend, concurrency=concurrency, retry_base_delay=0)

    @app.handler()
    async def handle(body: str, message: Message) -> None:
        if message.receive_count == 1 and int(body) % 50 == 0:
            raise Retry(0)  # 2% fail once, as at the floor's benchmark

    await app.send_batch([str(i) for i in range(1000)])
    drained = await AppTester(app).drain()

    assert len(drained.succeeded) == 1000
    asked = [a for a, _ in backend.receives]
    # All but the last few receives of the drain ask for a full batch.
    assert sum(a == batch for a in asked) >= len(asked) - 3, asked
