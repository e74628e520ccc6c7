"""One consumer per handler: the wiring of pollers, the handler pool, the settler, the
acker and the heartbeat, and the running of each message's handler.

Data flow: the pollers (:mod:`~aiosqsq.engine.poller`) reserve free handler slots,
receive at most that many messages and hand them here; each is registered in the
in-flight registry and its handler started on the pool (FIFO: behind the earlier
messages of its group). The outcome goes to the settler (:mod:`~aiosqsq.engine.settle`),
which turns it into a fate carried out by the acker; the heartbeat keeps held messages
hidden meanwhile.

Shutdown (:meth:`Consumer.stop`, or cancellation of :meth:`Consumer.run`):

1. stop receiving, and hand back (visibility 0) at once every message whose handler
   has not started;
2. abort long polls where the backend says that is safe, else let the poll in flight end
   and hand back what it brings at once;
3. let running handlers finish until ``shutdown_timeout_s`` after the stop;
4. cancel the rest and hand their messages back;
5. flush every pending delete and visibility change, shielded from cancellation.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
from anyio.abc import TaskGroup

from aiosqsq.backends.base import (
    MAX_RECEIVE_MESSAGES,
    QueueBackend,
    QueueInfo,
    QueueMessage,
    VisibilityEntry,
)
from aiosqsq.codec import PayloadError
from aiosqsq.engine.acker import ACKER_PARALLEL_REQUESTS, Acker, DeletedHook
from aiosqsq.engine.adaptive import AdaptiveLimit
from aiosqsq.engine.backoff import visibility_left_s
from aiosqsq.engine.burst import BurstTracker
from aiosqsq.engine.config import ConsumerConfig
from aiosqsq.engine.heartbeat import Heartbeat
from aiosqsq.engine.limiter import ConcurrencyLimit
from aiosqsq.engine.poller import Pollers
from aiosqsq.engine.pool import Pool
from aiosqsq.engine.registry import InFlight, InFlightRegistry, State
from aiosqsq.engine.settle import (
    SUCCEEDED,
    BadPayload,
    Failed,
    Fate,
    Observer,
    Outcome,
    Settler,
)
from aiosqsq.engine.slots import Slots
from aiosqsq.engine.stats import Counters, Statistics
from aiosqsq.errors import AccessError, BackendError, LeaseError, Retry, describe_error
from aiosqsq.message import Lease

logger = logging.getLogger("aiosqsq.consumer")

__all__ = ["Consumer", "Fate", "Observer", "Process", "connections_needed"]

#: What the consumer runs per message: decode the body and call the handler (through any
#: middleware). Raises PayloadError for a body that does not decode, Retry to ask for a
#: later delivery; any other exception is a failure retried with backoff.
Process = Callable[[QueueMessage, Lease], Awaitable[None]]


def connections_needed(config: ConsumerConfig) -> int:
    """Concurrent requests a consumer may have on the wire: its long polls, the acker's
    parallel batches and the heartbeat's."""
    return config.pollers + ACKER_PARALLEL_REQUESTS + 1


class Consumer:
    """Consumes one queue with one handler. Create, ``await run()``, ``stop()``."""

    def __init__(
        self,
        name: str,
        process: Process,
        backend: QueueBackend,
        info: QueueInfo,
        config: ConsumerConfig,
        *,
        timeout_s: float | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
        message_slots: int | None = None,
        on_deleted: DeletedHook | None = None,
    ) -> None:
        """``message_slots``: messages held for handling at once (default: the
        concurrency; a batch consumer holds a batch per slot). ``on_deleted``: see
        :class:`~aiosqsq.engine.acker.Acker`."""
        self.name = name  # the handler's, for logs
        self.info = info
        self.config = config
        self._process = process
        self._timeout_s = timeout_s
        self._backend = backend
        self._clock = clock
        self.visibility_timeout_s = float(
            info.visibility_timeout_s
            if config.visibility_timeout_s is None
            else config.visibility_timeout_s
        )
        self.registry = InFlightRegistry()
        self.counters = Counters()
        # The handler calls running at once: pinned, or moved by an adaptive limit (not
        # for a batch consumer, whose slots hold batches).
        self.limit = ConcurrencyLimit(config.concurrency, name=name)
        self.adaptive: AdaptiveLimit | None = None
        if config.adaptive is not None and message_slots is None:
            self.adaptive = AdaptiveLimit(
                self.limit,
                config.adaptive,
                clock=clock,
                next_poller_at=self._next_poller_at,
            )
            self.limit.follow(self._follow_limit)
        self._batch_slots = message_slots  # None: slots follow the limit
        self._slots = Slots(message_slots or self._slot_count())
        lock = anyio.Lock()
        self._visibility_lock = lock
        self._acker = Acker(
            backend,
            info.url,
            self.registry,
            visibility_lock=lock,
            clock=clock,
            on_access_lost=self._access_lost,
            on_deleted=on_deleted,
        )
        self.heartbeat = Heartbeat(
            backend,
            info.url,
            self.registry,
            self.counters,
            visibility_timeout_s=self.visibility_timeout_s,
            visibility_lock=lock,
            clock=clock,
            on_access_lost=self._access_lost,
        )
        self._settler = Settler(
            backend,
            info,
            config,
            self.registry,
            self._acker,
            self.counters,
            observer=observer,
            clock=clock,
        )
        self._access_error: AccessError | None = None
        self._receive_error: BaseException | None = None
        self._stop = anyio.Event()
        self._stop_at: float | None = None
        self._groups: dict[str, deque[InFlight]] = {}
        self._pollers = Pollers(
            backend,
            info,
            config,
            self._slots,
            self.registry,
            self.limit,
            hold_limit=lambda: self.hold_limit,
            receive_size=self._receive_size,
            stopping=self._stop,
            deliver=self._start,
            feedback=self.adaptive,
        )
        self._pool: Pool[Any]

    def __repr__(self) -> str:
        return (
            f"<Consumer {self.name} queue={self.info.name} "
            f"concurrency={self.limit.limit} pollers={self.config.pollers} "
            f"in_flight={len(self.registry)}>"
        )

    @property
    def concurrency_limit(self) -> int:
        """Handler calls allowed to run at once now (read-only; for metrics)."""
        return self.limit.limit

    @property
    def hold_limit(self) -> int:
        """The most messages held at once: the handler slots (the limit, or a batch
        consumer's batches) + one batch per running poller, awaiting their delete or
        visibility change or received ahead of the handlers; so a slow acker throttles
        receiving."""
        slots = self._batch_slots or self.limit.limit
        return slots + MAX_RECEIVE_MESSAGES * self.config.pollers_for(self.limit.limit)

    def _receive_size(self) -> int:
        """The most one receive asks for: 10, QUEUE_MAX_MESSAGES, and the slots there are."""
        slots = self._batch_slots or self.limit.limit
        return min(MAX_RECEIVE_MESSAGES, self.config.max_messages, slots)

    def _slot_count(self) -> int:
        """Slots at the current limit: the limit, and with an adaptive limit one
        receive's worth per running poller, received while the handlers run (the
        pipeline; a pinned limit receives only for free slots, as it always did)."""
        limit = self.limit.limit
        if self.adaptive is None:
            return limit
        return limit + self.config.pollers_for(limit) * self._receive_size()

    def _next_poller_at(self, limit: int) -> int | None:
        """The smallest limit that runs one more poller than ``limit``, if any can."""
        running = self.config.pollers_for(limit)
        if not self.config.pollers_follow_limit or running >= self.config.pollers:
            return None
        return (running + 1) * MAX_RECEIVE_MESSAGES

    def _follow_limit(self, limit: int) -> None:
        self._slots.resize(self._slot_count())

    def statistics(self) -> Statistics:
        return self.counters.snapshot(
            in_flight=len(self.registry),
            concurrency_limit=self.limit.limit,
            limit_changes=self.limit.changes_count,
        )

    def stop(self) -> None:
        """Begin a graceful stop; :meth:`run` returns when it is done. Idempotent."""
        if not self._stop.is_set():
            self._stop_at = self._clock()
            self._stop.set()
            self._slots.close()
            self.registry.wake()

    async def run(self, *, burst: bool | BurstTracker = False) -> None:
        """Consume until :meth:`stop` (or, with ``burst``, until the queue is empty and
        nothing is held; an app passes the tracker all its consumers share).
        Cancelling it hands every held message back before it ends.

        Raises the error that made consuming impossible, after a graceful stop (running
        handlers given the shutdown timeout, deletes flushed): a refused receive (access
        denied, a missing queue), or an :class:`~aiosqsq.errors.AccessError` on a delete
        or visibility change.
        """
        async with anyio.create_task_group() as services:
            services.start_soon(self._acker.run)
            services.start_soon(self.heartbeat.run)
            try:
                await self._consume(burst)
            finally:
                with anyio.CancelScope(shield=True):
                    self._settler.hand_back(self.registry.in_state(State.WAITING, State.RUNNING))
                    await self._acker.flush()
                services.cancel_scope.cancel()
        if self._receive_error is not None:
            raise self._receive_error
        if self._access_error is not None:
            raise self._access_error

    def _access_lost(self, exc: AccessError) -> None:
        """A delete or visibility change was refused for good (access denied, credentials
        invalid or expired): stop gracefully, then raise it, as a refused receive does."""
        if self._access_error is None:
            self._access_error = exc
            self.stop()

    async def _consume(self, burst: bool | BurstTracker) -> None:
        async with anyio.create_task_group() as handlers:
            self._pool = Pool(handlers, self._work, size=self._pool_size())
            self._consuming(handlers)
            async with anyio.create_task_group() as receiving:
                receiving.start_soon(self._run_pollers, burst)
                await self._stop.wait()
                # Hand back what has not started at once, not after the long polls in
                # flight: on SQS they are let finish, which can take WaitTimeSeconds.
                self._settler.hand_back(self.registry.in_state(State.WAITING))
                if self._backend.receive_is_cancel_safe:
                    receiving.cancel_scope.cancel()
            # Nothing is received any more (what the last polls brought went back at
            # once, in _start): hand back anything else that has not started.
            self._settler.hand_back(self.registry.in_state(State.WAITING))
            grace_s = self.config.shutdown_timeout_s - (self._clock() - (self._stop_at or 0))
            with anyio.move_on_after(max(0.0, grace_s)):
                await self._slots.wait_all_free()
            running = self.registry.in_state(State.RUNNING)
            for entry in running:
                logger.warning(
                    "handler %s still ran on message %s when the shutdown timeout (%g s) "
                    "ended: it is cancelled and the message handed back",
                    self.name,
                    entry.message.message_id,
                    self.config.shutdown_timeout_s,
                )
            # Handed back before the cancellation: a handler that swallows it and returns
            # must not have its message deleted (the late outcome is ignored).
            self._settler.hand_back(running)
            handlers.cancel_scope.cancel()

    def _pool_size(self) -> int:
        """Workers: the concurrency when pinned (a batch consumer's counts batches); with
        an adaptive limit one per call it may ever allow and one per message received
        ahead (it waits for the limit, not for a worker)."""
        if self.adaptive is None:
            return self.config.concurrency
        ahead = min(MAX_RECEIVE_MESSAGES, self.config.max_messages) * self.config.pollers
        return self.config.max_concurrency + ahead

    def _consuming(self, task_group: TaskGroup) -> None:
        """Start what runs beside the handlers while consuming (a batch consumer's timer)."""

    async def _run_pollers(self, burst: bool | BurstTracker) -> None:
        if burst is True:
            burst = BurstTracker(self.stop, loops=self.config.pollers)
        try:
            await self._pollers.run(burst=burst or None)
        except Exception as exc:
            # A refused receive (access denied, the queue gone): stop gracefully, as a
            # signal does, and raise it from run() once the running handlers are done.
            self._receive_error = _sole_exception(exc)
        finally:
            self.stop()

    def _register(self, messages: list[QueueMessage]) -> Iterator[InFlight]:
        """Register what a receive brought; yield the entries to start (none once
        stopping: a long poll that ended after the stop is handed back at once)."""
        now = self._clock()
        stopping = self._stop.is_set()
        for message in messages:
            entry = self.registry.add(
                message, now=now, visibility_timeout_s=self.visibility_timeout_s
            )
            self.counters.received += 1
            if stopping:
                self._settler.hand_back([entry])
                self._slots.release()
            else:
                yield entry

    def _start(self, messages: list[QueueMessage]) -> None:
        """Register what a receive brought and start (or queue) each handler."""
        for entry in self._register(messages):
            message = entry.message
            group = message.group_id if self.info.fifo else None
            if group is None:
                self._pool.dispatch(entry)
            elif group in self._groups:
                self._groups[group].append(entry)
            else:
                self._groups[group] = deque([entry])
                self._pool.dispatch(group)

    # -- handling ----------------------------------------------------------------------

    async def _work(self, item: Any, worker_scope: anyio.CancelScope) -> None:
        """What a pool worker does with one item: a message, or a FIFO group to run."""
        if isinstance(item, str):
            await self._run_group(item)
            return
        assert isinstance(item, InFlight)
        try:
            if item.state is State.WAITING:  # else handed back before it started
                await self.limit.acquire()
                try:
                    if item.state is State.WAITING:
                        await self._handle(item, worker_scope)
                finally:
                    self.limit.release()
        finally:
            self._slots.release()

    async def _run_group(self, group: str) -> None:
        """Run a FIFO group's messages one at a time, in order; after a failure, hand the
        rest back unhandled so that none overtakes the failed one."""
        waiting = self._groups[group]
        try:
            while waiting:
                entry = waiting.popleft()
                try:
                    if entry.state is not State.WAITING:
                        continue  # lost its lease while it waited
                    await self.limit.acquire()
                    try:
                        fate = await self._handle(entry)
                    finally:
                        self.limit.release()
                finally:
                    self._slots.release()
                if fate not in ("succeeded", "dead_lettered"):
                    self._settler.hand_back(waiting)
                    self._slots.release(len(waiting))
                    waiting.clear()
        finally:
            del self._groups[group]
            self._slots.release(len(waiting))  # cancelled: the final sweep hands them back

    async def _handle(
        self, entry: InFlight, worker_scope: anyio.CancelScope | None = None
    ) -> Fate | None:
        """Run the handler for one message and settle it; return its fate (None when it
        was settled otherwise: its lease lost, or released by the handler).

        Never raises but for cancellation: an exception that escapes the settling itself
        (a bug, or a backend raising what it should not) is logged once and the message
        retried with backoff, so no message can stop the consumer.
        """
        try:
            started = self._clock()
            outcome = await self._run_handler(entry, worker_scope)
            if self.adaptive is not None:  # a Retry is asked for, not a failure
                failed = isinstance(outcome, Failed) and outcome.delay_s is None
                self.adaptive.finished(self._clock() - started, failed=failed)
            if entry.lease_lost or entry.released_by_handler:
                return None
            return await self._settler.settle(entry, outcome)
        except Exception as exc:
            logger.error(
                "internal error while handling message %s on %s (%s); it is retried with backoff",
                entry.message.message_id,
                self.info.name,
                type(exc).__name__,
                exc_info=exc,
            )
            return self._settler.retry(entry, self._settler.backoff_s(entry.message))

    async def _run_handler(
        self, entry: InFlight, worker_scope: anyio.CancelScope | None
    ) -> Outcome:
        """Call the handler (decoding included) and say what happened.

        Without a timeout the handler runs in ``worker_scope``, its pool worker's cancel
        scope, when one is given: a lost lease cancels that scope, and the cancellation
        ends the worker's current item (the worker goes on in a fresh scope). That saves
        a cancel scope per message. FIFO groups pass none: a group must survive the loss
        of one message's lease, to hand the rest back.
        """
        message = entry.message
        entry.state = State.RUNNING
        lease = EntryLease(self, entry)
        try:
            if worker_scope is not None and self._timeout_s is None:
                entry.cancel_scope = worker_scope
                try:
                    await self._process(message, lease)
                finally:
                    entry.cancel_scope = None
            else:
                scope = entry.cancel_scope = anyio.CancelScope()
                if self._timeout_s is not None:
                    scope.deadline = anyio.current_time() + self._timeout_s
                with scope:
                    await self._process(message, lease)
                if scope.cancel_called and not entry.lease_lost:
                    logger.error(
                        "handler %s timed out after %g s on message %s; it was cancelled",
                        self.name,
                        self._timeout_s,
                        message.message_id,
                    )
                    return Failed(error_class="HandlerTimeout")
        except Retry as retry:
            return Failed(retry.delay_s, error_class="Retry")
        except PayloadError as error:
            return BadPayload(error)
        except Exception as exc:
            logger.error(
                "handler %s failed on message %s (receive %d): %s",
                self.name,
                message.message_id,
                message.receive_count,
                describe_error(exc),
                exc_info=exc,
            )
            return Failed(error_class=type(exc).__name__)
        return SUCCEEDED

    # -- the lease a handler holds -----------------------------------------------------

    async def extend(self, entry: InFlight, seconds: float) -> None:
        """Keep ``entry`` hidden for ``seconds`` from now.

        Raises :class:`~aiosqsq.errors.LeaseError` when the message is settled or the
        extension passes the 12-hour cap, BackendError when SQS refuses.
        """
        if not self._settler.holds(entry):
            raise LeaseError(f"message {entry.message.message_id} was already settled")
        if seconds > visibility_left_s(entry.received_at, self._clock()):
            raise LeaseError(
                f"cannot extend by {seconds:g} s: SQS caps visibility at 12 hours after the receive"
            )
        now = self._clock()
        request = [VisibilityEntry("0", entry.receipt_handle, seconds)]
        async with self._visibility_lock:
            result = await self._backend.change_visibility_batch(self.info.url, request)
        if result.failed:
            failure = result.failed[0]
            raise BackendError(failure.code, failure.message)
        entry.visible_at = now + seconds

    def release(self, entry: InFlight, delay_s: float) -> None:
        """Hand ``entry`` back, visible after ``delay_s``; the handler's outcome no longer
        decides its fate. Raises :class:`~aiosqsq.errors.LeaseError` if already settled."""
        if not self._settler.holds(entry):
            raise LeaseError(f"message {entry.message.message_id} was already settled")
        entry.released_by_handler = True
        self._settler.release(entry, delay_s)


class EntryLease:
    """The lease on one held message, as a handler's :class:`~aiosqsq.Message` uses it."""

    __slots__ = ("_consumer", "_entry")

    def __init__(self, consumer: Consumer, entry: InFlight) -> None:
        self._consumer = consumer
        self._entry = entry

    async def extend(self, seconds: float) -> None:
        await self._consumer.extend(self._entry, seconds)

    async def release(self, delay_s: float) -> None:
        self._consumer.release(self._entry, delay_s)


def _sole_exception(exc: BaseException) -> BaseException:
    """The first error inside (nested) exception groups: the receive loops' task group
    wraps the one that stopped them."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
