"""The heartbeat keeps long jobs hidden, batches its calls, and lets go of lost leases."""

from __future__ import annotations

import logging

import anyio
import pytest

from aiosqsq.backends.base import DeleteEntry
from aiosqsq.backends.memory import MemoryBackend
from tests.helpers import eventually, make_app, make_queue, slow


class CountingBackend(MemoryBackend):
    """The memory backend, recording the size of each visibility batch."""

    def __init__(self) -> None:
        super().__init__()
        self.visibility_batches: list[int] = []

    async def change_visibility_batch(self, queue_url, entries):
        self.visibility_batches.append(len(entries))
        return await super().change_visibility_batch(queue_url, entries)


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend()


async def test_a_job_three_times_the_visibility_timeout_is_delivered_once(
    backend: CountingBackend,
) -> None:
    url = await make_queue(backend, visibility_timeout_s=1)
    app = make_app(backend, concurrency=20)
    deliveries: dict[str, int] = {}

    @app.handler()
    async def handle(payload: str) -> None:
        deliveries[payload] = deliveries.get(payload, 0) + 1
        await anyio.sleep(3)

    await app.send_batch([f"job{i}" for i in range(15)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: app.run(handle_signals=False, burst=True))
        await eventually(lambda: app.statistics().received == 15)
        # A rival consumer polling meanwhile must never see a running job.
        with anyio.move_on_after(2.5):
            while True:
                assert await backend.receive(url, max_messages=10, wait_time_s=0.2) == []

    assert deliveries == {f"job{i}": 1 for i in range(15)}
    stats = app.statistics()
    assert stats.succeeded == 15
    assert stats.heartbeats_sent >= 15 * 4  # about two beats per second per job
    assert max(backend.visibility_batches) == 10  # 15 due at once: batched by 10
    assert (await backend.get_queue_depth(url)).in_flight == 0


async def test_a_lost_lease_cancels_the_handler_with_a_warning(
    backend: CountingBackend, caplog: pytest.LogCaptureFixture
) -> None:
    url = await make_queue(backend, visibility_timeout_s=1)
    app = make_app(backend)
    started, cancelled = anyio.Event(), anyio.Event()

    @app.handler()
    async def handle(payload: str) -> None:
        started.set()
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    await app.send("doomed")
    with caplog.at_level(logging.WARNING), anyio.fail_after(slow(10)):
        async with app:
            await started.wait()
            # Someone else deletes the message (e.g. an operator purge).
            (entry,) = list(app.consumers[0].registry)
            await backend.delete_batch(url, [DeleteEntry("0", entry.receipt_handle)])
            await cancelled.wait()

    assert app.statistics().lease_lost == 1
    assert app.statistics().succeeded == 0
    warnings = [r.message for r in caplog.records if "lost the lease" in r.message]
    assert len(warnings) == 1
    assert "ReceiptHandleIsInvalid" in warnings[0]


async def test_no_extension_after_the_message_is_settled(backend: CountingBackend) -> None:
    url = await make_queue(backend, visibility_timeout_s=1)
    app = make_app(backend, retry_base_delay=30, retry_max_delay=30)
    done = anyio.Event()

    @app.handler()
    async def handle(payload: str) -> None:
        await anyio.sleep(0.8)
        done.set()
        raise RuntimeError("nack with a 15-30 s backoff")

    await app.send("x")
    async with app:
        await done.wait()
        beats = app.statistics().heartbeats_sent
        await anyio.sleep(1.5)  # several heartbeat intervals
        assert app.statistics().heartbeats_sent == beats
    # The backoff stands: no heartbeat overwrote it with a 1 s visibility.
    assert await backend.receive(url, max_messages=1, wait_time_s=1) == []


async def test_extensions_stop_at_the_twelve_hour_cap() -> None:
    now = [0.0]
    backend = MemoryBackend(clock=lambda: now[0])
    url = await make_queue(backend, visibility_timeout_s=43_200)  # stays in flight
    (message,) = await _send_and_receive(backend, url)
    from aiosqsq.engine.heartbeat import Heartbeat
    from aiosqsq.engine.registry import InFlightRegistry, State
    from aiosqsq.engine.stats import Counters

    registry, counters = InFlightRegistry(), Counters()
    entry = registry.add(message, now=0.0, visibility_timeout_s=600)
    entry.state = State.RUNNING
    heartbeat = Heartbeat(
        backend,
        url,
        registry,
        counters,
        visibility_timeout_s=600,
        visibility_lock=anyio.Lock(),
        clock=lambda: now[0],
    )
    now[0] = 43_200 - 100  # 100 s left of the 12 hours
    entry.visible_at = now[0] + 10
    await heartbeat.beat()
    assert counters.heartbeats_sent == 1
    assert entry.visible_at == pytest.approx(43_200)  # extended by what is left, not 600 s
    now[0] = 43_200 - 0.5
    await heartbeat.beat()
    assert counters.heartbeats_sent == 1  # nothing left to extend


async def _send_and_receive(backend: MemoryBackend, url: str):
    from aiosqsq.backends.base import SendEntry

    await backend.send_batch(url, [SendEntry("0", "body")])
    return await backend.receive(url, max_messages=1, wait_time_s=0)
