"""Batch handlers: gathering, per-message fates, FIFO order, middleware's view."""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel

from aiosqsq import CallNext, Message, MessageBatch, Retry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester, error_of
from tests.helpers import make_app, make_queue


class Event(BaseModel):
    n: int


async def test_a_batch_gathers_across_receives_and_partial_failures_retry_only_those() -> None:
    backend = MemoryBackend()
    await make_queue(backend)
    app = make_app(backend, retry_base_delay=0)
    sizes: list[int] = []
    handled: list[int] = []

    @app.handler(batch=True, max_batch_size=25, max_wait_s=0.05)
    async def ingest(events: list[Event], messages: list[Message]) -> list[Message]:
        sizes.append(len(events))
        assert [e.n for e in events] == [int(m.body.split(":")[1].rstrip("}")) for m in messages]
        handled.extend(e.n for e in events)
        return [m for e, m in zip(events, messages, strict=True) if e.n % 10 == 0 and
                m.receive_count == 1]  # fmt: skip

    await app.send_batch([{"n": i} for i in range(50)] + ["not json"])
    drained = await AppTester(app).drain()

    assert max(sizes) > 10  # more than one receive's worth in a batch
    assert sorted(set(handled)) == list(range(50))
    assert len(drained.retried) == 5  # 0, 10, 20, 30, 40 failed once
    assert len(drained.succeeded) == 50
    assert len(drained.dead_lettered) == 1
    (dead,) = await AppTester(app).dead_letters()
    assert (error_of(dead) or "").startswith("JSONDecodeError")


async def test_raising_fails_every_message_with_the_retry_delay() -> None:
    backend = MemoryBackend()
    url = await make_queue(backend)
    app = make_app(backend)

    @app.handler(batch=True, max_batch_size=10, max_wait_s=0)
    async def ingest(events: list[Event]) -> None:
        raise Retry(delay_s=600)

    await app.send_batch([{"n": i} for i in range(5)])
    drained = await AppTester(app).drain()
    assert len(drained.retried) == 5
    depth = await backend.get_queue_depth(url)
    assert (depth.visible, depth.in_flight) == (0, 5)  # hidden for the Retry's delay


async def test_fifo_items_after_a_groups_failure_are_handed_back_others_go_on() -> None:
    backend = MemoryBackend()
    url = await make_queue(backend, fifo=True)
    app = make_app(backend, sqs_queue_url="jobs.fifo", retry_base_delay=0)
    calls: list[list[str]] = []

    @app.handler(batch=True, max_batch_size=10, max_wait_s=0)
    async def ingest(bodies: list[str], messages: list[Message]) -> list[Message]:
        calls.append(bodies)
        return [m for m in messages if m.body == "a1" and m.receive_count == 1]

    for body in ("a1", "b1", "a2", "b2", "a3"):
        await app.send(body, group_id=body[0], deduplication_id=body)
    drained = await AppTester(app).drain()

    assert calls[0] == ["a1", "b1", "a2", "b2", "a3"]
    assert [m.body for m in drained.released] == ["a2", "a3"]  # handed back behind a1
    assert sorted(m.body for m in drained.succeeded) == ["a1", "a2", "a3", "b1", "b2"]
    # group a came again in order, after a1's retry
    assert any(c[:3] == ["a1", "a2", "a3"] for c in calls[1:])
    assert (await backend.get_queue_depth(url)).visible == 0


async def test_batch_middleware_sees_the_batch() -> None:
    backend = MemoryBackend()
    await make_queue(backend)
    app = make_app(backend)
    seen: list[tuple[str, int, list[Message]]] = []

    @app.middleware
    async def watch(batch: MessageBatch, call_next: CallNext) -> Any:
        failed = await call_next()
        seen.append((type(batch).__name__, len(batch), failed))
        return failed

    @app.handler(batch=True, max_batch_size=3, max_wait_s=0)
    async def ingest(events: list[Event]) -> None: ...

    await app.send_batch([{"n": i} for i in range(3)])
    await AppTester(app).drain()
    assert seen == [("MessageBatch", 3, [])]


async def test_returning_anything_but_its_messages_fails_the_whole_batch() -> None:
    """Returning payloads (a natural mistake) must not delete the messages they meant."""
    backend = MemoryBackend()
    await make_queue(backend)
    app = make_app(backend, retry_base_delay=0)

    @app.handler(batch=True, max_batch_size=10, max_wait_s=0)
    async def ingest(events: list[Event], messages: list[Message]) -> list[Any]:
        if messages[0].receive_count == 1:
            return [e for e in events if e.n < 0]  # payloads, not messages
        return []

    await app.send_batch([{"n": -1}, {"n": 1}])
    drained = await AppTester(app).drain()
    assert len(drained.retried) == 2  # the first call failed whole
    assert len(drained.succeeded) == 2


async def test_fifo_batches_of_one_group_run_in_order_even_when_split() -> None:
    """One receive of a group cut into two batches: the second waits for the first, and
    after a failure in the first its group's messages go back behind the failed one."""
    backend = MemoryBackend()
    await make_queue(backend, fifo=True)
    app = make_app(backend, sqs_queue_url="jobs.fifo", retry_base_delay=0)
    calls: list[list[str]] = []
    first_may_end = anyio.Event()

    @app.handler(batch=True, max_batch_size=3, max_wait_s=0, concurrency=2)
    async def ingest(bodies: list[str], messages: list[Message]) -> list[Message]:
        calls.append(bodies)
        if "g0" in bodies and messages[0].receive_count == 1:
            with anyio.move_on_after(0.2):  # room for a second batch to start (it must not)
                await first_may_end.wait()
        return [m for m in messages if m.body == "g0" and m.receive_count == 1]

    for i in range(6):
        await app.send(f"g{i}", group_id="g", deduplication_id=f"g{i}")
    drained = await AppTester(app).drain()

    assert calls[0] == ["g0", "g1", "g2"]
    handled_in_order = [body for call in calls for body in call]
    assert handled_in_order[3:] == ["g0", "g1", "g2", "g3", "g4", "g5"]  # after the retry
    assert [m.body for m in drained.succeeded] == ["g0", "g1", "g2", "g3", "g4", "g5"]
