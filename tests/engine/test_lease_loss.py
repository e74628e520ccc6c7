"""A lost lease cancels only its own handler: the worker that ran it goes on unharmed.

Handlers without a timeout run in their pool worker's cancel scope (one per worker, not
one per message), so these tests pin what that must not change: the worker keeps
handling the messages behind the lost one, even when the cancelled handler swallows the
cancellation, and a FIFO group hands its remaining messages back.
"""

from __future__ import annotations

import anyio
import pytest

from aiosqsq.backends.base import DeleteEntry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.engine.registry import InFlightRegistry
from tests.helpers import eventually, make_app, make_queue, slow


async def _purge_held(registry: InFlightRegistry, backend: MemoryBackend, url: str) -> None:
    """Delete every held message behind the consumer's back (an operator's purge)."""
    for entry in list(registry):
        await backend.delete_batch(url, [DeleteEntry("0", entry.receipt_handle)])


@pytest.mark.parametrize("swallow", [False, True], ids=["handler-re-raises", "handler-swallows"])
async def test_the_worker_goes_on_after_a_lost_lease(swallow: bool) -> None:
    backend = MemoryBackend()
    url = await make_queue(backend, visibility_timeout_s=1)
    app = make_app(backend, concurrency=1)  # one worker: it must survive the cancellation
    started, cancelled = anyio.Event(), anyio.Event()
    handled: list[str] = []

    @app.handler()
    async def handle(payload: str) -> None:
        if payload == "doomed":
            started.set()
            try:
                await anyio.sleep(30)
            except anyio.get_cancelled_exc_class():
                cancelled.set()
                if not swallow:
                    raise
            return
        await anyio.sleep(0.01)  # a real await: a stale cancellation would hit it
        handled.append(payload)

    await app.send("doomed")
    others = [f"m{i}" for i in range(20)]
    began = anyio.current_time()
    with anyio.fail_after(slow(15)):
        async with app:
            await started.wait()
            await app.send_batch(others[:10])
            await app.send_batch(others[10:])
            await _purge_held(app.consumers[0].registry, backend, url)
            await cancelled.wait()
            await eventually(lambda: len(handled) == len(others), timeout_s=10)
    stats = app.statistics()
    depth = await backend.get_queue_depth(url)
    print(
        f"sent={1 + len(others)} handled={len(handled)} duplicated="
        f"{len(handled) - len(set(handled))} lease_lost={stats.lease_lost} "
        f"succeeded={stats.succeeded} retried={stats.retried} left={depth.visible} "
        f"in_flight={depth.in_flight} time={anyio.current_time() - began:.2f}s"
    )
    assert sorted(handled) == sorted(others)  # each once, none cancelled by mistake
    assert stats.lease_lost == 1
    assert stats.succeeded == len(others)
    assert stats.retried == 0
    assert depth.visible == depth.in_flight == 0


async def test_a_lost_lease_in_a_fifo_group_hands_the_rest_back() -> None:
    backend = MemoryBackend()
    url = await make_queue(backend, visibility_timeout_s=1, fifo=True, max_receive_count=None)
    app = make_app(backend, sqs_queue_url="jobs.fifo", concurrency=2)
    started, cancelled = anyio.Event(), anyio.Event()
    handled: list[str] = []

    @app.handler()
    async def handle(payload: str) -> None:
        if payload == "g0" and not started.is_set():
            started.set()
            try:
                await anyio.sleep(30)
            except anyio.get_cancelled_exc_class():
                cancelled.set()
                raise
        handled.append(payload)

    for i in range(5):
        await app.send(f"g{i}", group_id="g", deduplication_id=f"g{i}")
    began = anyio.current_time()
    with anyio.fail_after(slow(15)):
        async with app:
            await started.wait()
            (first,) = [e for e in app.consumers[0].registry if e.message.body == "g0"]
            await backend.delete_batch(url, [DeleteEntry("0", first.receipt_handle)])
            await cancelled.wait()
            # The group's other four come back (handed back, then received again) in order.
            await eventually(lambda: len(handled) == 4, timeout_s=10)
    stats = app.statistics()
    depth = await backend.get_queue_depth(url)
    print(
        f"sent=5 handled={len(handled)} lease_lost={stats.lease_lost} "
        f"released={stats.released} succeeded={stats.succeeded} left={depth.visible} "
        f"in_flight={depth.in_flight} time={anyio.current_time() - began:.2f}s"
    )
    assert handled == ["g1", "g2", "g3", "g4"]
    assert stats.lease_lost == 1
    assert stats.succeeded == 4
    assert depth.visible == depth.in_flight == 0
