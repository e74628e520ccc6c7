"""The SQS calls the operator commands need and the engine does not: list queues, find the
queues whose dead-letter queue a queue is, purge, and SQS's own message move tasks.

:class:`SQSAdmin` adds them to :class:`~aiosqsq.backends.sqs.SQSBackend` through its
``_call`` (which translates every botocore failure, see :mod:`aiosqsq.backends.sqs`), so
that this package still imports botocore in one module only, and the consumer's backend
stays the size of what the engine needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiosqsq.backends.sqs import SQSBackend

# SQS returns at most 1000 queue URLs per ListQueues / ListDeadLetterSourceQueues page.
_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class MoveTask:
    """One message move task, as ``ListMessageMoveTasks`` reports it."""

    status: str  # RUNNING, COMPLETED, CANCELLING, CANCELLED or FAILED
    handle: str | None  # TaskHandle: only a RUNNING task has one
    moved: int  # ApproximateNumberOfMessagesMoved
    to_move: int | None  # ApproximateNumberOfMessagesToMove
    failure_reason: str | None


class SQSAdmin(SQSBackend):
    """:class:`SQSBackend` plus the operator calls (each raises what ``_call`` raises:
    :class:`~aiosqsq.errors.QueueNotFoundError`, :class:`~aiosqsq.errors.BackendError`)."""

    async def list_queues(self, prefix: str = "") -> list[str]:
        """ListQueues, every page: the URLs of the queues whose name starts with ``prefix``."""
        params: dict[str, Any] = {"QueueNamePrefix": prefix} if prefix else {}
        return await self._pages("ListQueues", prefix or "*", "QueueUrls", params)

    async def dead_letter_sources(self, dead_letter_queue_url: str) -> list[str]:
        """ListDeadLetterSourceQueues: the URLs of the queues whose RedrivePolicy names
        this queue as their dead-letter queue."""
        params = {"QueueUrl": dead_letter_queue_url}
        # This one operation spells the key in lower camel case, in both protocols.
        return await self._pages(
            "ListDeadLetterSourceQueues", dead_letter_queue_url, "queueUrls", params
        )

    async def purge_queue(self, queue_url: str) -> None:
        """PurgeQueue: delete every message, in flight too. SQS takes up to 60 s to finish
        and refuses another purge of the queue within 60 s (``PurgeQueueInProgress``)."""
        await self._call("PurgeQueue", queue_url, QueueUrl=queue_url)

    async def list_message_move_tasks(self, source_arn: str) -> list[MoveTask]:
        """ListMessageMoveTasks: the (at most 10) most recent tasks from ``source_arn``.

        Also the cheap way to learn whether an endpoint offers move tasks at all: it
        changes nothing. Endpoints without them (moto) fail it with a server error."""
        response = await self._call(
            "ListMessageMoveTasks", source_arn, SourceArn=source_arn, MaxResults=10
        )
        results = response.get("Results")
        return [_move_task(raw) for raw in results or [] if isinstance(raw, Mapping)]

    async def start_message_move_task(
        self,
        source_arn: str,
        *,
        destination_arn: str | None = None,
        max_per_second: int | None = None,
    ) -> str:
        """StartMessageMoveTask from the dead-letter queue ``source_arn``; returns the
        TaskHandle. No ``destination_arn``: SQS returns each message to the queue it was
        dead-lettered from. ``max_per_second`` is 1-500 (None: SQS picks the rate). SQS
        allows one running task per source queue."""
        params: dict[str, Any] = {"SourceArn": source_arn}
        if destination_arn is not None:
            params["DestinationArn"] = destination_arn
        if max_per_second is not None:
            params["MaxNumberOfMessagesPerSecond"] = max_per_second
        response = await self._call("StartMessageMoveTask", source_arn, **params)
        handle = response.get("TaskHandle")
        return handle if isinstance(handle, str) else ""

    async def _pages(
        self, operation: str, queue: str, key: str, params: Mapping[str, Any]
    ) -> list[str]:
        urls: list[str] = []
        token = ""
        while True:
            page = {**params, "MaxResults": _PAGE_SIZE, **({"NextToken": token} if token else {})}
            response = await self._call(operation, queue, **page)
            found = response.get(key)
            urls.extend(str(url) for url in found or [] if isinstance(url, str))
            token = str(response.get("NextToken") or "")
            if not token:
                return urls


def _move_task(raw: Mapping[str, Any]) -> MoveTask:
    def text(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) else None

    to_move = raw.get("ApproximateNumberOfMessagesToMove")
    return MoveTask(
        status=text("Status") or "",
        handle=text("TaskHandle"),
        moved=int(raw.get("ApproximateNumberOfMessagesMoved") or 0),
        to_move=to_move if isinstance(to_move, int) else None,
        failure_reason=text("FailureReason"),
    )
