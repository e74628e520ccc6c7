"""Every fate of the App docstring's table, end to end on the memory backend."""

from __future__ import annotations

import logging

import anyio
import pytest
from pydantic import BaseModel

from aiosqsq import Message, Retry
from aiosqsq.backends.base import QueueDepth, VisibilityEntry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester, error_of
from tests.helpers import eventually, make_app, make_queue


class Order(BaseModel):
    id: int
    sku: str


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


async def test_success_deletes_every_message(backend: MemoryBackend) -> None:
    url = await make_queue(backend)
    app = make_app(backend)
    handled: list[Order] = []

    @app.handler()
    async def handle(order: Order) -> None:
        handled.append(order)

    tester = AppTester(app)
    await app.send_batch([{"id": i, "sku": f"s{i}"} for i in range(25)])
    drained = await tester.drain()

    assert sorted(order.id for order in handled) == list(range(25))
    assert len(drained.succeeded) == 25
    assert await backend.get_queue_depth(url) == QueueDepth(visible=0, in_flight=0, delayed=0)
    assert app.statistics().succeeded == 25
    assert app.statistics().in_flight == 0


async def test_retry_makes_the_message_visible_after_its_delay(backend: MemoryBackend) -> None:
    url = await make_queue(backend)
    app = make_app(backend)
    calls: list[int] = []

    @app.handler()
    async def handle(payload: dict[str, int], message: Message) -> None:
        calls.append(message.receive_count)
        if message.receive_count == 1:
            raise Retry(delay_s=1)

    await app.send({"n": 1})
    drained = await AppTester(app).drain()
    assert len(drained.retried) == 1
    depth = await backend.get_queue_depth(url)
    assert (depth.visible, depth.in_flight) == (0, 1)

    messages = await backend.receive(url, max_messages=1, wait_time_s=3)
    assert [m.receive_count for m in messages] == [2]  # back after about a second
    await backend.change_visibility_batch(
        url, [VisibilityEntry("0", messages[0].receipt_handle, 0)]
    )
    drained = await AppTester(app).drain()
    assert calls == [1, 3]
    assert len(drained.succeeded) == 1


async def test_failures_back_off_then_the_last_receive_moves_to_the_dlq_with_the_reason(
    backend: MemoryBackend,
) -> None:
    url = await make_queue(backend, max_receive_count=3)
    app = make_app(backend, retry_base_delay=0)
    receive_counts: list[int] = []

    @app.handler()
    async def handle(payload: dict[str, int], message: Message) -> None:
        receive_counts.append(message.receive_count)
        raise RuntimeError("downstream is down")

    tester = AppTester(app)
    await app.send({"n": 1})
    drained = await tester.drain()

    assert receive_counts == [1, 2, 3]
    assert len(drained.retried) == 2
    assert len(drained.dead_lettered) == 1  # on receive 3, maxReceiveCount: moved by us
    dead = await tester.dead_letters()
    assert [m.body for m in dead] == ['{"n":1}']
    assert [error_of(m) for m in dead] == [
        "RuntimeError: failed on receive 3, the last the queue's maxReceiveCount (3) allows"
    ]  # the class only: never the exception's text
    assert (await backend.get_queue_depth(url)).visible == 0


async def test_backoff_grows_with_the_receive_count(backend: MemoryBackend) -> None:
    url = await make_queue(backend)
    app = make_app(backend, retry_base_delay=2, retry_max_delay=60)

    @app.handler()
    async def handle(payload: object) -> None:
        raise RuntimeError("fail")

    await app.send("{}")
    await AppTester(app).drain()
    # received once: hidden for 1 to 2 s (base 2 s with equal jitter)
    assert (await backend.get_queue_depth(url)).in_flight == 1
    assert await backend.receive(url, max_messages=1, wait_time_s=0.9) == []
    messages = await backend.receive(url, max_messages=1, wait_time_s=2)
    assert [m.receive_count for m in messages] == [2]


async def test_timeout_cancels_the_handler_and_retries(backend: MemoryBackend) -> None:
    await make_queue(backend)
    app = make_app(backend, retry_base_delay=0)
    cancelled = anyio.Event()
    attempts: list[int] = []

    @app.handler(timeout_s=0.2)
    async def handle(payload: object, message: Message) -> None:
        attempts.append(message.receive_count)
        if message.receive_count == 1:
            try:
                await anyio.sleep(30)
            except anyio.get_cancelled_exc_class():
                cancelled.set()
                raise

    await app.send("{}")
    drained = await AppTester(app).drain()
    assert cancelled.is_set()
    assert attempts == [1, 2]
    assert len(drained.retried) == 1
    assert len(drained.succeeded) == 1


async def test_undecodable_body_goes_to_the_dlq_without_calling_the_handler(
    backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    url = await make_queue(backend)
    app = make_app(backend)
    calls: list[Order] = []

    @app.handler()
    async def handle(order: Order) -> None:
        calls.append(order)

    tester = AppTester(app)
    secret_body = '{"id": "not-a-number", "sku": "SECRET-SKU"}'
    await app.send(secret_body, attributes={"tenant": "acme"})
    await app.send("not json at all SECRET")
    with caplog.at_level(logging.INFO):
        drained = await tester.drain()

    assert calls == []
    assert len(drained.dead_lettered) == 2
    assert (await backend.get_queue_depth(url)).visible == 0
    dead = {m.body: m for m in await tester.dead_letters()}
    assert set(dead) == {secret_body, "not json at all SECRET"}
    assert dead[secret_body].message_attributes["tenant"]["StringValue"] == "acme"
    assert (error_of(dead[secret_body]) or "").startswith("ValidationError: 1 error(s): id:")
    assert (error_of(dead["not json at all SECRET"]) or "").startswith("JSONDecodeError")
    assert "SECRET" not in caplog.text  # bodies never reach the log


async def test_undecodable_body_without_dlq_is_hidden_not_deleted(
    backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    url = await make_queue(backend, max_receive_count=None)
    app = make_app(backend, retry_max_delay=600)

    @app.handler()
    async def handle(order: Order) -> None:
        raise AssertionError("never called")

    await app.send("[1, 2")
    with caplog.at_level(logging.ERROR):
        drained = await AppTester(app).drain()

    assert len(drained.retried) == 1
    depth = await backend.get_queue_depth(url)
    assert (depth.visible, depth.in_flight) == (0, 1)  # kept, hidden: no hot loop
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "cannot be decoded (JSONDecodeError) and the queue has no DLQ" in errors[0].message


async def test_release_from_the_handler_is_not_a_delete(backend: MemoryBackend) -> None:
    url = await make_queue(backend)
    app = make_app(backend)

    @app.handler()
    async def handle(payload: object, message: Message) -> None:
        if message.receive_count == 1:
            await message.release(0)

    await app.send("{}")
    drained = await AppTester(app).drain()
    assert [len(drained.released), len(drained.succeeded)] == [1, 1]
    assert (await backend.get_queue_depth(url)).in_flight == 0


async def test_extend_from_the_handler_keeps_the_message_hidden(backend: MemoryBackend) -> None:
    url = await make_queue(backend, visibility_timeout_s=1)
    app = make_app(backend)
    extended = anyio.Event()
    finish = anyio.Event()

    @app.handler()
    async def handle(payload: object, message: Message) -> None:
        await message.extend(60)
        extended.set()
        await finish.wait()

    await app.send("{}")
    async with app:
        await extended.wait()
        # Well past the 1 s visibility timeout, the message is still hidden.
        assert await backend.receive(url, max_messages=1, wait_time_s=1.5) == []
        finish.set()
        await eventually(lambda: app.statistics().in_flight == 0)
    assert app.statistics().succeeded == 1
    assert app.statistics().heartbeats_sent == 0  # the 60 s lease made beats unnecessary
    assert (await backend.get_queue_depth(url)).in_flight == 0
