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
  batch are handed back unhandled (not deleted), so none overtakes it. A batch holding a
  group that an earlier batch still holds waits for that batch (and hands the group's
  messages back if it failed there), so batches never reorder a group.
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
from aiosqsq.engine.consumer import Consumer, EntryLease
from aiosqsq.engine.registry import InFlight, State
from aiosqsq.engine.settle import SUCCEEDED, BadPayload, Failed, Observer, Outcome, Succeeded
from aiosqsq.errors import Retry, describe_error
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
        # FIFO: the latest batch holding each group; a later batch with that group waits
        # for it, so a group's messages split across batches still run in order.
        self._group_turns: dict[str, _GroupTurn] = {}

    def stop(self) -> None:
        super().stop()
        self._dispatch()  # what was gathering is handed back: free its slots now

    def _consuming(self, task_group: TaskGroup) -> None:
        task_group.start_soon(self._send_on_time)

    def _start(self, messages: list[QueueMessage]) -> None:
        for entry in self._register(messages):
            self._gathering.append(entry)
            if len(self._gathering) == 1:
                self._first_gathered.set()
            if len(self._gathering) >= self._max_batch_size:
                self._dispatch()

    def _dispatch(self) -> None:
        batch, self._gathering = self._gathering, []
        self._first_gathered = anyio.Event()
        if not batch:
            return
        turn = _GroupTurn()
        if self.info.fifo:
            for entry in batch:
                group = entry.message.group_id
                if group is not None:
                    before = self._group_turns.get(group)
                    if before is not None and before is not turn:
                        turn.after[group] = before
                    self._group_turns[group] = turn
        self._pool.dispatch((batch, turn))

    async def _send_on_time(self) -> None:
        """Dispatch a batch that is not full ``max_wait_s`` after its first message."""
        while True:
            await self._first_gathered.wait()
            gathering = self._gathering
            await anyio.sleep(self._max_wait_s)
            if self._gathering is gathering and gathering:
                self._dispatch()

    async def _work(self, item: Any, worker_scope: anyio.CancelScope) -> None:
        batch, turn = item
        try:
            for before in turn.after.values():
                await before.done.wait()  # an earlier batch with one of our FIFO groups
            # a group that failed in an earlier batch stays behind its failed message
            blocked = {group for group, before in turn.after.items() if group in before.blocked}
            live = [entry for entry in batch if entry.state is State.WAITING]
            if blocked:
                behind = [e for e in live if e.message.group_id in blocked]
                self._settler.hand_back(behind)
                live = [e for e in live if e.message.group_id not in blocked]
            turn.blocked |= blocked
            if live:
                await self._handle_batch(live, turn.blocked)
        finally:
            turn.done.set()
            for group in {e.message.group_id for e in batch}:
                if group is not None and self._group_turns.get(group) is turn:
                    del self._group_turns[group]
            self._slots.release(len(batch))

    async def _handle_batch(self, entries: list[InFlight], blocked: set[str]) -> None:
        """Run the batch handler on ``entries`` and settle each; ``blocked`` collects the
        FIFO groups with a message that did not succeed (their later ones go back)."""
        for entry in entries:
            entry.state = State.RUNNING
        outcomes: dict[int, Outcome] = {}
        rest = await self._run_batch(entries, outcomes)
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


class _GroupTurn:
    """One batch's place in its FIFO groups' order: the batches before it, by group; set
    ``done`` when it is settled; ``blocked``: its groups that must not go on."""

    __slots__ = ("after", "blocked", "done")

    def __init__(self) -> None:
        self.after: dict[str, _GroupTurn] = {}
        self.blocked: set[str] = set()
        self.done = anyio.Event()


async def _never_called(message: QueueMessage, lease: Lease) -> None:
    raise AssertionError("a batch consumer calls its handler per batch")
