"""Move messages out of a dead-letter queue: by SQS's own message move task where the
endpoint has one, else by copying, which never deletes a message before its copy is sent.

The copy, batch by batch (at most 10 messages, at most ``rate`` messages a second):

1. receive from the dead-letter queue, hidden for :data:`~aiosqsq.cli.peek.HOLD_S`;
2. send them to the target (:func:`~aiosqsq.cli.batch_sender.send_batch`), body and
   message attributes as they are; to a FIFO target with their MessageGroupId and their
   MessageId as the deduplication id, so that a copy repeated within 5 minutes is dropped;
3. delete from the dead-letter queue only the messages whose send SQS confirmed.

A message the target refuses stays in the dead-letter queue, hidden until the run ends
(so it is not tried again and again) and then visible again. On an error or Ctrl-C, the
messages received and not yet sent are handed back at once. A message whose copy was sent
but whose delete failed is in both queues: the summary counts it, and a later redrive
would move it again (a duplicate, never a loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from aiosqsq.backends.base import DeleteEntry, QueueMessage, SendEntry
from aiosqsq.cli.batch_sender import send_batch
from aiosqsq.cli.peek import HOLD_S, RECEIVE_WAIT_S, hand_back
from aiosqsq.errors import BackendError, QueueNotFoundError

if TYPE_CHECKING:
    from aiosqsq.backends.sqs_admin import MoveTask, SQSAdmin


@dataclass
class MoveTally:
    """How far a copy got; ``refused`` maps MessageId to SQS's reason."""

    limit: int
    moved: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    not_deleted: int = 0  # copied, but still in the dead-letter queue too

    @property
    def done(self) -> int:
        return self.moved + len(self.refused)


async def move_tasks(admin: SQSAdmin, source_arn: str) -> list[MoveTask] | str:
    """The queue's recent move tasks, or why the endpoint cannot list them (then it has
    no move tasks: moto answers a server error). Changes nothing."""
    try:
        return await admin.list_message_move_tasks(source_arn)
    except QueueNotFoundError:
        raise
    except BackendError as exc:
        return exc.code


async def copy_messages(
    admin: SQSAdmin,
    source_url: str,
    target_url: str,
    *,
    target_fifo: bool,
    rate: float,
    tally: MoveTally,
    on_progress: Callable[[int], None],
) -> None:
    """Move up to ``tally.limit`` messages by copy (module docstring), calling
    ``on_progress`` with the count done after each batch; stops early when the source has
    no visible message left. Raises what a whole failed request raises, after handing back
    what it holds."""
    refused: dict[str, QueueMessage] = {}
    in_hand: list[QueueMessage] = []
    started = anyio.current_time()
    try:
        while tally.done < tally.limit:
            received = await admin.receive(
                source_url,
                max_messages=min(10, tally.limit - tally.done),
                wait_time_s=RECEIVE_WAIT_S,
                visibility_timeout_s=HOLD_S,
            )
            if not received:
                break
            for message in received:
                if message.message_id in refused:  # came back after HOLD_S: hide it again
                    refused[message.message_id] = message
                else:
                    in_hand.append(message)
            if not in_hand:
                continue
            result = await send_batch(admin, target_url, _copies(in_hand, target_fifo))
            sent = [in_hand[int(entry_id)] for entry_id in result.successful]
            for failure in result.failed:
                message = in_hand[int(failure.id)]
                refused[message.message_id] = message
                tally.refused[message.message_id] = f"{failure.code}: {failure.message}"
            in_hand = []
            tally.moved += len(sent)
            if sent:
                deletes = [DeleteEntry(str(i), m.receipt_handle) for i, m in enumerate(sent)]
                deleted = await admin.delete_batch(source_url, deletes)
                tally.not_deleted += len(deleted.failed)
            on_progress(tally.done)
            # at most `rate` messages a second, counted from the start
            await anyio.sleep(max(0.0, started + tally.done / rate - anyio.current_time()))
    finally:
        await hand_back(admin, source_url, [*in_hand, *refused.values()])


def _copies(messages: list[QueueMessage], target_fifo: bool) -> list[SendEntry]:
    return [
        SendEntry(
            id=str(i),
            body=message.body,
            message_attributes=message.message_attributes,
            group_id=message.group_id if target_fifo else None,
            deduplication_id=message.message_id if target_fifo else None,
        )
        for i, message in enumerate(messages)
    ]
