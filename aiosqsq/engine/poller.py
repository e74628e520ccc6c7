"""Pollers: the receive loops of one consumer.

Each loop reserves free handler slots first (see :mod:`aiosqsq.engine.slots`), asks
``ReceiveMessage`` for at most that many, and hands what arrives to the consumer, so
every received message already owns a slot. Messages held (running, or awaiting their
delete) never exceed the concurrency plus one batch per poller: the hold limit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import anyio

from aiosqsq.backends.base import MAX_RECEIVE_MESSAGES, QueueBackend, QueueInfo, QueueMessage
from aiosqsq.engine.backoff import retry_delay_s
from aiosqsq.engine.burst import BurstTracker
from aiosqsq.engine.config import ConsumerConfig
from aiosqsq.engine.registry import InFlightRegistry
from aiosqsq.engine.slots import Slots
from aiosqsq.errors import CALL_FAILURES, is_transient

logger = logging.getLogger("aiosqsq.consumer")

_SHORT_POLL_PAUSE_S = 0.1


class Pollers:
    """Runs ``config.pollers`` receive loops for one queue until the stop event is set."""

    def __init__(
        self,
        backend: QueueBackend,
        info: QueueInfo,
        config: ConsumerConfig,
        slots: Slots,
        registry: InFlightRegistry,
        *,
        hold_limit: int,
        stopping: anyio.Event,
        deliver: Callable[[list[QueueMessage]], None],
    ) -> None:
        self._backend = backend
        self._info = info
        self._config = config
        self._slots = slots
        self._registry = registry
        self._hold_limit = hold_limit
        self._stopping = stopping
        self._deliver = deliver  # registers and starts what a receive brought
        self._reserved = 0  # slots reserved by pollers for a receive in progress

    async def run(self, *, burst: BurstTracker | None = None) -> None:
        """Receive until stopped; with ``burst``, report each receive to it (it stops the
        app once every queue was found empty at once). A refused receive (access denied,
        a missing queue) is raised; transient failures are retried with backoff."""
        async with anyio.create_task_group() as loops:
            for _ in range(self._config.pollers):
                loops.start_soon(self._poll, burst)

    async def _poll(self, burst: BurstTracker | None) -> None:
        loop = burst.add_loop() if burst is not None else 0
        failures = 0
        attempt_id: str | None = None
        wait_time_s: float = self._config.wait_time_s
        if burst:  # an exact in-process backend answers a short poll truly; SQS samples
            wait_time_s = 0 if self._backend.receive_is_cancel_safe else min(wait_time_s, 1)
        # the most one receive asks for: 10, QUEUE_MAX_MESSAGES, and the slots there are
        most = min(MAX_RECEIVE_MESSAGES, self._config.max_messages, self._slots.total)
        while not self._stopping.is_set():
            reserved = await self._reserve(most)
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
            if messages:
                if burst is not None:
                    burst.received(loop)
                self._deliver(messages)
                continue
            if burst is not None and self._registry:
                # The queue looks empty but held messages may come back: wait for them.
                await self._registry.wait_empty()
                continue
            if burst is not None and stamp is not None:
                burst.found_empty(loop, stamp)  # may end the burst: the loop then ends
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
            room = self._hold_limit - len(self._registry) - self._reserved
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
