"""Graceful shutdown: stop receiving, hand back, wait, cancel, flush."""

from __future__ import annotations

import os
import signal

import anyio
import pytest

from aiosqsq import Message, QueueNotFoundError
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.engine.stats import Statistics
from tests.helpers import eventually, make_app, make_queue, slow


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


async def test_unstarted_messages_are_handed_back_at_once(backend: MemoryBackend) -> None:
    url = await make_queue(backend, "orders", fifo=True)
    app = make_app(backend, sqs_queue_url="orders.fifo")
    started, finish = anyio.Event(), anyio.Event()
    handled: list[str] = []

    @app.handler()
    async def handle(payload: str) -> None:
        started.set()
        await finish.wait()
        handled.append(payload)

    for i in range(5):  # one group: the first runs, four wait behind it
        await app.send(f"m{i}", group_id="g", deduplication_id=f"d{i}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: app.run(handle_signals=False))
        await started.wait()
        app.stop()
        # Well before the running handler ends, the four unstarted ones are back.
        with anyio.fail_after(slow(1)):
            while (await backend.get_queue_depth(url)).in_flight != 1:
                await anyio.sleep(0.01)
        finish.set()

    assert handled == ["m0"]
    assert app.statistics().released == 4
    depth = await backend.get_queue_depth(url)
    assert (depth.visible, depth.in_flight) == (4, 0)  # m0 deleted, the rest visible
    messages = await backend.receive(url, max_messages=10, wait_time_s=0)
    assert [m.body for m in messages] == ["m1", "m2", "m3", "m4"]


async def test_handlers_past_the_shutdown_timeout_are_cancelled_and_released(
    backend: MemoryBackend,
) -> None:
    url = await make_queue(backend)
    app = make_app(backend, shutdown_timeout=0.2)
    started, cancelled = anyio.Event(), anyio.Event()

    @app.handler()
    async def handle(payload: str) -> None:
        started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    await app.send("slow")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: app.run(handle_signals=False))
        await started.wait()
        stopped_at = anyio.current_time()
        app.stop()
    assert anyio.current_time() - stopped_at < slow(2)
    assert cancelled.is_set()
    messages = await backend.receive(url, max_messages=1, wait_time_s=0)
    assert [(m.body, m.receive_count) for m in messages] == [("slow", 2)]


async def test_pending_deletes_are_flushed_on_stop(backend: MemoryBackend) -> None:
    url = await make_queue(backend)
    app = make_app(backend, concurrency=50)
    total = 37
    handled = 0

    @app.handler()
    async def handle(payload: str) -> None:
        nonlocal handled
        handled += 1
        if handled == total:
            app.stop()  # deletes are still lingering in the acker now

    await app.send_batch([str(i) for i in range(total)])
    stats = await app.run(handle_signals=False)

    assert stats.succeeded == total
    assert stats.in_flight == 0
    depth = await backend.get_queue_depth(url)
    assert (depth.visible, depth.in_flight) == (0, 0)


async def test_cancelling_run_hands_running_messages_back(backend: MemoryBackend) -> None:
    url = await make_queue(backend)
    app = make_app(backend)
    started = anyio.Event()

    @app.handler()
    async def handle(payload: str) -> None:
        started.set()
        await anyio.sleep(60)

    await app.send("x")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: app.run(handle_signals=False))
        await started.wait()
        tg.cancel_scope.cancel()
    messages = await backend.receive(url, max_messages=1, wait_time_s=0)
    assert [m.body for m in messages] == ["x"]


async def test_async_with_consumes_in_the_background_and_stops_on_exit(
    backend: MemoryBackend,
) -> None:
    url = await make_queue(backend)
    app = make_app(backend)
    seen: list[str] = []

    @app.handler()
    async def handle(payload: str) -> None:
        seen.append(payload)

    async with app:
        await app.send_batch(["a", "b", "c"])
        await eventually(lambda: app.statistics().succeeded == 3)
    assert sorted(seen) == ["a", "b", "c"]
    assert app.statistics().in_flight == 0
    assert (await backend.get_queue_depth(url)).in_flight == 0


async def test_sigterm_stops_gracefully_and_a_second_forces(backend: MemoryBackend) -> None:
    url = await make_queue(backend)
    app = make_app(backend, shutdown_timeout=30)
    started = anyio.Event()
    stopping = anyio.Event()

    @app.handler()
    async def handle(payload: str, message: Message) -> None:
        started.set()
        await anyio.sleep(60)

    await app.send("job")
    result: list[Statistics] = []

    async def run() -> None:
        result.append(await app.run())

    with anyio.fail_after(slow(10)):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await started.wait()
            os.kill(os.getpid(), signal.SIGTERM)
            await eventually(lambda: app.stopping)
            stopping.set()
            os.kill(os.getpid(), signal.SIGTERM)  # the handler would run 60 s: force
    assert stopping.is_set()
    assert result[0].released == 1
    messages = await backend.receive(url, max_messages=1, wait_time_s=0)
    assert [m.body for m in messages] == ["job"]


async def test_a_queue_deleted_under_the_consumer_stops_it_with_a_clear_error(
    backend: MemoryBackend,
) -> None:
    url = await make_queue(backend, "vanishing", max_receive_count=None)
    app = make_app(backend, sqs_queue_url="vanishing", wait_time_seconds=20)

    @app.handler()
    async def handle(payload: str) -> None: ...

    async def delete_soon() -> None:
        await eventually(lambda: bool(app.consumers))
        await backend.delete_queue(url)

    with anyio.fail_after(slow(10)):
        async with anyio.create_task_group() as tg:
            tg.start_soon(delete_soon)
            with pytest.raises(QueueNotFoundError) as raised:
                await app.run(handle_signals=False)
    assert "queue 'memory://queues/vanishing' does not exist" in str(raised.value)
