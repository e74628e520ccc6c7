"""The README's visibility promises, on the memory backend's fake clock: how long a failed,
released or undecodable message stays hidden, read from the queue at exact moments.

The app's engine reads the memory backend's clock, so moving it moves the receive, the
backoff and SQS's 12-hour cap together; nothing here waits on real time.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from aiosqsq import Message
from aiosqsq.backends.base import BatchResult, VisibilityEntry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester
from tests.helpers import FakeClock, make_app, make_queue

TWELVE_HOURS_S = 43_200


class RecordingBackend(MemoryBackend):
    """The memory backend, keeping every visibility change asked of it and its result."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.changes: list[tuple[VisibilityEntry, bool]] = []  # (entry, accepted)

    async def change_visibility_batch(
        self, queue_url: str, entries: Sequence[VisibilityEntry]
    ) -> BatchResult:
        result = await super().change_visibility_batch(queue_url, entries)
        self.changes += [(entry, entry.id in result.successful) for entry in entries]
        return result


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> RecordingBackend:
    return RecordingBackend(clock)


async def _hidden_for(
    backend: MemoryBackend, clock: FakeClock, url: str, *, at_least_s: float, at_most_s: float
) -> None:
    """The one message of ``url`` is hidden ``at_least_s`` from now and visible again
    ``at_most_s`` from now (the clock is left at the latter)."""
    clock.advance(at_least_s)
    depth = await backend.get_queue_depth(url)
    assert (depth.visible, depth.in_flight) == (0, 1), f"visible before {at_least_s} s"
    clock.advance(at_most_s - at_least_s)
    depth = await backend.get_queue_depth(url)
    assert (depth.visible, depth.in_flight) == (1, 0), f"still hidden after {at_most_s} s"


async def test_backoff_grows_with_the_receive_count_up_to_the_max_delay(
    backend: RecordingBackend, clock: FakeClock
) -> None:
    # base 10 s, cap 100 s: the ceiling is 10, 20, 40, 80, then 100 (not 160, 320), and
    # the delay is drawn between half of it and all of it.
    url = await make_queue(backend, max_receive_count=None)
    app = make_app(backend, retry_base_delay=10, retry_max_delay=100)
    receive_counts: list[int] = []

    @app.handler()
    async def handle(payload: str, message: Message) -> None:
        receive_counts.append(message.receive_count)
        raise RuntimeError("fails every time")

    await app.send("x")
    tester = AppTester(app)
    ceilings = (10, 20, 40, 80, 100, 100)
    for ceiling_s in ceilings:
        drained = await tester.drain()
        assert len(drained.retried) == 1
        # A second early and a second late: the memory backend takes fractions, SQS
        # whole seconds.
        await _hidden_for(
            backend, clock, url, at_least_s=ceiling_s / 2 - 1, at_most_s=ceiling_s + 1
        )
    assert receive_counts == [1, 2, 3, 4, 5, 6]
    asked = [entry.visibility_timeout_s for entry, _ in backend.changes]
    assert all(accepted for _, accepted in backend.changes)
    print(f"backoff delays asked: {[round(s, 1) for s in asked]}")
    assert len(asked) == len(ceilings)
    for asked_s, ceiling_s in zip(asked, ceilings, strict=True):
        assert ceiling_s / 2 <= asked_s <= ceiling_s


async def test_a_failure_near_twelve_hours_after_the_receive_hides_it_only_until_then(
    backend: RecordingBackend, clock: FakeClock
) -> None:
    # The handler fails 43,190 s after the receive with a backoff of 300-600 s due: SQS
    # refuses visibility past 12 hours after the receive, so only 10 s may be asked.
    url = await make_queue(backend, visibility_timeout_s=TWELVE_HOURS_S, max_receive_count=None)
    app = make_app(backend, retry_base_delay=600, retry_max_delay=900)

    @app.handler()
    async def handle(payload: str) -> None:
        clock.advance(TWELVE_HOURS_S - 10)
        raise RuntimeError("fails late")

    await app.send("x")
    drained = await AppTester(app).drain()

    assert len(drained.retried) == 1
    assert [(entry.visibility_timeout_s, accepted) for entry, accepted in backend.changes] == [
        (10, True)
    ]
    await _hidden_for(backend, clock, url, at_least_s=9, at_most_s=11)


async def test_release_with_a_delay_hides_the_message_for_that_delay(
    backend: RecordingBackend, clock: FakeClock
) -> None:
    url = await make_queue(backend)
    app = make_app(backend)

    @app.handler()
    async def handle(payload: str, message: Message) -> None:
        await message.release(100)

    await app.send("x")
    drained = await AppTester(app).drain()

    assert (len(drained.released), len(drained.succeeded)) == (1, 0)
    await _hidden_for(backend, clock, url, at_least_s=99, at_most_s=101)


async def test_an_undecodable_message_without_a_dlq_is_hidden_for_the_max_retry_delay(
    backend: RecordingBackend, clock: FakeClock
) -> None:
    url = await make_queue(backend, max_receive_count=None)
    app = make_app(backend, retry_base_delay=5, retry_max_delay=600)

    @app.handler()
    async def handle(payload: dict[str, int]) -> None:
        raise AssertionError("never called")

    await app.send("[1, 2")
    drained = await AppTester(app).drain()

    assert len(drained.retried) == 1
    await _hidden_for(backend, clock, url, at_least_s=599, at_most_s=601)
