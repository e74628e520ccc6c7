"""FIFO queues: one message per group at a time, in order, groups in parallel."""

from __future__ import annotations

import anyio
import pytest

from aiosqsq import Message
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester
from tests.helpers import make_app, make_queue, slow


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


async def test_order_per_group_is_kept_when_a_message_fails(backend: MemoryBackend) -> None:
    await make_queue(backend, "events", fifo=True)
    app = make_app(backend, sqs_queue_url="events.fifo", retry_base_delay=0, concurrency=10)
    order: list[str] = []
    running: dict[str, int] = {}
    overlap: list[str] = []

    @app.handler()
    async def handle(payload: str, message: Message) -> None:
        group = message.group_id or ""
        running[group] = running.get(group, 0) + 1
        if running[group] > 1:
            overlap.append(payload)
        await anyio.sleep(0.001)
        running[group] -= 1
        order.append(f"{payload}#{message.receive_count}")
        if payload == "a2" and message.receive_count == 1:
            raise RuntimeError("a2 fails once")

    for i in range(1, 6):
        for group in ("a", "b"):
            await app.send(f"{group}{i}", group_id=group, deduplication_id=f"{group}{i}")
    await AppTester(app).drain()

    assert overlap == []
    a_order = [item for item in order if item.startswith("a")]
    b_order = [item for item in order if item.startswith("b")]
    assert a_order == ["a1#1", "a2#1", "a2#2", "a3#2", "a4#2", "a5#2"]
    assert b_order == ["b1#1", "b2#1", "b3#1", "b4#1", "b5#1"]
    assert app.statistics().released == 3  # a3..a5 handed back unhandled after a2 failed


async def test_groups_run_in_parallel(backend: MemoryBackend) -> None:
    await make_queue(backend, "events", fifo=True)
    app = make_app(backend, sqs_queue_url="events.fifo")
    both_started = anyio.Event()
    started: set[str] = set()

    @app.handler()
    async def handle(payload: str, message: Message) -> None:
        started.add(payload)
        if len(started) == 2:
            both_started.set()
        with anyio.fail_after(slow(5)):  # deadlocks if the groups ran one after the other
            await both_started.wait()

    await app.send("x", group_id="x", deduplication_id="x")
    await app.send("y", group_id="y", deduplication_id="y")
    drained = await AppTester(app).drain()
    assert len(drained.succeeded) == 2
