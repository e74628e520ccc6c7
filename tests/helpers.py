"""Helpers for tests that run the engine on the memory backend."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable

import anyio

from aiosqsq import App, QueueSettings
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.lifespan import Lifespan


async def make_queue(
    backend: MemoryBackend,
    name: str = "jobs",
    *,
    visibility_timeout_s: float = 30,
    max_receive_count: int | None = 5,
    fifo: bool = False,
) -> str:
    """Create ``name`` (and ``<name>-dlq`` when ``max_receive_count`` is set); return its URL."""
    suffix = ".fifo" if fifo else ""
    base = {"FifoQueue": "true"} if fifo else {}
    attributes = {**base, "VisibilityTimeout": str(visibility_timeout_s)}
    if max_receive_count is not None:
        dlq_url = await backend.create_queue(f"{name}-dlq{suffix}", base)
        dlq = await backend.get_queue_info(dlq_url)
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive_count}
        )
    return await backend.create_queue(f"{name}{suffix}", attributes)


def make_app(
    backend: MemoryBackend, *, lifespan: Lifespan | None = None, **settings: object
) -> App:
    options: dict[str, object] = {"backend": "memory", "sqs_queue_url": "jobs"}
    options.update(settings)
    return App(QueueSettings(**options), backend=backend, lifespan=lifespan)


async def eventually(predicate: Callable[[], bool], *, timeout_s: float = 5.0) -> None:
    """Wait (bounded) until ``predicate()`` holds; for conditions only time can bring."""
    with anyio.fail_after(slow(timeout_s)):
        while not predicate():
            await anyio.sleep(0.01)


SLOWDOWN_VARIABLE = "AIOSQSQ_TEST_SLOWDOWN"


def slowdown() -> float:
    """How much slower than a quiet 2-core machine this one is: ``AIOSQSQ_TEST_SLOWDOWN``
    (default 1). Every wall-clock bound of the suite is multiplied by it. Raises
    :class:`ValueError` naming the variable when it is not a number >= 1."""
    raw = os.environ.get(SLOWDOWN_VARIABLE, "1")
    try:
        factor = float(raw)
    except ValueError:
        factor = math.nan
    if not (math.isfinite(factor) and factor >= 1):
        raise ValueError(
            f"{SLOWDOWN_VARIABLE}={raw!r} is invalid: expected a number >= 1 (for example 3 "
            "on a loaded machine)"
        )
    return factor


def slow(seconds: float) -> float:
    """A wall-clock bound (a timeout, "within N s") scaled for this machine: ``seconds``
    times :func:`slowdown`. Lower bounds and the scenario's own timings are not scaled."""
    return seconds * slowdown()


class FakeClock:
    """A monotonic clock a test moves by hand: give it to ``MemoryBackend(clock=...)`` and
    the queues' visibility and delays, and the app's engine (backoff, the 12-hour cap,
    heartbeat deadlines), follow it exactly."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
