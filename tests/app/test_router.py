"""Routers: handlers from other modules, one handler per queue across all of them."""

from __future__ import annotations

import pytest

from aiosqsq import HandlerSignatureError, Router
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester
from tests.helpers import make_app, make_queue


async def test_included_handlers_consume_and_are_listed() -> None:
    backend = MemoryBackend()
    await make_queue(backend)
    await make_queue(backend, "emails")
    app = make_app(backend)
    router = Router()
    got: list[str] = []

    @router.handler("emails", concurrency=2)
    async def send_email(address: str) -> None:
        got.append(address)

    @app.handler
    async def jobs(payload: str) -> None: ...

    app.include_router(router)
    assert app.queues == ("jobs", "emails")
    await app.send("a@example.com", "emails")
    await AppTester(app).drain()
    assert got == ["a@example.com"]


def test_one_queue_one_handler_across_routers_naming_both() -> None:
    app = make_app(MemoryBackend())
    first, second = Router(), Router()

    @first.handler("emails")
    async def one(address: str) -> None: ...

    @second.handler("emails")
    async def two(address: str) -> None: ...

    app.include_router(first)
    with pytest.raises(HandlerSignatureError) as raised:
        app.include_router(second)
    assert str(raised.value) == (
        "handler test_one_queue_one_handler_across_routers_naming_both.<locals>.two "
        "(tests.app.test_router): queue 'emails' already has the handler "
        "test_one_queue_one_handler_across_routers_naming_both.<locals>.one "
        "(tests.app.test_router); one queue has one handler"
    )
