"""Middleware: the onion order, what it sees, and the fate of what it does."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from aiosqsq import CallNext, Message, OutgoingMessage, PayloadError, Retry, Router, SendNext
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester, error_of
from tests.helpers import make_app, make_queue


class Order(BaseModel):
    id: int


@pytest.fixture
async def backend() -> MemoryBackend:
    backend = MemoryBackend()
    await make_queue(backend)
    return backend


async def test_onion_order_app_then_router_then_handler(backend: MemoryBackend) -> None:
    app = make_app(backend)
    trail: list[str] = []

    def layer(name: str) -> Any:
        async def middleware(message: Message, call_next: CallNext) -> Any:
            trail.append(f"{name}>")
            try:
                return await call_next()
            finally:
                trail.append(f"<{name}")

        return middleware

    class Counted:  # a class with an async __call__ is middleware too
        async def __call__(self, message: Message, call_next: CallNext) -> Any:
            trail.append("class>")
            return await call_next()

    app.middleware(layer("app1"))
    app.middleware(Counted())
    router = Router(middleware=[layer("router")])

    @router.handler(middleware=[layer("handler")])
    async def handle(order: Order) -> None:
        trail.append("handler")

    app.include_router(router)
    await app.send({"id": 1})
    await AppTester(app).drain()
    assert trail == [
        "app1>", "class>", "router>", "handler>", "handler", "<handler", "<router", "<app1"
    ]  # fmt: skip


async def test_returning_without_call_next_deletes_without_calling_the_handler(
    backend: MemoryBackend,
) -> None:
    app = make_app(backend)
    seen: set[str] = set()
    called: list[int] = []

    @app.middleware
    async def idempotent(message: Message, call_next: CallNext) -> Any:
        if message.body in seen:
            return None  # handled before: settle as a success
        seen.add(message.body)
        return await call_next()

    @app.handler
    async def handle(order: Order) -> None:
        called.append(order.id)

    await app.send_batch([{"id": 1}, {"id": 1}, {"id": 2}])
    drained = await AppTester(app).drain()
    assert sorted(called) == [1, 2]
    assert len(drained.succeeded) == 3


async def test_middleware_sees_undecodable_messages_and_their_fates_follow_it(
    backend: MemoryBackend,
) -> None:
    app = make_app(backend, retry_base_delay=0)
    errors: list[str] = []

    @app.middleware
    async def watch(message: Message, call_next: CallNext) -> Any:
        try:
            return await call_next()
        except PayloadError as exc:
            errors.append(exc.error_class)
            raise  # re-raised: the dead-letter fate applies
        finally:
            if message.body == '{"id":3}' and message.receive_count == 1:
                raise Retry(delay_s=0)  # raising Retry from middleware retries

    @app.handler
    async def handle(order: Order) -> None: ...

    await app.send_batch(["not json", {"id": 3}])
    drained = await AppTester(app).drain()
    assert errors == ["JSONDecodeError"]
    assert [error_of(m) for m in drained.dead_lettered] == [None]  # the original's record
    assert [m.body for m in drained.retried] == ['{"id":3}']
    assert len(drained.succeeded) == 1
    (dead,) = await AppTester(app).dead_letters()
    assert (error_of(dead) or "").startswith("JSONDecodeError")


async def test_middleware_cannot_be_added_once_the_app_started(backend: MemoryBackend) -> None:
    app = make_app(backend)

    @app.handler
    async def handle(payload: str) -> None: ...

    await AppTester(app).drain()

    async def late(message: Message, call_next: CallNext) -> Any:
        return await call_next()

    with pytest.raises(RuntimeError, match="cannot add middleware once the app has started"):
        app.middleware(late)


def test_a_plain_function_is_not_middleware(backend: MemoryBackend) -> None:
    app = make_app(backend)

    def sync(message: Message, call_next: CallNext) -> Any: ...

    with pytest.raises(TypeError, match="must be an 'async def \\(message, call_next\\)'"):
        app.middleware(sync)


async def test_send_middleware_adds_attributes_within_the_limit(backend: MemoryBackend) -> None:
    app = make_app(backend)

    @app.send_middleware
    async def tag(message: OutgoingMessage, call_next: SendNext) -> None:
        message.attributes["tenant"] = "acme"
        await call_next()

    await app.send({"id": 1})
    await app.send_batch([{"id": 2}, {"id": 3}], attributes={"kind": "order"})
    got: list[dict[str, Any]] = []

    @app.handler
    async def handle(order: Order, message: Message) -> None:
        got.append(dict(message.message_attributes))

    await AppTester(app).drain()
    assert len(got) == 3
    assert all(a["tenant"] == {"DataType": "String", "StringValue": "acme"} for a in got)
    assert sum("kind" in a for a in got) == 2

    crowded = {f"a{i}": "x" for i in range(10)}
    with pytest.raises(ValueError, match="11 message attributes"):
        await app.send({"id": 4}, attributes=crowded)
