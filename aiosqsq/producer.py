"""The producer: coalesces concurrent sends to one queue into ``SendMessageBatch`` calls.

The first send to a queue opens a batch. If no request to that queue is on the wire, the
batch goes out at once (after one scheduler pass, so sends started in the same tick join
it): a lone send pays no delay. Otherwise it waits a short linger for company and goes
out when it holds 10 entries (SQS's cap), when the next entry would take it past 1 MiB,
or when the linger ends. Every caller gets its own MessageId or its own error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import anyio
import anyio.lowlevel

from aiosqsq.backends.base import (
    MAX_BATCH_ENTRIES,
    BatchResult,
    QueueBackend,
    SendEntry,
    message_size,
)
from aiosqsq.backends.limits import batch_has_room
from aiosqsq.errors import BackendError, MessageRefusedError

_RETRIES = 3  # per entry, for failures SQS marks as not the sender's fault


@dataclass(eq=False)
class _Batch:
    entries: list[SendEntry] = field(default_factory=list)
    size: int = 0
    full: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    result: BatchResult | None = None
    error: BaseException | None = None


class Producer:
    """Sends messages for many concurrent callers with as few requests as it can."""

    def __init__(self, backend: QueueBackend, *, linger_s: float = 0.005) -> None:
        self._backend = backend
        self._linger_s = linger_s
        self._open: dict[str, _Batch] = {}
        self._on_the_wire: dict[str, int] = {}  # requests in progress per queue

    async def send(self, queue_url: str, entry: SendEntry) -> str:
        """Send one entry (its ``id`` is replaced); return the new MessageId.

        Raises :class:`~aiosqsq.errors.BackendError` if SQS refuses this entry or the
        request fails. A send cancelled while its batch is on the wire may still land.
        """
        for attempt in range(_RETRIES + 1):
            try:
                return await self._send_once(queue_url, entry)
            except BackendError as exc:
                if not exc.retryable or attempt == _RETRIES:
                    raise
                await anyio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    async def _send_once(self, queue_url: str, entry: SendEntry) -> str:
        size = message_size(entry.body, entry.message_attributes)
        batch = self._open.get(queue_url)
        leader = batch is None or not batch_has_room(len(batch.entries), batch.size, size)
        if leader:
            if batch is not None:
                batch.full.set()  # let the current leader go now
            batch = self._open[queue_url] = _Batch()
        assert batch is not None
        index = len(batch.entries)
        batch.entries.append(replace(entry, id=str(index)))
        batch.size += size
        if len(batch.entries) == MAX_BATCH_ENTRIES:
            batch.full.set()
            self._open.pop(queue_url, None)
        if leader:
            await self._lead(queue_url, batch)
        else:
            await batch.done.wait()
        return _outcome(batch, index)

    async def _lead(self, queue_url: str, batch: _Batch) -> None:
        # Shielded: the other callers of this batch wait on it even if the leader is
        # cancelled; a bounded linger plus one request.
        with anyio.CancelScope(shield=True):
            try:
                await anyio.lowlevel.checkpoint()
                if self._on_the_wire.get(queue_url):
                    with anyio.move_on_after(self._linger_s):
                        await batch.full.wait()
                if self._open.get(queue_url) is batch:
                    del self._open[queue_url]
                self._on_the_wire[queue_url] = self._on_the_wire.get(queue_url, 0) + 1
                try:
                    batch.result = await self._backend.send_batch(queue_url, batch.entries)
                finally:
                    self._on_the_wire[queue_url] -= 1
                    if not self._on_the_wire[queue_url]:
                        del self._on_the_wire[queue_url]  # one key per busy queue only
            except Exception as exc:
                batch.error = exc
            finally:
                batch.done.set()


def _outcome(batch: _Batch, index: int) -> str:
    if batch.error is not None:
        if isinstance(batch.error, BackendError):  # its class too (AccessError, ...)
            raise batch.error.copy()
        raise BackendError("SendFailed", str(batch.error), retryable=True) from batch.error
    assert batch.result is not None
    entry_id = str(index)
    message_id = batch.result.message_ids.get(entry_id)
    if message_id is not None:
        return message_id
    for failure in batch.result.failed:
        if failure.id == entry_id:
            if failure.sender_fault:
                raise MessageRefusedError(failure.code, failure.message)
            raise BackendError(failure.code, failure.message, retryable=True)
    raise BackendError("SendFailed", "SQS returned no outcome for this entry", retryable=True)
