"""Stopping at the edges: a handler that swallows its cancellation, a refused receive
while handlers run, a burst stopped while it waits for held messages."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from aiosqsq.backends.base import QueueMessage
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.errors import AccessError
from tests.helpers import make_app, make_queue, slow


async def test_a_handler_that_swallows_its_cancellation_does_not_get_a_delete() -> None:
    backend = MemoryBackend()
    url = await make_queue(backend)
    app = make_app(backend, shutdown_timeout=0.2, concurrency=2)
    started = anyio.Event()

    @app.handler
    async def handle(n: int) -> None:
        started.set()
        try:
            await anyio.sleep(30)
        except BaseException:
            return  # careless code (or a library) that eats the cancellation

    await app.send(1)
    async with anyio.create_task_group() as tg:

        async def stop_when_started() -> None:
            await started.wait()
            app.stop()

        tg.start_soon(stop_when_started)
        with anyio.fail_after(slow(10)):
            await app.serve()
    assert app.statistics().succeeded == 0
    assert app.statistics().released == 1
    assert (await backend.get_queue_depth(url)).visible == 1  # handed back, not deleted


class _Revoked(MemoryBackend):
    """Access to receive is revoked while a handler runs."""

    revoked = False

    async def receive(self, queue_url: str, **options: Any) -> list[QueueMessage]:
        if self.revoked:
            raise AccessError("AccessDenied", "sqs:ReceiveMessage was denied")
        return await super().receive(queue_url, **options)


async def test_a_refused_receive_stops_gracefully_letting_running_handlers_finish() -> None:
    backend = _Revoked()
    await make_queue(backend)
    app = make_app(backend, shutdown_timeout=10, concurrency=2)
    finished: list[int] = []

    @app.handler
    async def handle(n: int) -> None:
        backend.revoked = True
        await anyio.sleep(0.3)  # well inside the shutdown timeout
        finished.append(n)

    await app.send(1)
    with anyio.fail_after(slow(10)), pytest.raises(AccessError):
        await app.serve()  # the error itself, not an exception group
    assert finished == [1]
    assert app.statistics().succeeded == 1


class _NotCancelSafe(MemoryBackend):
    receive_is_cancel_safe = False  # as the SQS backend: polls in flight are let finish


async def test_a_burst_stopped_while_it_waits_for_held_messages_keeps_the_timeout() -> None:
    backend = _NotCancelSafe()
    await make_queue(backend)
    app = make_app(backend, shutdown_timeout=0.5, concurrency=2)
    started = anyio.Event()

    @app.handler
    async def handle(n: int) -> None:
        started.set()
        await anyio.sleep(30)  # slower than the shutdown timeout

    await app.send(1)
    async with anyio.create_task_group() as tg:

        async def stop_when_started() -> None:
            await started.wait()
            await anyio.sleep(0.2)  # the poller is now waiting for the held message
            app.stop()

        tg.start_soon(stop_when_started)
        with anyio.fail_after(slow(8)):  # before the fix: until the handler's 30 s end
            await app.serve(burst=True)
    assert app.statistics().released == 1
