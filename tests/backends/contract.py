"""The backend contract: the SQS behaviours every :class:`QueueBackend` must show.

Written once, run on every backend: subclass :class:`BackendContract` in a test module and
provide a ``backend`` fixture (a QueueBackend instance). The tests use the protocol only,
whole-second visibility timeouts and delays, integer long-poll waits and bounded polling
loops, so they run unchanged against a real SQS-compatible server (moto) as well as in
memory. Set ``strict_receipt_handles = False`` on a backend whose server accepts stale
receipt handles (moto does): the tests that need SQS's handle checks are then skipped.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import ClassVar, Protocol

import anyio
import pytest

from aiosqsq.backends.base import (
    MAX_MESSAGE_BYTES,
    DeleteEntry,
    MessageAttributeValue,
    QueueBackend,
    QueueMessage,
    SendEntry,
    VisibilityEntry,
)
from aiosqsq.errors import BatchRequestError, QueueNotFoundError

# Generous bounds for a server that checks visibility once a second; memory needs far less.
SETTLE_S = 8.0


class MakeQueue(Protocol):
    async def __call__(
        self, *, fifo: bool = False, attributes: Mapping[str, str] | None = None
    ) -> str: ...


async def send(backend: QueueBackend, queue_url: str, *entries: SendEntry) -> list[str]:
    """Send ``entries`` in one batch that must fully succeed; return the MessageIds in order."""
    result = await backend.send_batch(queue_url, entries)
    assert result.failed == ()
    return [result.message_ids[entry.id] for entry in entries]


def fifo_entry(group_id: str, body: str) -> SendEntry:
    return SendEntry(id=body, body=body, group_id=group_id, deduplication_id=body)


async def receive_until(
    backend: QueueBackend,
    queue_url: str,
    count: int,
    *,
    within_s: float = SETTLE_S,
    visibility_timeout_s: int | None = None,
) -> list[QueueMessage]:
    """Long-poll until ``count`` messages came back or ``within_s`` passed; return them."""
    received: list[QueueMessage] = []
    deadline = anyio.current_time() + within_s
    while len(received) < count and anyio.current_time() < deadline:
        received += await backend.receive(
            queue_url,
            max_messages=min(10, count - len(received)),
            wait_time_s=1,
            visibility_timeout_s=visibility_timeout_s,
        )
    return received


async def delete(backend: QueueBackend, queue_url: str, *messages: QueueMessage) -> None:
    entries = [
        DeleteEntry(id=f"d{i}", receipt_handle=m.receipt_handle) for i, m in enumerate(messages)
    ]
    result = await backend.delete_batch(queue_url, entries)
    assert result.failed == ()


async def change_visibility(
    backend: QueueBackend, queue_url: str, message: QueueMessage, timeout_s: int
) -> None:
    entry = VisibilityEntry(
        id="v", receipt_handle=message.receipt_handle, visibility_timeout_s=timeout_s
    )
    result = await backend.change_visibility_batch(queue_url, [entry])
    assert result.failed == ()


def _batch(
    operation: str, ids: list[str]
) -> list[SendEntry] | list[DeleteEntry] | list[VisibilityEntry]:
    if operation == "send":
        return [SendEntry(id=i, body="x") for i in ids]
    if operation == "delete":
        return [DeleteEntry(id=i, receipt_handle="never-issued") for i in ids]
    assert operation == "change_visibility"
    return [
        VisibilityEntry(id=i, receipt_handle="never-issued", visibility_timeout_s=1) for i in ids
    ]


class BackendContract:
    """SQS semantics, one behaviour per test. Needs a ``backend`` fixture from the subclass."""

    strict_receipt_handles: ClassVar[bool] = True

    @pytest.fixture
    async def make_queue(self, backend: QueueBackend) -> AsyncIterator[MakeQueue]:
        """Factory of fresh queues (``contract-<uuid8>``); deletes every queue it made."""
        created: list[str] = []

        async def make(*, fifo: bool = False, attributes: Mapping[str, str] | None = None) -> str:
            name = f"contract-{uuid.uuid4().hex[:8]}" + (".fifo" if fifo else "")
            all_attributes = {**(attributes or {}), **({"FifoQueue": "true"} if fifo else {})}
            created.append(await backend.create_queue(name, all_attributes))
            return created[-1]

        yield make
        for queue_url in reversed(created):  # sources before their dead-letter queues
            with contextlib.suppress(QueueNotFoundError):
                await backend.delete_queue(queue_url)

    def require_strict_receipt_handles(self) -> None:
        if not self.strict_receipt_handles:
            pytest.skip("this backend's server accepts stale receipt handles (moto does)")

    # -- send and receive ---------------------------------------------------------------

    async def test_round_trip_keeps_body_and_attributes(self, backend, make_queue):
        queue_url = await make_queue()
        attributes: dict[str, MessageAttributeValue] = {
            "kind": {"DataType": "String", "StringValue": "order"},
            "amount": {"DataType": "Number", "StringValue": "12.5"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
        }
        body = "héllo \U0001f600 wörld"
        now_ms = int(time.time() * 1000)
        (message_id,) = await send(
            backend, queue_url, SendEntry(id="a", body=body, message_attributes=attributes)
        )

        (message,) = await receive_until(backend, queue_url, 1)

        assert (message.queue_url, message.message_id, message.body) == (
            queue_url,
            message_id,
            body,
        )
        assert message.message_attributes == attributes
        assert message.receive_count == 1
        assert message.attributes["ApproximateReceiveCount"] == "1"
        assert abs(int(message.attributes["SentTimestamp"]) - now_ms) < 60_000  # clock skew
        assert int(message.attributes["ApproximateFirstReceiveTimestamp"]) >= int(
            message.attributes["SentTimestamp"]
        )
        assert message.attributes["SenderId"]
        assert message.receipt_handle

    async def test_receive_returns_at_most_max_messages(self, backend, make_queue):
        queue_url = await make_queue()
        sent = await send(
            backend, queue_url, *(SendEntry(id=f"m{i}", body=f"m{i}") for i in range(5))
        )

        first = await backend.receive(queue_url, max_messages=3, wait_time_s=1)
        rest = await receive_until(backend, queue_url, 5 - len(first))

        assert 1 <= len(first) <= 3
        assert sorted(m.message_id for m in first + rest) == sorted(sent)

    async def test_short_poll_on_empty_queue_returns_nothing(self, backend, make_queue):
        queue_url = await make_queue()
        started = anyio.current_time()

        assert await backend.receive(queue_url, max_messages=10, wait_time_s=0) == []
        assert anyio.current_time() - started < 2

    async def test_long_poll_returns_as_soon_as_a_message_is_sent(self, backend, make_queue):
        queue_url = await make_queue()
        received: list[QueueMessage] = []

        async def poll() -> None:
            received.extend(await backend.receive(queue_url, max_messages=1, wait_time_s=10))

        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await anyio.sleep(0.5)  # let the poll start waiting; the asserts hold either way
            await send(backend, queue_url, SendEntry(id="a", body="late"))

        assert [m.body for m in received] == ["late"]
        assert anyio.current_time() - started < 5

    # -- visibility ---------------------------------------------------------------------

    async def test_message_comes_back_after_its_visibility_timeout(self, backend, make_queue):
        queue_url = await make_queue()
        await send(backend, queue_url, SendEntry(id="a", body="again"))
        (first,) = await receive_until(backend, queue_url, 1, visibility_timeout_s=1)

        hidden = await backend.receive(queue_url, max_messages=10, wait_time_s=0)
        (second,) = await receive_until(backend, queue_url, 1)

        assert hidden == []
        assert second.message_id == first.message_id
        assert second.receive_count == 2
        assert second.receipt_handle != first.receipt_handle

    async def test_visibility_zero_releases_the_message_at_once(self, backend, make_queue):
        queue_url = await make_queue()
        await send(backend, queue_url, SendEntry(id="a", body="release"))
        (first,) = await receive_until(backend, queue_url, 1, visibility_timeout_s=30)
        started = anyio.current_time()

        await change_visibility(backend, queue_url, first, 0)
        (second,) = await receive_until(backend, queue_url, 1, within_s=3)

        assert (second.message_id, second.receive_count) == (first.message_id, 2)
        assert anyio.current_time() - started < 3

    async def test_change_visibility_extends_the_timeout(self, backend, make_queue):
        queue_url = await make_queue()
        await send(backend, queue_url, SendEntry(id="a", body="slow"))
        (first,) = await receive_until(backend, queue_url, 1, visibility_timeout_s=1)

        await change_visibility(backend, queue_url, first, 4)  # counted from now
        during = await backend.receive(queue_url, max_messages=1, wait_time_s=2)
        after = await receive_until(backend, queue_url, 1)

        assert during == []  # the original 1 s timeout has lapsed, the new one has not
        assert [m.message_id for m in after] == [first.message_id]

    # -- delete -------------------------------------------------------------------------

    async def test_delete_batch_removes_messages(self, backend, make_queue):
        queue_url = await make_queue()
        await send(backend, queue_url, SendEntry(id="a", body="a"), SendEntry(id="b", body="b"))
        messages = await receive_until(backend, queue_url, 2)

        await delete(backend, queue_url, *messages)

        depth = await backend.get_queue_depth(queue_url)
        assert (depth.visible, depth.in_flight, depth.delayed) == (0, 0, 0)

    async def test_delete_again_with_the_same_handle_succeeds(self, backend, make_queue):
        queue_url = await make_queue()
        await send(backend, queue_url, SendEntry(id="a", body="a"))
        (message,) = await receive_until(backend, queue_url, 1)
        await delete(backend, queue_url, message)

        await delete(backend, queue_url, message)

    async def test_delete_with_an_unknown_handle_fails_only_that_entry(self, backend, make_queue):
        queue_url = await make_queue()
        await send(backend, queue_url, SendEntry(id="a", body="a"))
        (message,) = await receive_until(backend, queue_url, 1)

        result = await backend.delete_batch(
            queue_url,
            [
                DeleteEntry(id="good", receipt_handle=message.receipt_handle),
                DeleteEntry(id="bad", receipt_handle="not-a-receipt-handle"),
            ],
        )

        assert result.successful == ("good",)
        (failure,) = result.failed
        assert (failure.id, failure.code, failure.sender_fault) == (
            "bad",
            "ReceiptHandleIsInvalid",
            True,
        )

    @pytest.mark.parametrize("operation", ["send", "delete", "change_visibility"])
    @pytest.mark.parametrize(
        ("ids", "code"),
        [
            pytest.param([], "AWS.SimpleQueueService.EmptyBatchRequest", id="empty"),
            pytest.param(
                [f"e{i}" for i in range(11)],
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                id="eleven",
            ),
            pytest.param(
                ["same", "same"], "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", id="repeated"
            ),
            pytest.param(["not valid!"], "AWS.SimpleQueueService.InvalidBatchEntryId", id="bad-id"),
            pytest.param(["x" * 81], "AWS.SimpleQueueService.InvalidBatchEntryId", id="long-id"),
        ],
    )
    async def test_malformed_batch_is_rejected_whole(
        self, backend, make_queue, operation, ids, code
    ):
        queue_url = await make_queue()
        call = {
            "send": backend.send_batch,
            "delete": backend.delete_batch,
            "change_visibility": backend.change_visibility_batch,
        }[operation]

        with pytest.raises(BatchRequestError) as raised:
            await call(queue_url, _batch(operation, ids))

        assert raised.value.code == code

    # -- send rules ---------------------------------------------------------------------

    async def test_per_message_delay_hides_a_new_message(self, backend, make_queue):
        queue_url = await make_queue()
        started = anyio.current_time()
        await send(backend, queue_url, SendEntry(id="a", body="later", delay_s=2))

        early = await backend.receive(queue_url, max_messages=1, wait_time_s=0)
        depth = await backend.get_queue_depth(queue_url)
        (message,) = await receive_until(backend, queue_url, 1)

        assert early == []
        assert depth.delayed == 1
        assert message.body == "later"
        assert anyio.current_time() - started >= 1.5

    @pytest.mark.parametrize(
        "sizes",
        [
            pytest.param([10, MAX_MESSAGE_BYTES + 1], id="one-entry-over-1-MiB"),
            pytest.param([MAX_MESSAGE_BYTES // 2, MAX_MESSAGE_BYTES // 2 + 1], id="together"),
        ],
    )
    async def test_batch_over_one_mib_is_rejected_whole(self, backend, make_queue, sizes):
        # SQS counts bodies and attributes of all entries; an oversize entry fails the whole
        # request, not just its entry (checked against AWS: floci-io/floci#894).
        queue_url = await make_queue()
        entries = [SendEntry(id=f"e{i}", body="x" * size) for i, size in enumerate(sizes)]

        with pytest.raises(BatchRequestError) as raised:
            await backend.send_batch(queue_url, entries)

        assert raised.value.code == "AWS.SimpleQueueService.BatchRequestTooLong"
        depth = await backend.get_queue_depth(queue_url)
        assert (depth.visible, depth.in_flight, depth.delayed) == (0, 0, 0)

    async def test_batch_size_counts_message_attributes(self, backend, make_queue):
        queue_url = await make_queue()
        padding: dict[str, MessageAttributeValue] = {
            "pad": {"DataType": "String", "StringValue": "x" * 100}
        }
        entry = SendEntry(id="e", body="x" * (MAX_MESSAGE_BYTES - 50), message_attributes=padding)

        with pytest.raises(BatchRequestError) as raised:
            await backend.send_batch(queue_url, [entry])

        assert raised.value.code == "AWS.SimpleQueueService.BatchRequestTooLong"

    # -- redrive ------------------------------------------------------------------------

    async def test_message_moves_to_the_dead_letter_queue_after_max_receive_count(
        self, backend, make_queue
    ):
        dlq_url = await make_queue()
        dlq_arn = (await backend.get_queue_info(dlq_url)).arn
        policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
        queue_url = await make_queue(attributes={"RedrivePolicy": policy})
        (message_id,) = await send(backend, queue_url, SendEntry(id="a", body="poison"))

        counts = []
        for _ in range(2):  # visibility 0: back at once, as a failing consumer would leave it
            (message,) = await receive_until(backend, queue_url, 1, visibility_timeout_s=0)
            counts.append(message.receive_count)
        third = await backend.receive(queue_url, max_messages=1, wait_time_s=0)
        (dead,) = await receive_until(backend, dlq_url, 1)

        assert counts == [1, 2]
        assert third == []
        assert (dead.message_id, dead.body) == (message_id, "poison")

    # -- FIFO ---------------------------------------------------------------------------

    async def test_fifo_returns_a_group_in_send_order(self, backend, make_queue):
        queue_url = await make_queue(fifo=True)
        bodies = [f"m{i}" for i in range(6)]
        await send(backend, queue_url, *(fifo_entry("g", body) for body in bodies))

        received: list[str] = []
        deadline = anyio.current_time() + SETTLE_S
        while len(received) < len(bodies) and anyio.current_time() < deadline:
            messages = await backend.receive(queue_url, max_messages=4, wait_time_s=1)
            received += [m.body for m in messages]
            if messages:
                await delete(backend, queue_url, *messages)

        assert received == bodies

    async def test_fifo_holds_back_a_group_while_a_message_is_in_flight(self, backend, make_queue):
        queue_url = await make_queue(fifo=True)
        await send(backend, queue_url, fifo_entry("a", "a1"), fifo_entry("a", "a2"))
        (first,) = await backend.receive(queue_url, max_messages=1, wait_time_s=1)

        held = await backend.receive(queue_url, max_messages=10, wait_time_s=0)
        await delete(backend, queue_url, first)
        (second,) = await receive_until(backend, queue_url, 1)

        assert first.body == "a1"
        assert first.group_id == "a"
        assert held == []
        assert second.body == "a2"

    async def test_fifo_serves_other_groups_in_parallel(self, backend, make_queue):
        queue_url = await make_queue(fifo=True)
        entries = [
            fifo_entry("a", "a1"),
            fifo_entry("b", "b1"),
            fifo_entry("a", "a2"),
            fifo_entry("b", "b2"),
        ]
        await send(backend, queue_url, *entries)
        (first,) = await backend.receive(queue_url, max_messages=1, wait_time_s=1)

        others = await backend.receive(queue_url, max_messages=10, wait_time_s=1)

        other_group = "b" if first.group_id == "a" else "a"  # SQS may serve either group first
        assert first.body == f"{first.group_id}1"
        assert others
        assert [m.body for m in others] == [f"{other_group}1", f"{other_group}2"][: len(others)]

    async def test_fifo_drops_a_duplicate_deduplication_id(self, backend, make_queue):
        queue_url = await make_queue(fifo=True)
        await send(
            backend, queue_url, SendEntry(id="a", body="first", group_id="g", deduplication_id="d")
        )
        await send(
            backend, queue_url, SendEntry(id="a", body="second", group_id="g", deduplication_id="d")
        )

        (message,) = await receive_until(backend, queue_url, 1)
        depth = await backend.get_queue_depth(queue_url)

        assert message.body == "first"
        assert (depth.visible, depth.in_flight, depth.delayed) == (0, 1, 0)

    async def test_fifo_content_based_deduplication_drops_a_repeated_body(
        self, backend, make_queue
    ):
        queue_url = await make_queue(fifo=True, attributes={"ContentBasedDeduplication": "true"})
        await send(backend, queue_url, SendEntry(id="a", body="same", group_id="g"))
        await send(backend, queue_url, SendEntry(id="a", body="same", group_id="g"))

        depth = await backend.get_queue_depth(queue_url)

        assert (depth.visible, depth.in_flight, depth.delayed) == (1, 0, 0)

    # -- queues -------------------------------------------------------------------------

    async def test_queue_info_reads_the_queue_attributes(self, backend, make_queue):
        queue_url = await make_queue(
            attributes={"VisibilityTimeout": "7", "MessageRetentionPeriod": "3600"}
        )

        info = await backend.get_queue_info(queue_url)

        assert (info.url, info.visibility_timeout_s, info.fifo) == (queue_url, 7, False)
        assert info.message_retention_s == 3600
        assert (info.dead_letter_queue_url, info.max_receive_count) == (None, None)
        assert info.name in info.arn
        assert await backend.get_queue_url(info.name) == queue_url

    async def test_queue_info_reads_fifo_and_redrive_policy(self, backend, make_queue):
        dlq_url = await make_queue(fifo=True)
        dlq_arn = (await backend.get_queue_info(dlq_url)).arn
        policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
        queue_url = await make_queue(fifo=True, attributes={"RedrivePolicy": policy})

        info = await backend.get_queue_info(queue_url)

        assert info.fifo is True
        assert info.name.endswith(".fifo")
        assert (info.dead_letter_queue_url, info.max_receive_count) == (dlq_url, 3)

    async def test_queue_depth_counts_visible_in_flight_and_delayed(self, backend, make_queue):
        queue_url = await make_queue()
        await send(
            backend,
            queue_url,
            SendEntry(id="a", body="a"),
            SendEntry(id="b", body="b"),
            SendEntry(id="c", body="c", delay_s=60),
        )
        await receive_until(backend, queue_url, 1, visibility_timeout_s=30)

        depth = await backend.get_queue_depth(queue_url)

        assert (depth.visible, depth.in_flight, depth.delayed) == (1, 1, 1)

    async def test_unknown_queue_name_raises_queue_not_found(self, backend):
        with pytest.raises(QueueNotFoundError):
            await backend.get_queue_url(f"contract-missing-{uuid.uuid4().hex[:8]}")

    async def test_deleted_queue_raises_queue_not_found(self, backend, make_queue):
        queue_url = await make_queue()
        await backend.delete_queue(queue_url)

        with pytest.raises(QueueNotFoundError):
            await backend.receive(queue_url, max_messages=1, wait_time_s=0)
        with pytest.raises(QueueNotFoundError):
            await backend.send_batch(queue_url, [SendEntry(id="a", body="a")])

    # -- receipt handles ----------------------------------------------------------------

    async def test_visibility_change_on_a_deleted_message_fails(self, backend, make_queue):
        queue_url = await make_queue()
        await send(backend, queue_url, SendEntry(id="a", body="a"))
        (message,) = await receive_until(backend, queue_url, 1)
        await delete(backend, queue_url, message)

        result = await backend.change_visibility_batch(
            queue_url,
            [
                VisibilityEntry(
                    id="v", receipt_handle=message.receipt_handle, visibility_timeout_s=5
                )
            ],
        )

        (failure,) = result.failed
        assert (failure.id, failure.code, failure.sender_fault) == (
            "v",
            "ReceiptHandleIsInvalid",
            True,
        )

    async def test_visibility_change_with_a_stale_handle_fails(self, backend, make_queue):
        self.require_strict_receipt_handles()
        queue_url = await make_queue()
        await send(backend, queue_url, SendEntry(id="a", body="a"))
        (first,) = await receive_until(backend, queue_url, 1, visibility_timeout_s=0)
        (second,) = await receive_until(backend, queue_url, 1, visibility_timeout_s=30)

        result = await backend.change_visibility_batch(
            queue_url,
            [
                VisibilityEntry(
                    id="stale", receipt_handle=first.receipt_handle, visibility_timeout_s=5
                ),
                VisibilityEntry(
                    id="newest", receipt_handle=second.receipt_handle, visibility_timeout_s=5
                ),
            ],
        )

        assert result.successful == ("newest",)
        (failure,) = result.failed
        assert (failure.id, failure.code, failure.sender_fault) == (
            "stale",
            "InvalidParameterValue",
            True,
        )
        assert "expired" in failure.message

    async def test_visibility_change_on_a_visible_message_fails(self, backend, make_queue):
        self.require_strict_receipt_handles()
        queue_url = await make_queue()
        await send(backend, queue_url, SendEntry(id="a", body="a"))
        (message,) = await receive_until(backend, queue_url, 1, visibility_timeout_s=0)

        result = await backend.change_visibility_batch(
            queue_url,
            [
                VisibilityEntry(
                    id="v", receipt_handle=message.receipt_handle, visibility_timeout_s=5
                )
            ],
        )

        (failure,) = result.failed
        assert (failure.code, failure.sender_fault) == (
            "AWS.SimpleQueueService.MessageNotInflight",
            True,
        )
