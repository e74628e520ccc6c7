"""Test your handlers on the memory backend: send, drain until idle, read the fates.

::

    app = App(QueueSettings(backend="memory", retry_base_delay=0))

    async def test_orders() -> None:
        tester = AppTester(app)
        await tester.send({"id": 1})
        drained = await tester.drain()
        assert [m.message_id for m in drained.succeeded] == [...]

:meth:`AppTester.drain` runs the app in burst mode: it returns once every queue has no
visible message and nothing is held, with no sleeps. A message retried with a delay
stays hidden and is reported in ``retried``; with ``retry_base_delay=0`` failures come
back at once, so a drain runs them until the queue's redrive moves them to the DLQ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from aiosqsq.app import App
from aiosqsq.backends.base import QueueDepth, QueueMessage, VisibilityEntry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.engine.settle import Fate
from aiosqsq.message import ERROR_ATTRIBUTE


@dataclass
class Drained:
    """What one :meth:`AppTester.drain` saw happen, in order, per fate."""

    succeeded: list[QueueMessage] = field(default_factory=list)
    retried: list[QueueMessage] = field(default_factory=list)
    dead_lettered: list[QueueMessage] = field(default_factory=list)
    released: list[QueueMessage] = field(default_factory=list)

    def record(self, fate: Fate, message: QueueMessage) -> None:
        getattr(self, fate).append(message)


class AppTester:
    """Drives an :class:`~aiosqsq.App` on the memory backend from a test."""

    def __init__(self, app: App, *, backend: MemoryBackend | None = None) -> None:
        """Run ``app`` on ``backend`` (a new MemoryBackend by default) instead of the
        backend its settings name, keeping every other setting; an app already built on
        a MemoryBackend keeps it."""
        current = app.service.backend
        if backend is None and isinstance(current, MemoryBackend):
            backend = current
        if backend is not current:
            app.use_backend(backend or MemoryBackend())
        app.quiet_memory_warning()
        self.app = app

    async def send(self, payload: Any, queue: str | None = None, **options: Any) -> str:
        """Send like :meth:`App.send`; return the MessageId."""
        return await self.app.send(payload, queue, **options)

    async def drain(self, *, timeout_s: float = 30.0) -> Drained:
        """Consume until every queue is empty and nothing is held; return the fates.

        Raises TimeoutError if that takes longer than ``timeout_s`` (a handler that
        never returns, or one that always retries at once with no redrive policy).
        """
        drained = Drained()
        self.app.add_observer(drained.record)
        try:
            with anyio.fail_after(timeout_s):
                await self.app.serve(burst=True)
        finally:
            self.app.remove_observer(drained.record)
        return drained

    async def depth(self, queue: str | None = None) -> QueueDepth:
        """Visible, in-flight and delayed counts of ``queue``."""
        backend = self.app.service.backend
        return await backend.get_queue_depth(await self.app.service.queue_url(queue))

    async def dead_letters(self, queue: str | None = None) -> list[QueueMessage]:
        """The messages now in ``queue``'s dead-letter queue (left there, visible)."""
        backend = self.app.service.backend
        info = await backend.get_queue_info(await self.app.service.queue_url(queue))
        if info.dead_letter_queue_url is None:
            return []
        found: dict[str, QueueMessage] = {}
        while batch := await backend.receive(
            info.dead_letter_queue_url, max_messages=10, wait_time_s=0
        ):
            found.update((m.message_id, m) for m in batch)
        handles = [m.receipt_handle for m in found.values()]
        for start in range(0, len(handles), 10):
            await backend.change_visibility_batch(
                info.dead_letter_queue_url,
                [VisibilityEntry(str(i), h, 0) for i, h in enumerate(handles[start : start + 10])],
            )
        return list(found.values())


def error_of(message: QueueMessage) -> str | None:
    """The reason aiosqsq recorded on a dead-lettered message, if any."""
    value: Mapping[str, Any] | None = message.message_attributes.get(ERROR_ATTRIBUTE)
    return None if value is None else value.get("StringValue")
