"""One consumer per handler: pollers, the handler pool, the acker and the heartbeat.

Data flow: a poller reserves free handler slots, receives at most that many messages,
registers each in the in-flight registry and starts its handler (FIFO: behind the
earlier messages of its group). The outcome goes to the acker; the heartbeat keeps
held messages hidden meanwhile.

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
import uuid
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

import anyio

from aiosqsq.backends.base import (
    MAX_MESSAGE_ATTRIBUTES,
    MAX_MESSAGE_BYTES,
    MAX_RECEIVE_MESSAGES,
    MAX_VISIBILITY_TIMEOUT_S,
    MessageAttributeValue,
    QueueBackend,
    QueueInfo,
    QueueMessage,
    SendEntry,
    VisibilityEntry,
    message_size,
)
from aiosqsq.codec import PayloadError
from aiosqsq.engine.acker import ACKER_PARALLEL_REQUESTS, Acker
from aiosqsq.engine.backoff import retry_delay_s, visibility_left_s
from aiosqsq.engine.heartbeat import Heartbeat
from aiosqsq.engine.pool import Pool
from aiosqsq.engine.registry import InFlight, InFlightRegistry, State
from aiosqsq.engine.slots import Slots
from aiosqsq.engine.stats import Counters, Statistics
from aiosqsq.errors import AccessError, BackendError, Retry
from aiosqsq.handler import HandlerSpec
from aiosqsq.message import Message
from aiosqsq.settings import QueueSettings

logger = logging.getLogger("aiosqsq.consumer")

Fate = Literal["succeeded", "retried", "dead_lettered", "released"]
ERROR_ATTRIBUTE = "aiosqsq-error"  # why a message was dead-lettered
SOURCE_ATTRIBUTE = "aiosqsq-source"  # "<queue name> <original MessageId>"
_SHORT_POLL_PAUSE_S = 0.1


def plan(spec: HandlerSpec, settings: QueueSettings) -> tuple[int, int]:
    """A handler's concurrency and number of pollers under ``settings``."""
    concurrency = spec.concurrency or settings.concurrency
    return concurrency, spec.pollers or settings.pollers_for(concurrency)


def connections_needed(spec: HandlerSpec, settings: QueueSettings) -> int:
    """Concurrent requests a consumer may have on the wire: its long polls, the acker's
    parallel batches and the heartbeat's."""
    return plan(spec, settings)[1] + ACKER_PARALLEL_REQUESTS + 1


class Observer(Protocol):
    """Told every message's fate as it is decided (used by :mod:`aiosqsq.testing`)."""

    def __call__(self, fate: Fate, message: QueueMessage, /) -> None: ...


class Consumer:
    """Consumes one queue with one handler. Create, ``await run()``, ``stop()``."""

    def __init__(
        self,
        spec: HandlerSpec,
        backend: QueueBackend,
        settings: QueueSettings,
        info: QueueInfo,
        *,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.info = info
        self.concurrency, self.pollers = plan(spec, settings)
        self._backend = backend
        self._settings = settings
        self._observer = observer
        self._clock = clock
        self._receive_visibility_s = settings.visibility_timeout  # None: the queue's own
        self.visibility_timeout_s = float(
            info.visibility_timeout_s
            if settings.visibility_timeout is None
            else settings.visibility_timeout
        )
        self.registry = InFlightRegistry()
        self.counters = Counters()
        self._slots = Slots(self.concurrency)
        lock = anyio.Lock()
        self._acker = Acker(
            backend,
            info.url,
            self.registry,
            visibility_lock=lock,
            clock=clock,
            on_access_lost=self._access_lost,
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
        self._access_error: AccessError | None = None
        self._visibility_lock = lock
        self._stop = anyio.Event()
        self._stop_at: float | None = None
        self._groups: dict[str, deque[InFlight]] = {}
        # Held = handler slots + messages awaiting their delete or visibility change; the
        # latter are capped at one batch per poller so a slow acker throttles receiving.
        self.hold_limit = self.concurrency + MAX_RECEIVE_MESSAGES * self.pollers
        self._reserved = 0  # slots reserved by pollers for a receive in progress
        self._receiving = 0  # pollers inside a receive call right now
        self._pool: Pool[InFlight | str]
        self._registered = 0  # messages ever registered: tells burst mode about activity

    def __repr__(self) -> str:
        return (
            f"<Consumer {self.spec.name} queue={self.info.name} "
            f"concurrency={self.concurrency} pollers={self.pollers} "
            f"in_flight={len(self.registry)}>"
        )

    def statistics(self) -> Statistics:
        return self.counters.snapshot(in_flight=len(self.registry))

    def stop(self) -> None:
        """Begin a graceful stop; :meth:`run` returns when it is done. Idempotent."""
        if not self._stop.is_set():
            self._stop_at = self._clock()
            self._stop.set()
            self._slots.close()
            self.registry.wake()

    async def run(self, *, burst: bool = False) -> None:
        """Consume until :meth:`stop` (or, with ``burst``, until the queue is empty and
        nothing is held). Cancelling it hands every held message back before it ends."""
        async with anyio.create_task_group() as services:
            services.start_soon(self._acker.run)
            services.start_soon(self.heartbeat.run)
            try:
                await self._consume(burst)
            finally:
                with anyio.CancelScope(shield=True):
                    self._hand_back(self.registry.in_state(State.WAITING, State.RUNNING))
                    await self._acker.flush()
                services.cancel_scope.cancel()
        if self._access_error is not None:
            raise self._access_error

    def _access_lost(self, exc: AccessError) -> None:
        """A delete or visibility change was refused for good (access denied, credentials
        invalid or expired): stop gracefully, then raise it, as a refused receive does."""
        if self._access_error is None:
            self._access_error = exc
            self.stop()

    async def _consume(self, burst: bool) -> None:
        async with anyio.create_task_group() as handlers:
            self._pool = Pool(handlers, self._work, size=self.concurrency)
            async with anyio.create_task_group() as pollers:
                for _ in range(self.pollers):
                    pollers.start_soon(self._poll, burst)
                await self._stop.wait()
                # Hand back what has not started at once, not after the long polls in
                # flight: on SQS they are let finish, which can take WaitTimeSeconds.
                self._hand_back(self.registry.in_state(State.WAITING))
                if self._backend.receive_is_cancel_safe:
                    pollers.cancel_scope.cancel()
            # Nothing is received any more (what the last polls brought went back at
            # once, in _start): hand back anything else that has not started.
            self._hand_back(self.registry.in_state(State.WAITING))
            grace_s = self._settings.shutdown_timeout - (self._clock() - (self._stop_at or 0))
            with anyio.move_on_after(max(0.0, grace_s)):
                await self._slots.wait_all_free()
            for entry in self.registry.in_state(State.RUNNING):
                logger.warning(
                    "handler %s still ran on message %s when the shutdown timeout (%g s) "
                    "ended: it is cancelled and the message handed back",
                    self.spec.name,
                    entry.message.message_id,
                    self._settings.shutdown_timeout,
                )
            handlers.cancel_scope.cancel()

    # -- receiving ---------------------------------------------------------------------

    async def _poll(self, burst: bool) -> None:
        failures = 0
        attempt_id: str | None = None
        wait_time_s: float = self._settings.wait_time_seconds
        if burst:  # an exact in-process backend answers a short poll truly; SQS samples
            wait_time_s = 0 if self._backend.receive_is_cancel_safe else min(wait_time_s, 1)
        while not self._stop.is_set():
            most = min(MAX_RECEIVE_MESSAGES, self._settings.max_messages)
            reserved = await self._reserve(most)
            if reserved == 0:
                return
            if self.info.fifo and attempt_id is None:
                attempt_id = uuid.uuid4().hex  # reused on retry: SQS returns the same batch
            idle_before = self._registered if not self.registry else None
            self._receiving += 1
            try:
                messages = await self._backend.receive(
                    self.info.url,
                    max_messages=reserved,
                    wait_time_s=wait_time_s,
                    visibility_timeout_s=self._receive_visibility_s,
                    attempt_id=attempt_id,
                )
            except BaseException as exc:
                self._slots.release(reserved)
                if not isinstance(exc, BackendError | OSError | TimeoutError):
                    raise  # cancelled (shutdown) or a bug: nothing was received
                if isinstance(exc, BackendError) and not exc.retryable:
                    raise
                failures += 1
                delay_s = retry_delay_s(failures, base_s=0.1, max_s=5.0)
                logger.warning(
                    "receive from %s failed (%s); retrying in %.1f s", self.info.name, exc, delay_s
                )
                with anyio.move_on_after(delay_s):
                    await self._stop.wait()
                continue
            finally:
                self._receiving -= 1
                self._reserved -= reserved
            failures, attempt_id = 0, None
            self._slots.release(reserved - len(messages))
            self._start(messages)
            if messages:
                continue
            if not burst:
                if wait_time_s == 0:  # short polling an empty queue: do not spin
                    await anyio.sleep(_SHORT_POLL_PAUSE_S)
                continue
            if idle_before == self._registered and not self.registry:
                if not self._receiving:
                    self.stop()  # the last poller to find the queue empty ends the burst
                return  # others are still receiving: the last of them decides
            # The queue looks empty but held messages may come back: wait for them.
            await self.registry.wait_empty()

    async def _reserve(self, most: int) -> int:
        """Reserve slots for one receive, within the hold limit; 0 once stopping."""
        reserved = await self._slots.reserve(most)
        while reserved and not self._stop.is_set():
            room = self.hold_limit - len(self.registry) - self._reserved
            if room > 0:
                self._slots.release(max(0, reserved - room))
                reserved = min(reserved, room)
                self._reserved += reserved
                return reserved
            await self.registry.wait_shrunk()
        self._slots.release(reserved)
        return 0

    def _start(self, messages: list[QueueMessage]) -> None:
        now = self._clock()
        stopping = self._stop.is_set()  # a long poll that ended after the stop
        for message in messages:
            entry = self.registry.add(
                message, now=now, visibility_timeout_s=self.visibility_timeout_s
            )
            self._registered += 1
            self.counters.received += 1
            if stopping:
                self._hand_back([entry])
                self._slots.release()
                continue
            group = message.group_id if self.info.fifo else None
            if group is None:
                self._pool.dispatch(entry)
            elif group in self._groups:
                self._groups[group].append(entry)
            else:
                self._groups[group] = deque([entry])
                self._pool.dispatch(group)

    # -- handling ----------------------------------------------------------------------

    async def _work(self, item: InFlight | str, worker_scope: anyio.CancelScope) -> None:
        """What a pool worker does with one item: a message, or a FIFO group to run."""
        if isinstance(item, str):
            await self._run_group(item)
            return
        try:
            if item.state is State.WAITING:  # else handed back before it started
                await self._handle(item, worker_scope)
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
                    may_continue = await self._handle(entry)
                finally:
                    self._slots.release()
                if not may_continue:
                    self._hand_back(waiting)
                    self._slots.release(len(waiting))
                    waiting.clear()
        finally:
            del self._groups[group]
            self._slots.release(len(waiting))  # cancelled: the final sweep hands them back

    async def _handle(self, entry: InFlight, worker_scope: anyio.CancelScope | None = None) -> bool:
        """Run the handler for one message and settle it. True when a FIFO group may go on.

        Without a timeout the handler runs in ``worker_scope``, its pool worker's cancel
        scope, when one is given: a lost lease cancels that scope, and the cancellation
        ends the worker's current item (the worker goes on in a fresh scope). That saves
        a cancel scope per message. FIFO groups pass none: a group must survive the loss
        of one message's lease, to hand the rest back.
        """
        message = entry.message
        entry.state = State.RUNNING
        try:
            payload = self.spec.decoder.decode(message.body)
        except PayloadError as exc:
            await self._dead_letter(entry, exc)
            return True
        delivered = (
            Message.from_queue_message(message, _Lease(self, entry))
            if self.spec.message_name is not None
            else None
        )
        timed_out = False
        try:
            if worker_scope is not None and self.spec.timeout_s is None:
                entry.cancel_scope = worker_scope
                try:
                    await self.spec.call(payload, delivered)
                finally:
                    entry.cancel_scope = None
            else:
                scope = entry.cancel_scope = anyio.CancelScope()
                if self.spec.timeout_s is not None:
                    scope.deadline = anyio.current_time() + self.spec.timeout_s
                with scope:
                    await self.spec.call(payload, delivered)
                timed_out = scope.cancel_called
        except Retry as retry:
            self._retry(entry, retry.delay_s)
            return False
        except Exception as exc:
            logger.error(
                "handler %s failed on message %s (receive %d): %s",
                self.spec.name,
                message.message_id,
                message.receive_count,
                _describe(exc),
                exc_info=exc,
            )
            self._retry(entry, self._backoff(message))
            return False
        if entry.lease_lost:
            return False
        if timed_out:
            logger.error(
                "handler %s timed out after %g s on message %s; it was cancelled",
                self.spec.name,
                self.spec.timeout_s,
                message.message_id,
            )
            self._retry(entry, self._backoff(message))
            return False
        if entry.released_by_handler:
            return False
        entry.state = State.SETTLING
        self._acker.delete(entry)
        self.counters.succeeded += 1
        self._notify("succeeded", entry)
        return True

    def _backoff(self, message: QueueMessage) -> float:
        return retry_delay_s(
            message.receive_count,
            base_s=self._settings.retry_base_delay,
            max_s=self._settings.retry_max_delay,
        )

    def _retry(self, entry: InFlight, delay_s: float) -> None:
        if entry not in self.registry or entry.state is State.SETTLING:
            return
        entry.state = State.SETTLING
        delay_s = min(delay_s, visibility_left_s(entry.received_at, self._clock()))
        self._acker.change_visibility(entry, delay_s)
        self.counters.retried += 1
        self._notify("retried", entry)

    def _hand_back(self, entries: deque[InFlight] | list[InFlight]) -> None:
        for entry in entries:
            if entry in self.registry and entry.state is not State.SETTLING:
                entry.state = State.SETTLING
                self._acker.change_visibility(entry, 0)
                self.counters.released += 1
                self._notify("released", entry)

    async def _dead_letter(self, entry: InFlight, error: PayloadError) -> None:
        """Move an undecodable message to the dead-letter queue, with the reason in a
        message attribute; without one, hide it for the longest retry delay."""
        message = entry.message
        if self.info.dead_letter_queue_url and await self._copy_to_dlq(message, error):
            entry.state = State.SETTLING
            self._acker.delete(entry)
            self.counters.dead_lettered += 1
            self._notify("dead_lettered", entry)
            logger.error(
                "message %s on %s was moved to the dead-letter queue: %s",
                message.message_id,
                self.info.name,
                error.error_class,
            )
            return
        logger.error(
            "message %s on %s cannot be decoded (%s) and %s; it stays hidden for %g s "
            "and is left to the queue's redrive policy or retention",
            message.message_id,
            self.info.name,
            error.error_class,
            "could not be moved" if self.info.dead_letter_queue_url else "the queue has no DLQ",
            self._settings.retry_max_delay,
        )
        self._retry(entry, self._settings.retry_max_delay)

    async def _copy_to_dlq(self, message: QueueMessage, error: PayloadError) -> bool:
        attributes = dict(message.message_attributes)
        ours: dict[str, MessageAttributeValue] = {
            ERROR_ATTRIBUTE: {
                "DataType": "String",
                "StringValue": f"{error.error_class}: {error.reason}"[:1024],
            },
            SOURCE_ATTRIBUTE: {
                "DataType": "String",
                "StringValue": f"{self.info.name} {message.message_id}",
            },
        }
        for name, value in ours.items():  # SQS allows 10: never drop the sender's own
            with_it = {**attributes, name: value}
            # ... and 1 MiB of body and attributes: the copy must fit, reason or not
            if len(with_it) <= MAX_MESSAGE_ATTRIBUTES and (
                message_size(message.body, with_it) <= MAX_MESSAGE_BYTES
            ):
                attributes = with_it
        entry = SendEntry(
            id="0",
            body=message.body,
            message_attributes=attributes,
            group_id=message.group_id,
            deduplication_id=message.message_id if self.info.fifo else None,
        )
        assert self.info.dead_letter_queue_url is not None
        try:
            result = await self._backend.send_batch(self.info.dead_letter_queue_url, [entry])
        except (BackendError, OSError, TimeoutError) as exc:
            logger.warning("sending message %s to the DLQ failed: %s", message.message_id, exc)
            return False
        return bool(result.successful)

    def _notify(self, fate: Fate, entry: InFlight) -> None:
        if self._observer is not None:
            self._observer(fate, entry.message)

    # -- the lease a handler holds -----------------------------------------------------

    async def _extend(self, entry: InFlight, seconds: float) -> None:
        if entry not in self.registry or entry.state is State.SETTLING:
            raise BackendError("MessageNotHeld", "the message was already settled")
        if seconds > visibility_left_s(entry.received_at, self._clock()):
            raise BackendError(
                "InvalidParameterValue",
                f"cannot extend by {seconds:g} s: SQS caps visibility at "
                f"{MAX_VISIBILITY_TIMEOUT_S} s after the receive",
            )
        now = self._clock()
        request = [VisibilityEntry("0", entry.receipt_handle, seconds)]
        async with self._visibility_lock:
            result = await self._backend.change_visibility_batch(self.info.url, request)
        if result.failed:
            failure = result.failed[0]
            raise BackendError(failure.code, failure.message)
        entry.visible_at = now + seconds

    async def _release(self, entry: InFlight, delay_s: float) -> None:
        if entry not in self.registry or entry.state is State.SETTLING:
            raise BackendError("MessageNotHeld", "the message was already settled")
        entry.released_by_handler = True
        entry.state = State.SETTLING
        delay_s = min(delay_s, visibility_left_s(entry.received_at, self._clock()))
        self._acker.change_visibility(entry, delay_s)
        self.counters.released += 1
        self._notify("released", entry)


class _Lease:
    __slots__ = ("_consumer", "_entry")

    def __init__(self, consumer: Consumer, entry: InFlight) -> None:
        self._consumer = consumer
        self._entry = entry

    async def extend(self, seconds: float) -> None:
        await self._consumer._extend(self._entry, seconds)

    async def release(self, delay_s: float) -> None:
        await self._consumer._release(self._entry, delay_s)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
