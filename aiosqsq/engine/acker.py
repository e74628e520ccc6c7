"""The acker: coalesces one queue's deletes and visibility changes into batch calls.

* Batches of up to 10 entries (SQS's cap), sent when 10 are ready or after a short
  linger, and always on shutdown (:meth:`Acker.flush`). Up to 8 requests are out at once,
  each on a long-lived sender: a full batch goes at once, not after the ones before it.
* Entry ids are positional (``"0"``..``"9"``) within each request: never the MessageId,
  which a standard queue may hand out twice inside one window (BatchEntryIdsNotDistinct).
* One pending operation per MessageId, with the newest receipt handle.
* Per-entry failures are read even when the call succeeded: transient ones are retried
  with backoff, sender faults (stale or invalid receipt handle) are logged once and
  dropped; successful entries are never sent again.
* ``on_deleted``, when given, is awaited with the messages whose delete SQS confirmed
  (never before), except those deleted after a copy to the dead-letter queue: the large
  payloads' cleanup (:mod:`aiosqsq.large_payload`) deletes their S3 objects there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from aiosqsq.backends.base import (
    MAX_BATCH_ENTRIES,
    BatchResult,
    DeleteEntry,
    QueueBackend,
    QueueMessage,
    VisibilityEntry,
)
from aiosqsq.engine.pool import Pool
from aiosqsq.engine.registry import InFlight, InFlightRegistry
from aiosqsq.errors import CALL_FAILURES, AccessError, is_transient

logger = logging.getLogger("aiosqsq.acker")

_MAX_ATTEMPTS = 8  # after that the message is left to its visibility timeout (redelivered)
ACKER_PARALLEL_REQUESTS = 8
_ON_DELETED_TIMEOUT_S = 30.0  # a slow cleanup holds one sender for at most this long

#: Awaited with messages whose delete succeeded (see the module docstring); must not raise.
DeletedHook = Callable[[Sequence[QueueMessage]], Awaitable[None]]


@dataclass(slots=True, eq=False)
class _Pending:
    entry: InFlight
    visibility_timeout_s: float | None  # None: delete
    attempts: int = 0
    not_before: float = 0.0
    notify: bool = True  # tell on_deleted once deleted (not after a dead-letter copy)


_Batch = tuple[dict[str, _Pending], list[_Pending]]  # up to 10 entries and their table


class Acker:
    """Settles messages of one queue in batches. Enqueueing never blocks or raises."""

    def __init__(
        self,
        backend: QueueBackend,
        queue_url: str,
        registry: InFlightRegistry,
        *,
        visibility_lock: anyio.Lock,
        linger_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        on_access_lost: Callable[[AccessError], None] | None = None,
        on_deleted: DeletedHook | None = None,
    ) -> None:
        self._backend = backend
        self._on_deleted = on_deleted
        self._on_access_lost = on_access_lost  # the consumer stops: no call can succeed
        self._queue_url = queue_url
        self._registry = registry
        self._visibility_lock = visibility_lock  # shared with the heartbeat: no overlap
        self._linger_s = linger_s
        self._clock = clock
        self._deletes: dict[str, _Pending] = {}
        self._changes: dict[str, _Pending] = {}
        self._work = anyio.Event()
        self._full = anyio.Event()
        self._limiter = anyio.CapacityLimiter(ACKER_PARALLEL_REQUESTS)
        self._sending = 0  # batches the run loop has in flight
        self._idle: anyio.Event | None = None  # made by flush while it awaits them

    @property
    def pending(self) -> int:
        return len(self._deletes) + len(self._changes)

    def delete(self, entry: InFlight, *, notify: bool = True) -> None:
        """Delete ``entry``'s message (its handler succeeded; ``notify=False``: it was
        copied to the dead-letter queue, and ``on_deleted`` is not told)."""
        self._enqueue(self._deletes, _Pending(entry, None, notify=notify))

    def change_visibility(self, entry: InFlight, timeout_s: float) -> None:
        """Make ``entry``'s message visible again ``timeout_s`` seconds from the call."""
        self._enqueue(self._changes, _Pending(entry, timeout_s))

    def _enqueue(self, table: dict[str, _Pending], pending: _Pending) -> None:
        message_id = pending.entry.message.message_id
        older = table.get(message_id)
        if older is not None and older.entry is not pending.entry:
            # The same message was delivered twice: settle with the newest handle only.
            self._registry.remove(older.entry)
        table[message_id] = pending
        self._work.set()
        if len(table) >= MAX_BATCH_ENTRIES:
            self._full.set()

    async def run(self) -> None:
        """Send in the background until cancelled (then call :meth:`flush`).

        Each batch goes to a sender of a :class:`Pool` as soon as it is full, up to
        ``ACKER_PARALLEL_REQUESTS`` at once, without waiting for the batches sent before
        it: under real latency the held messages (and the pollers' hold limit) are freed
        batch by batch, not a whole flush at a time. A partial batch goes after the linger.
        Long-lived senders, not a task per batch: an anyio task costs tens of µs to start.
        """
        wait_s: float | None = None  # set while entries wait out a retry backoff
        senders: Pool[_Batch] | None = None
        try:
            async with anyio.create_task_group() as task_group:
                senders = Pool(task_group, self._send_in_background, size=ACKER_PARALLEL_REQUESTS)
                while True:
                    if wait_s is None:  # the common case: no timer to arm
                        await self._work.wait()
                    else:
                        with anyio.move_on_after(wait_s):
                            await self._work.wait()
                    if not self._full.is_set():
                        with anyio.move_on_after(self._linger_s):
                            await self._full.wait()
                    wait_s = self._dispatch(senders, full_only=self._full.is_set())
        finally:
            for item in senders.take_unstarted() if senders is not None else ():
                self._requeue(item)  # cancelled before a sender took it
                self._sent()

    def _dispatch(self, senders: Pool[_Batch], *, full_only: bool) -> float | None:
        """Hand each ready batch (only full ones with ``full_only``) to a sender, within the
        cap on parallel requests; return seconds until a backed-off entry is due."""
        self._work = anyio.Event()
        self._full = anyio.Event()
        now = self._clock()
        room = ACKER_PARALLEL_REQUESTS - self._sending
        batches, capped, partial = self._take_ready(now, full_only=full_only, most=room)
        for batch in batches:
            self._sending += 1
            senders.dispatch(batch)
        if partial and not capped:  # else the next sender to finish wakes the loop
            self._work.set()  # a partial batch: linger for company, then send it
        return self._next_due_s(now)

    def _take_ready(
        self, now: float, *, full_only: bool = False, most: int | None = None
    ) -> tuple[list[_Batch], bool, bool]:
        """Take the entries past their backoff out of their tables, in batches of up to 10
        (only full ones with ``full_only``), at most ``most`` batches.

        Returns the batches, whether ``most`` left ready batches behind, and whether a
        partial batch was left behind by ``full_only``.
        """
        batches: list[_Batch] = []
        capped = partial = False
        for table in (self._deletes, self._changes):
            ready = [p for p in table.values() if p.not_before <= now]
            sendable = len(ready) - len(ready) % MAX_BATCH_ENTRIES if full_only else len(ready)
            for start in range(0, sendable, MAX_BATCH_ENTRIES):
                if most is not None and len(batches) >= most:
                    capped = True
                    break
                batch = ready[start : start + MAX_BATCH_ENTRIES]
                for pending in batch:
                    del table[pending.entry.message.message_id]
                batches.append((table, batch))
            partial = partial or len(ready) > sendable
        return batches, capped, partial

    def _next_due_s(self, now: float) -> float | None:
        """Seconds until the first entry still in its retry backoff is due, if any."""
        due = [p.not_before for t in (self._deletes, self._changes) for p in t.values()]
        later = [t for t in due if t > now]
        return min(later) - now if later else None

    async def _send_in_background(self, item: _Batch, _scope: anyio.CancelScope) -> None:
        table, batch = item
        try:
            await self._send_batch(table, batch)
        except anyio.get_cancelled_exc_class():
            self._requeue(item)  # cut off before the answer: the flush sends it again
            raise
        finally:
            self._sent()

    def _sent(self) -> None:
        self._sending -= 1
        if self._deletes or self._changes:
            self._work.set()  # entries left by the cap, or retries: look again
            if max(len(self._deletes), len(self._changes)) >= MAX_BATCH_ENTRIES:
                self._full.set()
        if not self._sending and self._idle is not None:
            self._idle.set()
            self._idle = None

    def _requeue(self, item: _Batch) -> None:
        """Put a batch that was not sent, or not answered, back in its table."""
        table, batch = item
        for pending in batch:
            message_id = pending.entry.message.message_id
            if message_id in table:  # a newer delivery of it was queued meanwhile
                self._registry.remove(pending.entry)
            else:
                table[message_id] = pending

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Send everything pending, retrying transient failures, for up to ``timeout_s``."""
        with anyio.move_on_after(timeout_s):
            while self.pending or self._sending:
                if not self.pending:  # only the run loop's sends are still out: await them
                    self._idle = self._idle or anyio.Event()
                    await self._idle.wait()
                    continue
                wait_s = await self._send_ready()
                if wait_s:
                    await anyio.sleep(wait_s)
        for table in (self._deletes, self._changes):
            for pending in table.values():
                logger.warning(
                    "message %s on %s was not settled before shutdown ended; SQS will "
                    "deliver it again after its visibility timeout",
                    pending.entry.message.message_id,
                    self._queue_url,
                )
                self._registry.remove(pending.entry)
            table.clear()

    async def _send_ready(self) -> float | None:
        """Send every entry past its backoff; return seconds until the next one is due."""
        self._work = anyio.Event()
        self._full = anyio.Event()
        batches, _, _ = self._take_ready(self._clock())
        if len(batches) == 1:  # the common case: no task to spawn
            await self._send_batch(*batches[0])
        elif batches:
            # The first batch is sent by this task, the others by one task each; the
            # limiter is needed only when there are more batches than parallel requests.
            send = (
                self._send_batch if len(batches) <= ACKER_PARALLEL_REQUESTS else self._send_limited
            )
            async with anyio.create_task_group() as tg:
                for table, batch in batches[1:]:
                    tg.start_soon(send, table, batch)
                await send(*batches[0])
        return self._next_due_s(self._clock())

    async def _send_limited(self, table: dict[str, _Pending], batch: Sequence[_Pending]) -> None:
        async with self._limiter:
            await self._send_batch(table, batch)

    async def _send_batch(self, table: dict[str, _Pending], batch: Sequence[_Pending]) -> None:
        try:
            result = await self._call(batch)
        except CALL_FAILURES as exc:
            if isinstance(exc, AccessError) and self._on_access_lost is not None:
                self._on_access_lost(exc)
            for pending in batch:
                self._retry_or_drop(table, pending, str(exc), retryable=is_transient(exc))
            return
        deleted: list[QueueMessage] = []
        for entry_id in result.successful:
            pending = batch[int(entry_id)]
            self._registry.remove(pending.entry)
            if pending.notify and pending.visibility_timeout_s is None:
                deleted.append(pending.entry.message)
        for failure in result.failed:
            pending = batch[int(failure.id)]
            reason = f"{failure.code}: {failure.message}"
            self._retry_or_drop(table, pending, reason, retryable=not failure.sender_fault)
        if deleted and self._on_deleted is not None:
            await self._tell_deleted(self._on_deleted, deleted)

    async def _tell_deleted(self, hook: DeletedHook, messages: list[QueueMessage]) -> None:
        # Shielded and bounded: the deletes are done, so a cancellation here must not put
        # the batch back for sending again.
        with anyio.move_on_after(_ON_DELETED_TIMEOUT_S, shield=True):
            try:
                await hook(messages)
            except Exception as exc:
                logger.error(
                    "after deleting %d message(s) on %s, on_deleted failed (%s)",
                    len(messages),
                    self._queue_url,
                    type(exc).__name__,
                    exc_info=exc,
                )

    async def _call(self, batch: Sequence[_Pending]) -> BatchResult:
        if batch[0].visibility_timeout_s is None:
            deletes = [DeleteEntry(str(i), p.entry.receipt_handle) for i, p in enumerate(batch)]
            return await self._backend.delete_batch(self._queue_url, deletes)
        changes = [
            VisibilityEntry(str(i), p.entry.receipt_handle, p.visibility_timeout_s or 0)
            for i, p in enumerate(batch)
        ]
        async with self._visibility_lock:
            return await self._backend.change_visibility_batch(self._queue_url, changes)

    def _retry_or_drop(
        self, table: dict[str, _Pending], pending: _Pending, reason: str, *, retryable: bool
    ) -> None:
        action = "delete" if pending.visibility_timeout_s is None else "visibility change"
        message_id = pending.entry.message.message_id
        pending.attempts += 1
        if message_id in table:  # a newer delivery of it was queued meanwhile
            self._registry.remove(pending.entry)
            return
        if retryable and pending.attempts < _MAX_ATTEMPTS:
            pending.not_before = self._clock() + min(5.0, 0.05 * 2**pending.attempts)
            table[message_id] = pending
            return
        logger.warning(
            "%s of message %s on %s failed (%s); SQS will deliver it again after its "
            "visibility timeout",
            action,
            message_id,
            self._queue_url,
            reason,
        )
        self._registry.remove(pending.entry)
