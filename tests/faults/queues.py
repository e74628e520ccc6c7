"""Queues on moto for the fault tests: each with a dead-letter queue (FIFO too), the
messages the ledger apps read, and the checks made on a queue after a run. Synchronous
calls, for tests that drive worker subprocesses; every queue is removed after the test."""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import replace

import anyio

from aiosqsq.backends.base import (
    MAX_BATCH_ENTRIES,
    MAX_MESSAGE_BYTES,
    QueueMessage,
    SendEntry,
    VisibilityEntry,
    message_size,
)
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.backends.sqs_admin import SQSAdmin
from tests.cli.conftest import MotoQueues


class FaultQueues(MotoQueues):
    """:class:`MotoQueues` plus queues with a chosen visibility timeout or FIFO (each with
    a dead-letter queue), sends of ``{"seq": n}`` bodies or of entries within SQS's
    limits, and what a test reads of a queue once a run is over."""

    def create_with(self, *, visibility_timeout_s: int, max_receive_count: int = 5) -> str:
        return self._create_redriven(
            {"VisibilityTimeout": str(visibility_timeout_s)}, max_receive_count, fifo=False
        )

    def create_fifo(self, *, max_receive_count: int) -> str:
        return self._create_redriven({}, max_receive_count, fifo=True)

    def _create_redriven(
        self, attributes: dict[str, str], max_receive_count: int, *, fifo: bool
    ) -> str:
        name = f"faults-{uuid.uuid4().hex[:10]}"
        suffix, kind = (".fifo", {"FifoQueue": "true"}) if fifo else ("", {})

        async def create(backend: SQSBackend) -> str:
            dlq_url = await backend.create_queue(f"{name}-dlq{suffix}", kind or None)
            self._created.append(dlq_url)
            dlq = await backend.get_queue_info(dlq_url)
            redrive = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive_count}
            url = await backend.create_queue(
                f"{name}{suffix}", {**kind, **attributes, "RedrivePolicy": json.dumps(redrive)}
            )
            self._created.append(url)
            return url

        return self._call(create)

    def send_seqs(self, url: str, seqs: Iterable[int]) -> None:
        """The lifecycle app's bodies, ``{"seq": n}``."""
        self.send(url, [json.dumps({"seq": seq}) for seq in seqs])

    def send_all(self, url: str, entries: list[SendEntry]) -> list[str]:
        """Send ``entries`` in order, in batches within SQS's limits; their MessageIds."""
        batches: list[list[SendEntry]] = [[]]
        for entry in entries:
            batch = batches[-1]
            size = sum(message_size(e.body, e.message_attributes) for e in [*batch, entry])
            if len(batch) == MAX_BATCH_ENTRIES or (batch and size > MAX_MESSAGE_BYTES):
                batches.append([])
            batches[-1].append(replace(entry, id=str(len(batches[-1]))))

        async def send(backend: SQSBackend) -> list[str]:
            ids: list[str] = []
            for batch in batches:
                with warnings.catch_warnings():
                    # aiohttp warns of request bodies over 1 MiB (a batch near SQS's limit)
                    warnings.simplefilter("ignore", ResourceWarning)
                    result = await backend.send_batch(url, batch)
                assert not result.failed, result.failed
                ids.extend(result.message_ids[entry.id] for entry in batch)
            return ids

        return self._call(send)

    def delete(self, url: str) -> None:
        """DeleteQueue on ``url``, straight to moto: an operator removing the queue while a
        worker consumes it (not deleted again after the test)."""
        self._created.remove(url)
        self._call(lambda backend: backend.delete_queue(url))

    def dead_letter_url(self, url: str) -> str:
        dlq = self.info(url).dead_letter_queue_url
        assert dlq is not None
        return dlq

    def total(self, url: str) -> int:
        """Every message in the queue: visible, in flight or delayed."""
        depth = self.depth(url)
        return depth.visible + depth.in_flight + depth.delayed

    def dlq_depth(self, url: str) -> int:
        """Every message in ``url``'s dead-letter queue."""
        return self.total(self.dead_letter_url(url))

    def probe(self, url: str) -> list[QueueMessage]:
        """Receive every visible message, then hand each back at once (visibility 0): what
        a consumer starting now would get, without hiding it from the next one."""

        async def probe(backend: SQSBackend) -> list[QueueMessage]:
            found: list[QueueMessage] = []
            while batch := await backend.receive(
                url, max_messages=10, wait_time_s=0, visibility_timeout_s=30
            ):
                found.extend(batch)
            for start in range(0, len(found), 10):
                entries = [
                    VisibilityEntry(str(i), message.receipt_handle, 0)
                    for i, message in enumerate(found[start : start + 10])
                ]
                result = await backend.change_visibility_batch(url, entries)
                assert not result.failed, result.failed
            return found

        return self._call(probe)


def seqs_of(messages: Iterable[QueueMessage]) -> list[int]:
    return sorted(int(json.loads(message.body)["seq"]) for message in messages)


def purge(queues: FaultQueues, url: str) -> None:
    """PurgeQueue on ``url``, straight to moto: an operator emptying the queue from outside
    while a worker holds its messages."""

    async def call() -> None:
        admin = SQSAdmin(queues.settings)
        async with admin:
            await admin.purge_queue(url)

    anyio.run(call)
