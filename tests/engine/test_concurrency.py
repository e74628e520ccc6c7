"""Concurrency limits hold, and one slow queue never starves another."""

from __future__ import annotations

import anyio
import pytest

from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester
from tests.helpers import eventually, make_app, make_queue


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


async def test_concurrency_is_never_exceeded_and_is_used(backend: MemoryBackend) -> None:
    await make_queue(backend)
    app = make_app(backend, concurrency=3)
    running = peak = 0
    held_peak = 0

    @app.handler(concurrency=4)
    async def handle(payload: str) -> None:
        nonlocal running, peak, held_peak
        running += 1
        peak = max(peak, running)
        held_peak = max(held_peak, app.statistics().in_flight)
        await anyio.sleep(0.005)
        running -= 1

    await app.send_batch([str(i) for i in range(60)])
    await AppTester(app).drain()
    assert peak == 4  # the handler's own limit wins over QUEUE_CONCURRENCY
    # Held = running + awaiting their delete: never more than one extra batch.
    assert held_peak <= 4 + 10
    assert app.statistics().succeeded == 60


async def test_a_slow_queue_does_not_starve_another(backend: MemoryBackend) -> None:
    await make_queue(backend, "slow")
    await make_queue(backend, "fast")
    app = make_app(backend, concurrency=2)
    release = anyio.Event()
    fast_done = 0

    @app.handler(queue="slow")
    async def slow(payload: str) -> None:
        await release.wait()

    @app.handler(queue="fast")
    async def fast(payload: str) -> None:
        nonlocal fast_done
        fast_done += 1

    await app.send_batch([str(i) for i in range(10)], queue="slow")
    await app.send_batch([str(i) for i in range(50)], queue="fast")
    async with app:
        await eventually(lambda: fast_done == 50)
        release.set()
    assert app.statistics().succeeded == 52  # 50 fast + the 2 slow ones that started
