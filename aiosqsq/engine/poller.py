"""Pollers: the receive loops of one consumer.

Each loop reserves free handler slots first (see :mod:`aiosqsq.engine.slots`), asks
``ReceiveMessage`` for at most that many, and hands what arrives to the consumer, so
every received message already owns a slot. The slots are the concurrency limit plus one
batch per running poller: a poller receives its next batch while the handlers run, so
with fast handlers no handler waits for a round trip to SQS. Messages held (waiting,
running, or awaiting their delete) never exceed the limit plus one batch per poller: the
hold limit. When the pollers follow an adaptive limit, only as many loops receive as
the limit has full batches; the others wait until it grows.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import anyio

from aiosqsq.backends.base import QueueBackend, QueueInfo, QueueMessage
from aiosqsq.engine.adaptive import AdaptiveLimit
from aiosqsq.engine.backoff import retry_delay_s
from aiosqsq.engine.burst import BurstTracker
from aiosqsq.engine.config import ConsumerConfig
from aiosqsq.engine.limiter import ConcurrencyLimit
from aiosqsq.engine.registry import InFlightRegistry
from aiosqsq.engine.slots import Slots
from aiosqsq.errors import CALL_FAILURES, BackendError, is_transient

logger = logging.getLogger("aiosqsq.consumer")

_SHORT_POLL_PAUSE_S = 0.1


class Pollers:
    """Runs up to ``config.pollers`` receive loops for one queue until the stop event is
    set: ``config.pollers_for(limit)`` of them at the current limit.

    ``hold_limit()`` and ``receive_size()`` are read before each receive (they follow
    the limit); ``feedback`` is told of each receive and of each receive the backend
    reports throttled (``BackendError.throttled``).
    """

    def __init__(
        self,
        backend: QueueBackend,
        info: QueueInfo,
        config: ConsumerConfig,
        slots: Slots,
        registry: InFlightRegistry,
        limit: ConcurrencyLimit,
        *,
        hold_limit: Callable[[], int],
        receive_size: Callable[[], int],
        stopping: anyio.Event,
        deliver: Callable[[list[QueueMessage]], None],
        feedback: AdaptiveLimit | None = None,
    ) -> None:
        self._backend = backend
        self._info = info
        self._config = config
        self._slots = slots
        self._registry = registry
        self._limit = limit
        self._hold_limit = hold_limit
        self._receive_size = receive_size
        self._stopping = stopping
        self._deliver = deliver  # registers and starts what a receive brought
        self._feedback = feedback
        self._reserved = 0  # slots reserved by pollers for a receive in progress
        self._dormant: set[int] = set()  # burst keys of loops waiting for the limit to grow
        self._limit_moved: anyio.Event | None = None
        limit.follow(self._wake_dormant)

    @property
    def running(self) -> int:
        """Receive loops that receive at the current limit."""
        return self._config.pollers_for(self._limit.limit)

    async def run(self, *, burst: BurstTracker | None = None) -> None:
        """Receive until stopped; with ``burst``, report each receive to it (it stops the
        app once every queue was found empty at once). A refused receive (access denied,
        a missing queue) is raised; transient failures are retried with backoff."""
        async with anyio.create_task_group() as loops:
            for index in range(self._config.pollers):
                loops.start_soon(self._poll, burst, index)

    def _wake_dormant(self, limit: int) -> None:
        if self._limit_moved is not None:
            self._limit_moved.set()
            self._limit_moved = None

    async def _wait_until_running(self, index: int, key: int) -> None:
        """Wait while loop ``index`` is beyond the pollers the limit runs (or until the
        stop); in burst mode it counts as idle meanwhile (see :meth:`_found_empty`)."""
        while index >= self.running and not self._stopping.is_set():
            self._dormant.add(key)
            if self._limit_moved is None:
                self._limit_moved = anyio.Event()
            await _first_of(self._limit_moved, self._stopping)
        self._dormant.discard(key)

    def _found_empty(self, burst: BurstTracker, loop: int, stamp: int) -> None:
        """Report an empty receive with nothing held; a dormant loop would have found the
        same, so it is reported alike first (else the burst could never end)."""
        for dormant in self._dormant:
            burst.found_empty(dormant, stamp)
        burst.found_empty(loop, stamp)

    async def _poll(self, burst: BurstTracker | None, index: int) -> None:
        loop = burst.add_loop() if burst is not None else -1 - index
        failures = 0
        attempt_id: str | None = None
        wait_time_s: float = self._config.wait_time_s
        if burst:  # an exact in-process backend answers a short poll truly; SQS samples
            wait_time_s = 0 if self._backend.receive_is_cancel_safe else min(wait_time_s, 1)
        while not self._stopping.is_set():
            if index >= self.running:
                await self._wait_until_running(index, loop)
                continue
            reserved = await self._reserve(self._receive_size())
            if reserved == 0:
                return
            if self._info.fifo and attempt_id is None:
                attempt_id = uuid.uuid4().hex  # reused on retry: SQS returns the same batch
            # an empty answer means "drained" only if nothing was held when it was asked:
            # a message handed back meanwhile may not have been visible to it yet
            stamp = burst.activity if burst is not None and not self._registry else None
            try:
                messages = await self._backend.receive(
                    self._info.url,
                    max_messages=reserved,
                    wait_time_s=wait_time_s,
                    visibility_timeout_s=self._config.visibility_timeout_s,
                    attempt_id=attempt_id,
                )
            except CALL_FAILURES as exc:
                self._slots.release(reserved)
                if not is_transient(exc):
                    raise
                # the backend that translated the error knows whether it was throttling
                if self._feedback is not None and isinstance(exc, BackendError) and exc.throttled:
                    self._feedback.throttled()
                failures += 1
                delay_s = retry_delay_s(failures, base_s=0.1, max_s=5.0)
                logger.warning(
                    "receive from %s failed (%s); retrying in %.1f s", self._info.name, exc, delay_s
                )
                with anyio.move_on_after(delay_s):
                    await self._stopping.wait()
                continue
            except BaseException:
                self._slots.release(reserved)  # cancelled (shutdown): nothing was received
                raise
            finally:
                self._reserved -= reserved
            failures, attempt_id = 0, None
            self._slots.release(reserved - len(messages))
            if self._feedback is not None:
                self._feedback.received(reserved, len(messages))
            if messages:
                if burst is not None:
                    burst.received(loop)
                self._deliver(messages)
                continue
            if burst is not None and self._registry:
                # The queue looks empty but held messages may come back: wait for them, or
                # for a stop (Consumer.stop wakes wait_shrunk), whichever comes first.
                while self._registry and not self._stopping.is_set():
                    await self._registry.wait_shrunk()
                continue
            if burst is not None and stamp is not None:
                self._found_empty(burst, loop, stamp)  # may end the burst: the loop then ends
            if wait_time_s == 0 and not self._stopping.is_set():
                await anyio.sleep(_SHORT_POLL_PAUSE_S)  # short polling: do not spin

    async def _reserve(self, most: int) -> int:
        """Reserve slots for one receive, within the hold limit; 0 once stopping.

        Like the slots' fill wait: when the hold limit leaves room for only part of the
        reservation (messages awaiting their delete), wait up to ``fill_wait_s`` for the
        acker to free more before receiving fewer.
        """
        fill_wait_s = self._config.fill_wait_s
        reserved = await self._slots.reserve(most, fill_wait_s=fill_wait_s)
        deadline = anyio.current_time() + fill_wait_s
        while reserved and not self._stopping.is_set():
            room = self._hold_limit() - len(self._registry) - self._reserved
            left_s = deadline - anyio.current_time()
            if room >= reserved or (room > 0 and left_s <= 0):
                self._slots.release(max(0, reserved - room))
                reserved = min(reserved, room)
                self._reserved += reserved
                return reserved
            if room > 0:
                with anyio.move_on_after(left_s):
                    await self._registry.wait_shrunk()
            else:
                await self._registry.wait_shrunk()
        self._slots.release(reserved)
        return 0


async def _first_of(*events: anyio.Event) -> None:
    """Return once any of ``events`` is set."""
    async with anyio.create_task_group() as waiting:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            waiting.cancel_scope.cancel()

        for event in events:
            waiting.start_soon(wait, event)
