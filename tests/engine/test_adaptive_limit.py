"""The adaptive concurrency limit on the memory backend, in virtual time.

Each test runs on :class:`VirtualTimeLoop`, an event loop whose clock jumps to the next
timer whenever nothing is ready: a handler that "takes" 50 ms sleeps 50 ms of loop time
and no wall-clock time. The memory backend reads the same clock (``MemoryBackend(clock=
loop.time)``), and so does the app's engine: the limit's windows, the handler latencies
it measures and the receives' waits are all on the one virtual clock, so each run is
exact and no bound here depends on the machine's speed. The downstream a handler calls
is simulated: a latency that grows with the calls in flight beyond a knee, failures for a
while, throttled receives.
"""

from __future__ import annotations

import asyncio
import logging
import random
import selectors
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import pytest

from aiosqsq import App
from aiosqsq.backends.base import QueueMessage
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.engine.config import DEFAULT_INITIAL_LIMIT
from aiosqsq.errors import BackendError, ConfigurationError
from aiosqsq.settings import QueueSettings
from tests.helpers import make_app, make_queue

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    """A selector that, when nothing is ready, moves the loop's clock to the next timer
    instead of sleeping."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # nothing scheduled: wait for I/O, bounded
            return super().select(1.0)
        self._loop.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: ``time()`` moves only when every task waits."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


def run_virtual(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(scenario())


@dataclass
class Downstream:
    """What a handler calls: ``base_s`` per call up to ``knee`` calls in flight, then
    slower in proportion (a saturated server: at most ``knee / base_s`` calls a second);
    failing while ``failing`` says so (every ``fail_every``-th call)."""

    base_s: float
    knee: int | None = None
    failing: Callable[[float], bool] = lambda now: False
    slower: Callable[[float], float] = lambda now: 1.0  # every call's latency times this
    fail_every: int = 3
    in_flight: int = 0
    peak: int = 0
    calls: int = 0
    latencies: list[float] = field(default_factory=list)

    async def call(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.calls += 1
        number = self.calls
        try:
            latency = self.base_s * self.slower(anyio.current_time())
            if self.knee is not None and self.in_flight > self.knee:
                latency *= self.in_flight / self.knee
            await anyio.sleep(latency)
            self.latencies.append(latency)
            if self.failing(anyio.current_time()) and number % self.fail_every == 0:
                raise ConnectionError("the downstream failed")
        finally:
            self.in_flight -= 1


@dataclass
class Trace:
    """The app's limit sampled every ``step_s`` of loop time: (time, limit)."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[int]:
        return [limit for at, limit in self.samples if start <= at <= end]


async def consume(
    app: App, seconds: float, *, step_s: float = 0.1, during: Callable[[float], None] = print
) -> Trace:
    """Run ``app`` for ``seconds`` of loop time, sampling its limit."""
    trace = Trace()
    async with app:
        began = anyio.current_time()
        while (now := anyio.current_time() - began) < seconds:
            trace.samples.append((now, app.statistics().concurrency_limit))
            await anyio.sleep(step_s)
    return trace


async def backlog(backend: MemoryBackend, count: int, **settings: object) -> App:
    """An app on ``backend`` with a queue of ``count`` messages."""
    await make_queue(backend, visibility_timeout_s=60, max_receive_count=None)
    options: dict[str, Any] = {"retry_base_delay": 0.05, "retry_max_delay": 0.2, **settings}
    app = make_app(backend, **options)
    for start in range(0, count, 500):
        await app.send_batch([str(i) for i in range(start, min(count, start + 500))])
    return app


async def _run_with(
    downstream: Downstream, messages: int, seconds: float, **settings: object
) -> Trace:
    """A backlog of ``messages`` consumed for ``seconds`` by a handler that calls
    ``downstream``, with an adaptive limit (``settings`` bound it)."""
    backend = MemoryBackend(clock=asyncio.get_running_loop().time)
    app = await backlog(backend, messages, **settings)

    @app.handler()
    async def handle(body: str) -> None:
        await downstream.call()

    return await consume(app, seconds)


def test_the_limit_grows_from_low_while_throughput_grows_and_stops_at_the_maximum() -> None:
    async def scenario() -> tuple[Trace, Downstream, App]:
        backend = MemoryBackend(clock=asyncio.get_running_loop().time)
        app = await backlog(backend, 20_000, concurrency_max=60)
        downstream = Downstream(base_s=0.1)

        @app.handler()
        async def handle(body: str) -> None:
            await downstream.call()

        return await consume(app, 12), downstream, app

    trace, downstream, app = run_virtual(scenario)
    print(trace.samples[::10])
    assert trace.samples[0][1] == DEFAULT_INITIAL_LIMIT  # starts low
    assert trace.between(6, 12) == [60] * len(trace.between(6, 12))  # grew to the maximum
    assert max(limit for _, limit in trace.samples) == 60  # and never past it
    assert downstream.peak <= 60  # calls in flight never passed the limit
    stats = app.statistics()
    assert stats.limit_changes >= 3  # 10 -> 20 -> 40 -> 60


def test_the_limit_settles_near_a_downstream_knee_and_holds_steady() -> None:
    knee = 40

    downstream = Downstream(base_s=0.05, knee=knee)
    trace = run_virtual(lambda: _run_with(downstream, 30_000, 30))
    steady = trace.between(10, 30)
    print(f"limit from 10 s: min {min(steady)} max {max(steady)}; peak calls {downstream.peak}")
    # within 20% of the knee, and no swing wider than 20% of the mean in steady state
    assert min(steady) >= 0.8 * knee, steady
    assert max(steady) <= 1.2 * knee, steady
    mean = sum(steady) / len(steady)
    assert (max(steady) - min(steady)) / mean <= 0.2, steady
    # no growth while the downstream is saturated: latency stays near its unloaded value
    late = sorted(downstream.latencies[len(downstream.latencies) // 2 :])
    p99 = late[int(len(late) * 0.99)]
    assert p99 <= 2 * downstream.base_s, p99


def test_failures_shrink_the_limit_within_2_s_and_it_recovers_after() -> None:
    # the loop's clock starts at 0: the downstream fails on every third call from 5 to 10 s
    downstream = Downstream(base_s=0.05, failing=lambda now: 5 <= now < 10)
    trace = run_virtual(lambda: _run_with(downstream, 20_000, 25, concurrency_max=50))
    before = trace.between(4, 4.95)
    during = trace.between(7, 10)
    after = trace.between(20, 25)
    print(f"before {before[-1]}, during max {max(during)}, after min {min(after)}")
    assert before[-1] == 50
    assert max(during) <= 25  # dropped by half or more within 2 s of the first failure
    assert min(after) >= 40  # recovered


def test_a_downstream_slower_for_every_call_is_relearned_not_shrunk_to_the_minimum() -> None:
    # from 5 s every call takes twice as long, however many run: that is not congestion
    downstream = Downstream(base_s=0.05, slower=lambda now: 2.0 if now >= 5 else 1.0)
    trace = run_virtual(lambda: _run_with(downstream, 20_000, 25, concurrency_max=60))
    late = trace.between(15, 25)
    print(f"before {trace.between(4, 4.95)[-1]}, from 5 s min {min(trace.between(5, 25))}")
    assert trace.between(4, 4.95)[-1] == 60
    assert min(trace.between(5, 25)) >= 30  # a couple of shrinks, then the new latency is known
    assert late == [60] * len(late)


class _RefusingBackend(MemoryBackend):
    """Refuses receives with ``refusal`` while it is set (as the SQS backend raises a
    throttled receive: ``throttled=True``)."""

    refusal: BackendError | None = None

    async def receive(self, queue_url: str, **options: Any) -> list[QueueMessage]:
        if self.refusal is not None:
            raise self.refusal
        return await super().receive(queue_url, **options)


def _refused_from_6_to_10_s(refusal: BackendError) -> Trace:
    """A backlog consumed for 12 s (limit 8 to 40) whose receives are refused with
    ``refusal`` from 6 s to 10 s. The pollers' retry delays are jittered: the jitter is
    drawn from a seeded generator, so that the scenario, in virtual time, is one."""

    async def scenario() -> Trace:
        backend = _RefusingBackend(clock=asyncio.get_running_loop().time)
        app = await backlog(backend, 10_000, concurrency_min=8, concurrency_max=40)
        downstream = Downstream(base_s=0.05)

        @app.handler()
        async def handle(body: str) -> None:
            await downstream.call()

        async def refuse_later() -> None:
            await anyio.sleep(6)
            backend.refusal = refusal
            await anyio.sleep(4)
            backend.refusal = None

        async with anyio.create_task_group() as tg:
            tg.start_soon(refuse_later)
            trace = await consume(app, 12)
        return trace

    state = random.getstate()
    random.seed(12)
    try:
        return run_virtual(scenario)
    finally:
        random.setstate(state)


def _limit_changes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "concurrency limit of" in r.getMessage()]


def test_sqs_throttling_halves_the_limit_but_never_below_the_minimum(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttling = BackendError("ThrottlingException", "Rate exceeded", throttled=True)
    with caplog.at_level(logging.DEBUG, logger="aiosqsq.consumer"):
        trace = _refused_from_6_to_10_s(throttling)
    assert trace.between(5, 5.95)[-1] == 40
    throttled = trace.between(6.5, 10)
    assert min(throttled) == 8  # halved, again and again, down to the minimum only
    changes = _limit_changes(caplog)
    # one DEBUG line per change, with its reason
    assert any(m.endswith("handle: 40 -> 20 (SQS throttled a receive)") for m in changes), changes


def test_a_failed_receive_the_backend_does_not_call_throttled_does_not_shrink_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # retryable, and its code even names throttling: only the backend's flag counts
    unavailable = BackendError("ThrottlingLikeOutage", "Service Unavailable", retryable=True)
    with caplog.at_level(logging.DEBUG, logger="aiosqsq.consumer"):
        _refused_from_6_to_10_s(unavailable)
    assert not [m for m in _limit_changes(caplog) if "SQS throttled a receive" in m]


@pytest.mark.parametrize("where", ["setting", "handler"])
def test_a_pinned_concurrency_never_moves(where: str) -> None:
    async def scenario() -> tuple[Trace, Downstream, App]:
        backend = MemoryBackend(clock=asyncio.get_running_loop().time)
        settings: dict[str, object] = {"concurrency": 7} if where == "setting" else {}
        app = await backlog(backend, 3_000, **settings)
        downstream = Downstream(base_s=0.05, knee=3)  # saturated: an adaptive one shrinks

        @app.handler(concurrency=7 if where == "handler" else None)
        async def handle(body: str) -> None:
            await downstream.call()

        return await consume(app, 5), downstream, app

    trace, downstream, app = run_virtual(scenario)
    assert {limit for _, limit in trace.samples} == {7}
    assert downstream.peak == 7
    assert app.statistics().limit_changes == 0


def test_the_bounds_are_checked_and_the_error_names_both_variables() -> None:
    with pytest.raises(ConfigurationError) as raised:
        QueueSettings(_env_file=None, concurrency_min=50, concurrency_max=20)
    assert str(raised.value) == (
        "QUEUE_CONCURRENCY_MIN=50 is above QUEUE_CONCURRENCY_MAX=20: set the minimum at "
        "most the maximum"
    )
    assert QueueSettings(_env_file=None).concurrency is None  # adaptive by default


def test_each_handler_adapts_on_its_own_and_a_greedy_queue_starves_none() -> None:
    """A queue whose downstream takes all it is given beside one whose downstream
    saturates at 10 calls: each limit goes its own way, and the second queue is served
    at its downstream's full rate all along."""

    async def scenario() -> tuple[dict[str, list[int]], Downstream]:
        backend = MemoryBackend(clock=asyncio.get_running_loop().time)
        app = await backlog(backend, 20_000, concurrency_max=100)
        await make_queue(backend, "narrow", visibility_timeout_s=60, max_receive_count=None)
        await app.send_batch([str(i) for i in range(3_000)], queue="narrow")
        greedy, narrow = Downstream(base_s=0.02), Downstream(base_s=0.05, knee=10)

        @app.handler()
        async def wide(body: str) -> None:
            await greedy.call()

        @app.handler(queue="narrow")
        async def slow(body: str) -> None:
            await narrow.call()

        limits: dict[str, list[int]] = {"jobs": [], "narrow": []}
        async with app:
            for _ in range(100):
                await anyio.sleep(0.1)
                for (queue, _), stats in app.consumer_statistics().items():
                    limits[queue].append(stats.concurrency_limit)
        return limits, narrow

    limits, narrow = run_virtual(scenario)
    print({name: (min(values[50:]), max(values[50:])) for name, values in limits.items()})
    assert limits["jobs"][-1] == 100  # the greedy one grew to its maximum
    assert max(limits["narrow"][50:]) <= 14  # the narrow one settled near its knee
    # 10 calls of 50 ms: 200 a second at most; it got at least 80% of that over 10 s
    assert narrow.calls >= 0.8 * 200 * 10


class _DistantBackend(MemoryBackend):
    """Every receive takes ``round_trip_s``, as SQS's does over the network."""

    round_trip_s = 0.03

    async def receive(self, queue_url: str, **options: Any) -> list[QueueMessage]:
        await anyio.sleep(self.round_trip_s)
        return await super().receive(queue_url, **options)


def test_receives_run_ahead_of_the_handlers_within_the_hold_limit() -> None:
    """10 calls of 50 ms at once can handle 200 messages a second; receiving only for free
    slots would leave them idle for each 30 ms receive (125 a second). The pipeline keeps
    them busy, and what is held stays within the limit plus one batch per poller."""

    async def scenario() -> tuple[int, int]:
        backend = _DistantBackend(clock=asyncio.get_running_loop().time)
        # an adaptive limit held at 10 by its bounds (a pinned one receives only for free
        # slots, as it always did)
        app = await backlog(backend, 3_000, concurrency_min=10, concurrency_max=10)
        downstream = Downstream(base_s=0.05)
        held = 0

        @app.handler()
        async def handle(body: str) -> None:
            nonlocal held
            held = max(held, app.statistics().in_flight)
            await downstream.call()

        await consume(app, 10)
        return downstream.calls, held

    calls, held = run_virtual(scenario)
    print(f"{calls} calls in 10 s, at most {held} held")
    assert calls >= 0.95 * 200 * 10
    assert held <= 10 + 10  # the limit plus one batch for its one poller
