"""A consumer for a batch handler: messages gathered into batches, one handler call each.

* A batch is gathered from one or more receives until it holds ``max_batch_size``
  messages or ``max_wait_s`` passed since its first; then it waits for a free worker
  (``concurrency`` batches run at once). Gathered and running messages are held, so the
  heartbeat keeps them hidden; one more batch than ``concurrency`` is gathered ahead.
* The batch call reports per message: a body that does not decode is dead-lettered on
  its own; the messages the handler returns failed (retried with backoff); the rest
  succeeded. When the call raises, every message not already decided gets the fate the
  exception gives (``Retry(delay_s)``: that delay).
* FIFO: after the first failed message of a group, the later ones of that group in the
  batch are handed back unhandled (not deleted), so none overtakes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup

from aiosqsq.backends.base import QueueBackend, QueueInfo, QueueMessage
from aiosqsq.codec import PayloadError
from aiosqsq.engine.acker import DeletedHook
from aiosqsq.engine.config import ConsumerConfig
from aiosqsq.engine.consumer import Consumer, EntryLease, describe_error
from aiosqsq.engine.registry import InFlight, State
from aiosqsq.engine.settle import SUCCEEDED, BadPayload, Failed, Observer, Outcome, Succeeded
from aiosqsq.errors import Retry
from aiosqsq.message import Lease

logger = logging.getLogger("aiosqsq.consumer")

#: What a batch consumer runs per batch: decode each body and call the handler with the
#: good ones (through any middleware), writing into ``outcomes`` the index of every
#: message that did not succeed (BadPayload, Failed); absent ones succeeded. An
#: exception raised applies to every message not in ``outcomes``.
BatchProcess = Callable[
    [Sequence[QueueMessage], Sequence[Lease], MutableMapping[int, Outcome]], Awaitable[None]
]


class BatchConsumer(Consumer):
    """Consumes one queue with a batch handler."""

    def __init__(
        self,
        name: str,
        process: BatchProcess,
        backend: QueueBackend,
        info: QueueInfo,
        config: ConsumerConfig,
        *,
        max_batch_size: int,
        max_wait_s: float,
        timeout_s: float | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_deleted: DeletedHook | None = None,
    ) -> None:
        super().__init__(
            name,
            _never_called,
            backend,
            info,
            config,
            timeout_s=timeout_s,
            observer=observer,
            clock=clock,
            message_slots=(config.concurrency + 1) * max_batch_size,
            on_deleted=on_deleted,
        )
        self._batch_process = process
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._gathering: list[InFlight] = []
        self._first_gathered = anyio.Event()  # set when a new batch gets its first message

    def _consuming(self, task_group: TaskGroup) -> None:
        task_group.start_soon(self._send_on_time)

    def _start(self, messages: list[QueueMessage]) -> None:
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
                continue
            self._gathering.append(entry)
            if len(self._gathering) == 1:
                self._first_gathered.set()
            if len(self._gathering) >= self._max_batch_size:
                self._dispatch()

    def _dispatch(self) -> None:
        batch, self._gathering = self._gathering, []
        self._first_gathered = anyio.Event()
        if batch:
            self._pool.dispatch(batch)

    async def _send_on_time(self) -> None:
        """Dispatch a batch that is not full ``max_wait_s`` after its first message."""
        while True:
            await self._first_gathered.wait()
            gathering = self._gathering
            await anyio.sleep(self._max_wait_s)
            if self._gathering is gathering and gathering:
                self._dispatch()

    async def _work(self, item: Any, worker_scope: anyio.CancelScope) -> None:
        batch: list[InFlight] = item
        try:
            live = [entry for entry in batch if entry.state is State.WAITING]
            if live:
                await self._handle_batch(live)
        finally:
            self._slots.release(len(batch))

    async def _handle_batch(self, entries: list[InFlight]) -> None:
        for entry in entries:
            entry.state = State.RUNNING
        outcomes: dict[int, Outcome] = {}
        rest = await self._run_batch(entries, outcomes)
        blocked: set[str] = set()  # FIFO groups with an earlier failure in this batch
        for index, entry in enumerate(entries):
            group = entry.message.group_id if self.info.fifo else None
            if group is not None and group in blocked:
                self._settler.hand_back([entry])
                continue
            outcome = outcomes.get(index, rest)
            if entry.lease_lost or entry.released_by_handler:
                fate = None
            elif outcome is SUCCEEDED:
                fate = self._settler.succeed(entry)
            else:
                try:
                    fate = await self._settler.settle(entry, outcome)
                except Exception as exc:
                    logger.error(
                        "internal error while settling message %s on %s (%s); it is retried "
                        "with backoff",
                        entry.message.message_id,
                        self.info.name,
                        type(exc).__name__,
                        exc_info=exc,
                    )
                    fate = self._settler.retry(entry, self._settler.backoff_s(entry.message))
            if group is not None and fate not in ("succeeded", "dead_lettered"):
                blocked.add(group)

    async def _run_batch(
        self, entries: list[InFlight], outcomes: dict[int, Outcome]
    ) -> Succeeded | Failed | BadPayload:
        """Call the batch handler; return the outcome of the messages it left undecided."""
        leases = [EntryLease(self, entry) for entry in entries]
        messages = [entry.message for entry in entries]
        try:
            with anyio.CancelScope() as scope:
                if self._timeout_s is not None:
                    scope.deadline = anyio.current_time() + self._timeout_s
                await self._batch_process(messages, leases, outcomes)
            if scope.cancel_called:
                logger.error(
                    "batch handler %s timed out after %g s on %d messages; it was cancelled",
                    self.name,
                    self._timeout_s,
                    len(entries),
                )
                return Failed(error_class="HandlerTimeout")
        except Retry as retry:
            return Failed(retry.delay_s, error_class="Retry")
        except PayloadError as error:  # a middleware re-raised it for the whole batch
            return BadPayload(error)
        except Exception as exc:
            logger.error(
                "batch handler %s failed on %d messages (first %s): %s",
                self.name,
                len(entries),
                entries[0].message.message_id,
                describe_error(exc),
                exc_info=exc,
            )
            return Failed(error_class=type(exc).__name__)
        return SUCCEEDED


async def _never_called(message: QueueMessage, lease: Lease) -> None:
    raise AssertionError("a batch consumer calls its handler per batch")
