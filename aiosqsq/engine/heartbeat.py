"""The heartbeat: keeps held messages hidden while their handlers run.

Every quarter of the visibility timeout it extends, in batches of 10, each held message
(waiting or running, never settling) that has less than half of its visibility left, by
one visibility timeout counted from the call, never past 12 hours after the receive.
If SQS says a message is gone (receipt handle invalid or expired), its lease is lost:
the handler is cancelled, a warning is logged, and the message is forgotten, since
SQS will deliver it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import anyio

from aiosqsq.backends.base import MAX_BATCH_ENTRIES, QueueBackend, VisibilityEntry
from aiosqsq.engine.backoff import visibility_left_s
from aiosqsq.engine.registry import InFlight, InFlightRegistry, State
from aiosqsq.engine.stats import Counters
from aiosqsq.errors import CALL_FAILURES, AccessError

logger = logging.getLogger("aiosqsq.heartbeat")


class Heartbeat:
    def __init__(
        self,
        backend: QueueBackend,
        queue_url: str,
        registry: InFlightRegistry,
        counters: Counters,
        *,
        visibility_timeout_s: float,
        visibility_lock: anyio.Lock,
        clock: Callable[[], float] = time.monotonic,
        on_access_lost: Callable[[AccessError], None] | None = None,
    ) -> None:
        self._backend = backend
        self._on_access_lost = on_access_lost  # the consumer stops: no call can succeed
        self._queue_url = queue_url
        self._registry = registry
        self._counters = counters
        self._visibility_timeout_s = visibility_timeout_s
        self._visibility_lock = visibility_lock
        self._clock = clock

    @property
    def interval_s(self) -> float:
        return max(0.05, self._visibility_timeout_s / 4)

    async def run(self) -> None:
        """Beat until cancelled. A queue with a visibility timeout of 0 needs no beats."""
        if self._visibility_timeout_s <= 0:
            return
        while True:
            await anyio.sleep(self.interval_s)
            await self.beat()

    async def beat(self) -> None:
        now = self._clock()
        due = [
            entry
            for entry in self._registry.in_state(State.WAITING, State.RUNNING)
            if entry.visible_at - now <= self._visibility_timeout_s / 2
        ]
        for start in range(0, len(due), MAX_BATCH_ENTRIES):
            await self._extend(due[start : start + MAX_BATCH_ENTRIES])

    async def _extend(self, batch: Sequence[InFlight]) -> None:
        try:
            async with self._visibility_lock:
                # Built under the lock, just before it is sent: a message settled while an
                # earlier batch was on the wire (or while this one waited for the lock) is
                # left out, so a settled message is never extended.
                now = self._clock()
                entries, timeouts = [], []
                for entry in batch:
                    if entry not in self._registry or entry.state is State.SETTLING:
                        continue
                    timeout_s = min(
                        self._visibility_timeout_s, visibility_left_s(entry.received_at, now)
                    )
                    if timeout_s < 1:
                        self._warn_capped(entry)
                        continue
                    entries.append(entry)
                    timeouts.append(timeout_s)
                if not entries:
                    return
                request = [
                    VisibilityEntry(str(i), entry.receipt_handle, timeouts[i])
                    for i, entry in enumerate(entries)
                ]
                result = await self._backend.change_visibility_batch(self._queue_url, request)
        except CALL_FAILURES as exc:
            if isinstance(exc, AccessError) and self._on_access_lost is not None:
                self._on_access_lost(exc)
                return
            # Transient or not, the next beat tries again while visibility is left.
            logger.warning("heartbeat on %s failed: %s", self._queue_url, exc)
            return
        for entry_id in result.successful:
            index = int(entry_id)
            entries[index].visible_at = now + timeouts[index]
            self._counters.heartbeats_sent += 1
        for failure in result.failed:
            entry = entries[int(failure.id)]
            if failure.sender_fault:
                self._lose_lease(entry, f"{failure.code}: {failure.message}")
            else:
                logger.warning(
                    "heartbeat for message %s on %s failed (%s); retrying on the next beat",
                    entry.message.message_id,
                    self._queue_url,
                    failure.code,
                )

    def _lose_lease(self, entry: InFlight, reason: str) -> None:
        if entry not in self._registry or entry.state is State.SETTLING:
            return  # settled meanwhile: the failure is about a message we no longer hold
        entry.lease_lost = True
        entry.state = State.SETTLING
        if entry.cancel_scope is not None:
            entry.cancel_scope.cancel()
        self._registry.remove(entry)
        self._counters.lease_lost += 1
        logger.warning(
            "lost the lease on message %s on %s (%s): its handler was cancelled and SQS "
            "will deliver the message again",
            entry.message.message_id,
            self._queue_url,
            reason,
        )

    def _warn_capped(self, entry: InFlight) -> None:
        if not entry.cap_warned:
            entry.cap_warned = True
            logger.warning(
                "message %s on %s reached SQS's 12-hour visibility limit: it will become "
                "visible again while its handler still runs",
                entry.message.message_id,
                self._queue_url,
            )
