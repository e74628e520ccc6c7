"""The acker alone: batching, newest handles, per-entry failures, retries, flush."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio
import pytest
from anyio.abc import TaskGroup

from aiosqsq.backends.base import (
    BatchFailure,
    BatchResult,
    DeleteEntry,
    QueueMessage,
    SendEntry,
    VisibilityEntry,
)
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.engine.acker import ACKER_PARALLEL_REQUESTS, Acker
from aiosqsq.engine.registry import InFlight, InFlightRegistry
from aiosqsq.errors import BackendError
from tests.helpers import make_queue, slow


class FlakyBackend(MemoryBackend):
    """The memory backend with delete calls recorded, and failures injected on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.delete_calls: list[list[str]] = []  # receipt handles per call
        self.raise_next: list[BackendError] = []
        self.fail_entries_once: set[str] = set()  # receipt handles failed transiently once

    async def delete_batch(self, queue_url: str, entries: Sequence[DeleteEntry]) -> BatchResult:
        self.delete_calls.append([e.receipt_handle for e in entries])
        if self.raise_next:
            raise self.raise_next.pop()
        flaky = [e for e in entries if e.receipt_handle in self.fail_entries_once]
        self.fail_entries_once -= {e.receipt_handle for e in flaky}
        result = await super().delete_batch(queue_url, [e for e in entries if e not in flaky])

        failed = [BatchFailure(e.id, "InternalError", "try again", False) for e in flaky]
        return BatchResult(result.successful, result.failed + tuple(failed))


@pytest.fixture
def backend() -> FlakyBackend:
    return FlakyBackend()


async def _held(
    backend: MemoryBackend, url: str, count: int
) -> tuple[InFlightRegistry, list[InFlight]]:
    for start in range(0, count, 10):
        await backend.send_batch(
            url, [SendEntry(str(i), f"m{start + i}") for i in range(min(10, count - start))]
        )
    messages: list[QueueMessage] = []
    while len(messages) < count:
        messages += await backend.receive(url, max_messages=10, wait_time_s=0)
    registry = InFlightRegistry()
    entries = [registry.add(m, now=0, visibility_timeout_s=30) for m in messages]
    return registry, entries


async def test_deletes_are_sent_in_batches_of_at_most_ten(backend: FlakyBackend) -> None:
    url = await make_queue(backend)
    registry, entries = await _held(backend, url, 25)
    acker = Acker(backend, url, registry, visibility_lock=anyio.Lock())
    for entry in entries:
        acker.delete(entry)
    await acker.flush()
    assert sorted(len(call) for call in backend.delete_calls) == [5, 10, 10]
    assert len(registry) == 0
    assert (await backend.get_queue_depth(url)).in_flight == 0


async def test_the_run_loop_flushes_a_partial_batch_after_a_short_linger(
    backend: FlakyBackend,
) -> None:
    url = await make_queue(backend)
    registry, entries = await _held(backend, url, 3)
    acker = Acker(backend, url, registry, visibility_lock=anyio.Lock(), linger_s=0.01)
    async with anyio.create_task_group() as tg:
        tg.start_soon(acker.run)
        for entry in entries:
            acker.delete(entry)
        with anyio.fail_after(slow(2)):
            await registry.wait_empty()
        tg.cancel_scope.cancel()
    assert backend.delete_calls == [[e.receipt_handle for e in entries]]


async def test_a_redelivered_message_is_deleted_once_with_the_newest_handle(
    backend: FlakyBackend,
) -> None:
    url = await make_queue(backend)
    registry, (old,) = await _held(backend, url, 1)
    await backend.change_visibility_batch(url, [VisibilityEntry("0", old.receipt_handle, 0)])
    (again,) = await backend.receive(url, max_messages=1, wait_time_s=0)
    new = registry.add(again, now=0, visibility_timeout_s=30)
    acker = Acker(backend, url, registry, visibility_lock=anyio.Lock())
    acker.delete(old)
    acker.delete(new)
    await acker.flush()
    assert backend.delete_calls == [[again.receipt_handle]]
    assert len(registry) == 0


async def test_transient_entry_failures_are_retried_and_successes_never_resent(
    backend: FlakyBackend,
) -> None:
    url = await make_queue(backend)
    registry, entries = await _held(backend, url, 4)
    backend.fail_entries_once = {entries[1].receipt_handle}
    acker = Acker(backend, url, registry, visibility_lock=anyio.Lock())
    for entry in entries:
        acker.delete(entry)
    await acker.flush()
    assert backend.delete_calls[1:] == [[entries[1].receipt_handle]]
    assert len(registry) == 0
    assert (await backend.get_queue_depth(url)).in_flight == 0


async def test_a_failed_call_is_retried_whole(backend: FlakyBackend) -> None:
    url = await make_queue(backend)
    registry, entries = await _held(backend, url, 2)
    backend.raise_next = [BackendError("ServiceUnavailable", "503", retryable=True)]
    acker = Acker(backend, url, registry, visibility_lock=anyio.Lock())
    for entry in entries:
        acker.delete(entry)
    await acker.flush()
    assert len(backend.delete_calls) == 2
    assert (await backend.get_queue_depth(url)).in_flight == 0


async def test_sender_faults_are_logged_once_and_dropped(
    backend: FlakyBackend, caplog: pytest.LogCaptureFixture
) -> None:
    url = await make_queue(backend)
    registry, entries = await _held(backend, url, 2)
    forged = QueueMessage(url, "forged-id", "not-a-receipt-handle", "x")
    bad = registry.add(forged, now=0, visibility_timeout_s=30)
    acker = Acker(backend, url, registry, visibility_lock=anyio.Lock())
    for entry in [*entries, bad]:
        acker.delete(entry)
    with caplog.at_level(logging.WARNING):
        await acker.flush()
    assert len(backend.delete_calls) == 1  # not retried
    assert len(registry) == 0
    warnings = [r.message for r in caplog.records]
    assert len(warnings) == 1
    assert "forged-id" in warnings[0]
    assert "ReceiptHandleIsInvalid" in warnings[0]
    assert (await backend.get_queue_depth(url)).in_flight == 0


class SlowBackend(MemoryBackend):
    """The memory backend with each delete call taking a while, its overlap recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most_running = 0
        self.calls = 0

    async def delete_batch(self, queue_url: str, entries: Sequence[DeleteEntry]) -> BatchResult:
        self.calls += 1
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await anyio.sleep(0.02)
            return await super().delete_batch(queue_url, entries)
        finally:
            self.running -= 1


@pytest.mark.parametrize(("count", "parallel"), [(30, 3), (80, 8), (200, ACKER_PARALLEL_REQUESTS)])
async def test_a_flush_sends_its_batches_in_parallel_up_to_the_cap(
    count: int, parallel: int
) -> None:
    backend = SlowBackend()
    url = await make_queue(backend)
    registry, entries = await _held(backend, url, count)
    acker = Acker(backend, url, registry, visibility_lock=anyio.Lock())
    for entry in entries:
        acker.delete(entry)
    began = anyio.current_time()
    await acker.flush()
    depth = await backend.get_queue_depth(url)
    print(
        f"deletes={count} calls={backend.calls} most_parallel={backend.most_running} "
        f"left={depth.visible + depth.in_flight} held={len(registry)} "
        f"time={anyio.current_time() - began:.3f}s"
    )
    assert backend.calls == count // 10
    assert backend.most_running == parallel
    assert len(registry) == 0
    assert depth.visible == depth.in_flight == 0


class TimedBackend(MemoryBackend):
    """The memory backend with each delete call taking ``delay_s``: its sizes and overlap
    recorded."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.sizes: list[int] = []
        self.running = 0
        self.most_running = 0

    async def delete_batch(self, queue_url: str, entries: Sequence[DeleteEntry]) -> BatchResult:
        self.sizes.append(len(entries))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await anyio.sleep(self.delay_s)
            return await super().delete_batch(queue_url, entries)
        finally:
            self.running -= 1


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    with anyio.fail_after(slow(timeout_s)):
        while not condition():
            await anyio.sleep(0.002)


async def test_the_run_loop_sends_a_full_batch_without_waiting_for_the_ones_before() -> None:
    backend = TimedBackend(delay_s=0.5)
    url = await make_queue(backend)
    registry, entries = await _held(backend, url, 20)
    acker = Acker(backend, url, registry, visibility_lock=anyio.Lock())
    async with anyio.create_task_group() as tg:
        tg.start_soon(acker.run)
        for entry in entries[:10]:
            acker.delete(entry)
        await _until(lambda: backend.running == 1)
        began = anyio.current_time()
        for entry in entries[10:]:
            acker.delete(entry)
        await _until(lambda: backend.most_running == 2 or not backend.running)
        second_started_s = anyio.current_time() - began
        await registry.wait_empty()
        tg.cancel_scope.cancel()
    depth = await backend.get_queue_depth(url)
    print(
        f"deletes=20 calls={backend.sizes} most_parallel={backend.most_running} "
        f"second_batch_started_after={second_started_s:.3f}s left={depth.visible + depth.in_flight}"
    )
    assert backend.sizes == [10, 10]
    assert backend.most_running == 2  # the second batch went while the first was out
    assert second_started_s < backend.delay_s / 2
    assert depth.visible == depth.in_flight == 0


async def test_the_run_loop_keeps_batches_full_within_the_cap_and_lingers_for_the_rest() -> None:
    backend = TimedBackend(delay_s=0.05)
    url = await make_queue(backend)
    count = 10 * (ACKER_PARALLEL_REQUESTS + 4) + 5  # more full batches than the cap, and 5
    registry, entries = await _held(backend, url, count)
    acker = Acker(backend, url, registry, visibility_lock=anyio.Lock(), linger_s=0.01)
    began = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(acker.run)
        for entry in entries:
            acker.delete(entry)
        with anyio.fail_after(slow(10)):
            await registry.wait_empty()
        tg.cancel_scope.cancel()
    depth = await backend.get_queue_depth(url)
    print(
        f"deletes={count} calls={len(backend.sizes)} sizes={backend.sizes} "
        f"most_parallel={backend.most_running} left={depth.visible + depth.in_flight} "
        f"time={anyio.current_time() - began:.3f}s"
    )
    assert backend.sizes == [10] * (ACKER_PARALLEL_REQUESTS + 4) + [5]
    assert backend.most_running == ACKER_PARALLEL_REQUESTS
    assert depth.visible == depth.in_flight == 0


async def _one_batch_out(tg: TaskGroup) -> tuple[TimedBackend, str, InFlightRegistry, Acker]:
    """An acker whose run loop (started in ``tg``) has sent one batch of 10 deletes, which
    takes 0.3 s to answer."""
    backend = TimedBackend(delay_s=0.3)
    url = await make_queue(backend)
    registry, entries = await _held(backend, url, 10)
    acker = Acker(backend, url, registry, visibility_lock=anyio.Lock())
    tg.start_soon(acker.run)
    for entry in entries:
        acker.delete(entry)
    await _until(lambda: backend.running == 1)
    return backend, url, registry, acker


async def test_flush_waits_for_the_batches_the_run_loop_has_in_flight() -> None:
    async with anyio.create_task_group() as tg:
        backend, url, registry, acker = await _one_batch_out(tg)
        assert acker.pending == 0  # the batch is out: only the run loop holds it
        began = anyio.current_time()
        await acker.flush()
        flush_s = anyio.current_time() - began
        held = len(registry)
        tg.cancel_scope.cancel()
    depth = await backend.get_queue_depth(url)
    print(
        f"deletes=10 calls={backend.sizes} held_after_flush={held} flush={flush_s:.3f}s "
        f"left={depth.visible + depth.in_flight}"
    )
    assert held == 0
    assert backend.sizes == [10]
    assert depth.visible == depth.in_flight == 0


async def test_a_batch_cut_off_by_cancelling_the_run_loop_is_sent_by_the_flush() -> None:
    async with anyio.create_task_group() as tg:
        backend, url, registry, acker = await _one_batch_out(tg)
        tg.cancel_scope.cancel()  # the request is cut off before its answer
    pending_after_cancel = acker.pending
    began = anyio.current_time()
    await acker.flush(timeout_s=5)
    flush_s = anyio.current_time() - began
    depth = await backend.get_queue_depth(url)
    print(
        f"deletes=10 calls={backend.sizes} pending_after_cancel={pending_after_cancel} "
        f"held={len(registry)} flush={flush_s:.3f}s left={depth.visible + depth.in_flight}"
    )
    assert pending_after_cancel == 10
    assert backend.sizes == [10, 10]  # the cut-off call, then the flush's
    assert len(registry) == 0
    assert flush_s < min(slow(2.5), 4.5)  # not the flush's 5 s timeout
    assert depth.visible == depth.in_flight == 0
