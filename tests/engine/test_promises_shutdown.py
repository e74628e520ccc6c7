"""The README's promises on stopping and on ``app.statistics()``: the default shutdown
timeout is 20 s and a handler running past the stop is given all of it (read on an event
loop whose clock the test moves, so nothing waits 20 real seconds), and a statistics
snapshot never changes."""

from __future__ import annotations

import asyncio
import dataclasses

import anyio
import pytest

from aiosqsq import QueueSettings, Statistics
from aiosqsq.backends.base import QueueDepth
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester
from tests.helpers import eventually, make_app, make_queue

DEFAULT_SHUTDOWN_TIMEOUT_S = 20.0  # README: "QUEUE_SHUTDOWN_TIMEOUT (default 20 s ...)"
STEP_S = 0.25  # how far the test moves the loop's clock at a time


class JumpingLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock the test moves forward: sleeps, timeouts and deadlines
    (``anyio.move_on_after``) end as if that much time had passed."""

    def __init__(self) -> None:
        super().__init__()
        self.jumped_s = 0.0

    def time(self) -> float:
        return super().time() + self.jumped_s


def test_the_default_shutdown_timeout_is_20_s() -> None:
    assert QueueSettings().shutdown_timeout == DEFAULT_SHUTDOWN_TIMEOUT_S


def test_a_handler_running_past_the_stop_gets_the_default_20_s_then_is_cancelled() -> None:
    with asyncio.Runner(loop_factory=JumpingLoop) as runner:
        cancelled_after_s, stats, depth = runner.run(_stop_a_long_handler())
    print(f"cancelled {cancelled_after_s:.2f} s (loop clock) after the stop")
    assert (
        DEFAULT_SHUTDOWN_TIMEOUT_S <= cancelled_after_s <= DEFAULT_SHUTDOWN_TIMEOUT_S + 2 * STEP_S
    )
    assert (stats.released, stats.succeeded) == (1, 0)
    assert (depth.visible, depth.in_flight) == (1, 0)  # handed back: visible at once


async def _stop_a_long_handler() -> tuple[float, Statistics, QueueDepth]:
    """Stop an app (default settings) while its handler has an hour to run, moving the
    loop's clock in small steps; the loop-clock seconds from the stop to the handler's
    cancellation, the app's statistics and the queue's depth after it."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, JumpingLoop)
    backend = MemoryBackend(clock=loop.time)  # the engine reads the same clock
    url = await make_queue(backend)
    app = make_app(backend)
    started = anyio.Event()
    cancelled_at: list[float] = []

    @app.handler()
    async def handle(payload: str) -> None:
        started.set()
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            cancelled_at.append(loop.time())
            raise

    await app.send("long")
    result: list[Statistics] = []
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            result.append(await app.run(handle_signals=False))

        tg.start_soon(run)
        await started.wait()
        stopped_at = loop.time()
        app.stop()
        # At most 30 s of loop time, a step at a time, each step let run to its end.
        for _ in range(int(30 / STEP_S)):
            if cancelled_at:
                break
            loop.jumped_s += STEP_S
            for _ in range(20):
                await asyncio.sleep(0)
    assert cancelled_at, "the handler was never cancelled"
    depth = await backend.get_queue_depth(url)
    await backend.aclose()
    return cancelled_at[0] - stopped_at, result[0], depth


async def test_statistics_are_a_frozen_snapshot() -> None:
    backend = MemoryBackend()
    await make_queue(backend)
    app = make_app(backend)
    go_on = anyio.Event()

    @app.handler()
    async def handle(payload: str) -> None:
        await go_on.wait()

    await app.send("first")
    async with app:
        await eventually(lambda: app.statistics().in_flight == 1)
        while_running = app.statistics()
        go_on.set()
        await eventually(lambda: app.statistics().succeeded == 1)
    after_first = app.statistics()
    await app.send("second")
    await AppTester(app).drain()

    with pytest.raises(dataclasses.FrozenInstanceError):
        after_first.succeeded = 0  # type: ignore[misc]
    assert (while_running.received, while_running.succeeded, while_running.in_flight) == (1, 0, 1)
    assert (after_first.received, after_first.succeeded, after_first.in_flight) == (1, 1, 0)
    assert app.statistics().succeeded == 2
