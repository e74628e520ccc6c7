"""MemoryBackend: the backend contract, plus what only an in-process backend can show."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from aiosqsq.backends.base import (
    MAX_MESSAGE_BYTES,
    BatchResult,
    DeleteEntry,
    MessageAttributes,
    MessageAttributeValue,
    QueueBackend,
    QueueDepth,
    QueueMessage,
    SendEntry,
    VisibilityEntry,
    message_size,
)
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.errors import BackendError, BatchRequestError, QueueNotFoundError
from tests.backends.contract import BackendContract


@pytest.fixture
async def backend() -> AsyncIterator[MemoryBackend]:
    memory = MemoryBackend()
    yield memory
    await memory.aclose()


class TestMemoryContract(BackendContract):
    pass


def test_is_a_cancel_safe_queue_backend():
    backend: QueueBackend = MemoryBackend()  # mypy checks the protocol here

    assert backend.receive_is_cancel_safe is True


class FakeClock:
    """A clock tests move by hand: visibility and delays follow it exactly."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


WALL_S = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def timed(clock: FakeClock) -> AsyncIterator[MemoryBackend]:
    """A backend on a fake clock and a fixed wall clock."""
    memory = MemoryBackend(clock=clock, wall_clock=lambda: WALL_S)
    yield memory
    await memory.aclose()


async def send_one(backend: MemoryBackend, queue_url: str, body: str = "x", **fields) -> str:
    result = await backend.send_batch(queue_url, [SendEntry(id="e", body=body, **fields)])
    assert result.failed == ()
    return result.message_ids["e"]


async def receive_now(backend: MemoryBackend, queue_url: str, **options) -> list[QueueMessage]:
    return await backend.receive(queue_url, max_messages=10, wait_time_s=0, **options)


async def change(
    backend: MemoryBackend, queue_url: str, handle: str, timeout_s: float
) -> BatchResult:
    entry = VisibilityEntry(id="v", receipt_handle=handle, visibility_timeout_s=timeout_s)
    return await backend.change_visibility_batch(queue_url, [entry])


# -- queues ---------------------------------------------------------------------------


async def test_repr_shows_counts_only(backend):
    queue_url = await backend.create_queue("q")
    await send_one(backend, queue_url, "secret body")

    assert repr(backend) == "<MemoryBackend queues=1 messages=1>"
    await backend.aclose()
    assert repr(backend) == "<MemoryBackend closed queues=1 messages=1>"


async def test_queue_url_arn_and_lookup_forms(backend):
    queue_url = await backend.create_queue("orders")

    info = await backend.get_queue_info(queue_url)

    assert queue_url == "memory://queues/orders"
    assert info.arn == "arn:aws:sqs:memory:000000000000:orders"
    assert await backend.get_queue_url("orders") == queue_url
    assert await backend.get_queue_url(queue_url) == queue_url


async def test_unknown_queue_error_names_the_queue(backend):
    with pytest.raises(QueueNotFoundError) as raised:
        await backend.get_queue_url("nope")

    assert raised.value.queue == "nope"
    assert raised.value.code == "AWS.SimpleQueueService.NonExistentQueue"


async def test_create_queue_again_with_the_same_attributes_returns_its_url(backend):
    first = await backend.create_queue("q", {"VisibilityTimeout": "5"})

    assert await backend.create_queue("q", {"VisibilityTimeout": "5.0"}) == first
    with pytest.raises(BackendError) as raised:
        await backend.create_queue("q", {"VisibilityTimeout": "6"})
    assert raised.value.code == "QueueAlreadyExists"


@pytest.mark.parametrize(
    ("name", "attributes", "code"),
    [
        ("q", {"Colour": "blue"}, "InvalidAttributeName"),
        ("q", {"VisibilityTimeout": "43201"}, "InvalidParameterValue"),
        ("q", {"VisibilityTimeout": "soon"}, "InvalidParameterValue"),
        ("q", {"DelaySeconds": "901"}, "InvalidParameterValue"),
        ("q", {"FifoQueue": "true"}, "InvalidParameterValue"),
        ("q.fifo", {}, "InvalidParameterValue"),
        ("q", {"FifoQueue": "yes"}, "InvalidParameterValue"),
        ("q", {"ContentBasedDeduplication": "true"}, "InvalidParameterValue"),
        ("bad name", {}, "InvalidParameterValue"),
        ("x" * 81, {}, "InvalidParameterValue"),
        ("q", {"RedrivePolicy": "not json"}, "InvalidParameterValue"),
        ("q", {"RedrivePolicy": '{"maxReceiveCount": 3}'}, "InvalidParameterValue"),
    ],
)
async def test_create_queue_rejects_invalid_names_and_attributes(backend, name, attributes, code):
    with pytest.raises(BackendError) as raised:
        await backend.create_queue(name, attributes)

    assert raised.value.code == code


@pytest.mark.parametrize(
    ("dlq_name", "queue_name", "queue_attributes", "max_receive_count"),
    [
        ("dlq", "q", {}, 3),  # the target does not exist
        ("dlq", "q.fifo", {"FifoQueue": "true"}, 3),  # FIFO source, standard DLQ
        ("dlq", "q", {}, 0),  # maxReceiveCount is 1-1000
    ],
)
async def test_redrive_policy_needs_an_existing_dlq_of_the_same_type(
    backend, dlq_name, queue_name, queue_attributes, max_receive_count
):
    if queue_attributes or max_receive_count == 0:  # else the target does not exist
        await backend.create_queue(dlq_name)
    target = f"arn:aws:sqs:memory:000000000000:{dlq_name}"
    policy = json.dumps({"deadLetterTargetArn": target, "maxReceiveCount": max_receive_count})

    with pytest.raises(BackendError) as raised:
        await backend.create_queue(queue_name, {**queue_attributes, "RedrivePolicy": policy})

    assert raised.value.code == "InvalidParameterValue"


async def test_delete_queue_wakes_its_long_pollers_with_queue_not_found(backend):
    queue_url = await backend.create_queue("q")

    async def poll() -> None:
        with pytest.raises(QueueNotFoundError):
            await backend.receive(queue_url, max_messages=1, wait_time_s=20)

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await wait_all_tasks_blocked()
        await backend.delete_queue(queue_url)

    with pytest.raises(QueueNotFoundError):
        await backend.delete_queue(queue_url)


async def test_aclose_wakes_pollers_and_fails_later_calls(backend):
    queue_url = await backend.create_queue("q")

    async def poll() -> None:
        with pytest.raises(BackendError, match="BackendClosed"):
            await backend.receive(queue_url, max_messages=1, wait_time_s=20)

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await wait_all_tasks_blocked()
        await backend.aclose()

    with pytest.raises(BackendError) as raised:
        await backend.get_queue_url("q")
    assert raised.value.code == "BackendClosed"
    await backend.aclose()  # twice is harmless


# -- receive ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"max_messages": 0, "wait_time_s": 0},
        {"max_messages": 11, "wait_time_s": 0},
        {"max_messages": 1, "wait_time_s": 21},
        {"max_messages": 1, "wait_time_s": -1},
        {"max_messages": 1, "wait_time_s": 0, "visibility_timeout_s": 43_201},
    ],
)
async def test_receive_rejects_out_of_range_parameters(backend, options):
    queue_url = await backend.create_queue("q")

    with pytest.raises(BackendError) as raised:
        await backend.receive(queue_url, **options)

    assert raised.value.code == "InvalidParameterValue"


async def test_system_attributes_follow_the_wall_clock(timed, clock):
    queue_url = await timed.create_queue("q", {"VisibilityTimeout": "10"})
    await send_one(timed, queue_url)
    (first,) = await receive_now(timed, queue_url)
    clock.advance(10)

    (second,) = await receive_now(timed, queue_url)

    assert first.attributes == {
        "ApproximateReceiveCount": "1",
        "ApproximateFirstReceiveTimestamp": "1700000000000",
        "SentTimestamp": "1700000000000",
        "SenderId": "000000000000",
    }
    assert second.attributes["ApproximateReceiveCount"] == "2"
    assert second.attributes["ApproximateFirstReceiveTimestamp"] == "1700000000000"


async def test_visibility_lapses_exactly_at_the_deadline(timed, clock):
    queue_url = await timed.create_queue("q", {"VisibilityTimeout": "30"})
    await send_one(timed, queue_url)
    await receive_now(timed, queue_url)

    clock.advance(29.999)
    assert await receive_now(timed, queue_url) == []
    clock.advance(0.001)
    assert len(await receive_now(timed, queue_url)) == 1


async def test_receive_visibility_timeout_overrides_the_queue_default(timed, clock):
    queue_url = await timed.create_queue("q", {"VisibilityTimeout": "30"})
    await send_one(timed, queue_url)
    await receive_now(timed, queue_url, visibility_timeout_s=5)

    clock.advance(5)

    assert len(await receive_now(timed, queue_url)) == 1


async def test_queue_delay_applies_unless_the_message_has_its_own(timed, clock):
    queue_url = await timed.create_queue("q", {"DelaySeconds": "10"})
    await send_one(timed, queue_url, "queue-delay")
    await send_one(timed, queue_url, "own-delay", delay_s=3)

    clock.advance(3)
    assert [m.body for m in await receive_now(timed, queue_url)] == ["own-delay"]
    clock.advance(7)
    assert [m.body for m in await receive_now(timed, queue_url)] == ["queue-delay"]


async def test_long_poll_wakes_when_a_hidden_message_becomes_visible(backend):
    queue_url = await backend.create_queue("q")
    await send_one(backend, queue_url)
    await backend.receive(queue_url, max_messages=1, wait_time_s=0, visibility_timeout_s=0.2)
    started = anyio.current_time()

    (message,) = await backend.receive(queue_url, max_messages=1, wait_time_s=5)

    assert message.receive_count == 2
    assert 0.15 < anyio.current_time() - started < 1


async def test_long_poll_wakes_when_a_message_is_released(backend):
    queue_url = await backend.create_queue("q")
    await send_one(backend, queue_url)
    (first,) = await receive_now(backend, queue_url)
    received: list[QueueMessage] = []

    async def poll() -> None:
        received.extend(await backend.receive(queue_url, max_messages=1, wait_time_s=20))

    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await wait_all_tasks_blocked()
        await change(backend, queue_url, first.receipt_handle, 0)

    assert [m.receive_count for m in received] == [2]
    assert anyio.current_time() - started < 0.5


async def test_long_poll_wakes_when_a_fifo_group_is_freed(backend):
    queue_url = await backend.create_queue("q.fifo", {"FifoQueue": "true"})
    await send_one(backend, queue_url, "a1", group_id="a", deduplication_id="1")
    await send_one(backend, queue_url, "a2", group_id="a", deduplication_id="2")
    (first,) = await backend.receive(queue_url, max_messages=1, wait_time_s=0)
    received: list[QueueMessage] = []

    async def poll() -> None:
        received.extend(await backend.receive(queue_url, max_messages=1, wait_time_s=20))

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await wait_all_tasks_blocked()
        result = await backend.delete_batch(queue_url, [DeleteEntry("d", first.receipt_handle)])
        assert result.successful == ("d",)

    assert [m.body for m in received] == ["a2"]


@pytest.mark.parametrize("send_first", [False, True], ids=["cancel-then-send", "send-then-cancel"])
async def test_cancelled_receive_takes_no_message(backend, send_first):
    queue_url = await backend.create_queue("q")
    returned: list[QueueMessage] = []

    async def poll() -> None:
        returned.extend(await backend.receive(queue_url, max_messages=1, wait_time_s=20))

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        await wait_all_tasks_blocked()
        if send_first:  # the poller is woken, but has not run yet when the cancel comes
            await send_one(backend, queue_url)
        tg.cancel_scope.cancel()
        if not send_first:
            await send_one(backend, queue_url)

    (message,) = await receive_now(backend, queue_url)
    assert returned == []
    assert message.receive_count == 1


# -- visibility changes and receipt handles ----------------------------------------------


async def test_receipt_handles_are_signed_per_queue(backend):
    queue_url = await backend.create_queue("q")
    other_url = await backend.create_queue("other")
    await send_one(backend, queue_url)
    (message,) = await receive_now(backend, queue_url)
    forged = message.receipt_handle[:-1] + ("0" if message.receipt_handle[-1] != "0" else "1")

    for url, handle in [(queue_url, forged), (other_url, message.receipt_handle)]:
        result = await backend.delete_batch(url, [DeleteEntry("d", handle)])
        assert [f.code for f in result.failed] == ["ReceiptHandleIsInvalid"]


async def test_delete_with_a_stale_handle_still_deletes(backend):
    queue_url = await backend.create_queue("q")
    await send_one(backend, queue_url)
    (first,) = await receive_now(backend, queue_url, visibility_timeout_s=0)
    await receive_now(backend, queue_url)

    result = await backend.delete_batch(queue_url, [DeleteEntry("d", first.receipt_handle)])

    assert result.successful == ("d",)
    assert await backend.get_queue_depth(queue_url) == QueueDepth(0, 0, 0)


async def test_visibility_may_reach_twelve_hours_after_the_latest_receive(timed, clock):
    queue_url = await timed.create_queue("q")
    await send_one(timed, queue_url)
    (message,) = await receive_now(timed, queue_url)
    assert (await change(timed, queue_url, message.receipt_handle, 43_200)).successful == ("v",)
    clock.advance(43_000)

    over = await change(timed, queue_url, message.receipt_handle, 201)
    within = await change(timed, queue_url, message.receipt_handle, 200)

    assert [(f.code, "beyond the limit" in f.message) for f in over.failed] == [
        ("InvalidParameterValue", True)
    ]
    assert within.successful == ("v",)
    clock.advance(200)
    (again,) = await receive_now(timed, queue_url)  # a new receive: a new 12 hours
    assert (await change(timed, queue_url, again.receipt_handle, 43_200)).successful == ("v",)


async def test_visibility_timeout_out_of_range_fails_the_entry(backend):
    queue_url = await backend.create_queue("q")
    await send_one(backend, queue_url)
    (message,) = await receive_now(backend, queue_url)

    result = await change(backend, queue_url, message.receipt_handle, 43_201)

    assert [f.code for f in result.failed] == ["InvalidParameterValue"]


# -- send rules ----------------------------------------------------------------------------


def _attributes(count: int) -> dict[str, MessageAttributeValue]:
    return {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(count)}


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        (SendEntry(id="e", body=""), "InvalidParameterValue"),
        (SendEntry(id="e", body="nul \x00"), "InvalidMessageContents"),
        (SendEntry(id="e", body="bell \x07"), "InvalidMessageContents"),
        (SendEntry(id="e", body="lone \ud800 surrogate"), "InvalidMessageContents"),
        (SendEntry(id="e", body="\ufffe"), "InvalidMessageContents"),
        (SendEntry(id="e", body="x", message_attributes=_attributes(11)), "InvalidParameterValue"),
        (
            SendEntry(id="e", body="x", message_attributes={"n": {"DataType": "Number"}}),
            "InvalidParameterValue",
        ),
        (
            SendEntry(id="e", body="x", message_attributes={"b": {"DataType": "Binary"}}),
            "InvalidParameterValue",
        ),
        (
            SendEntry(
                id="e", body="x", message_attributes={"d": {"DataType": "Date", "StringValue": "1"}}
            ),
            "InvalidParameterValue",
        ),
        (SendEntry(id="e", body="x", delay_s=901), "InvalidParameterValue"),
        (SendEntry(id="e", body="x", delay_s=-1), "InvalidParameterValue"),
        (SendEntry(id="e", body="x", deduplication_id="d"), "InvalidParameterValue"),
    ],
)
async def test_invalid_message_fails_its_entry_and_the_rest_are_sent(backend, entry, code):
    queue_url = await backend.create_queue("q")

    result = await backend.send_batch(queue_url, [entry, SendEntry(id="ok", body="fine")])

    assert [(f.id, f.code, f.sender_fault) for f in result.failed] == [("e", code, True)]
    assert result.successful == ("ok",)
    assert list(result.message_ids) == ["ok"]


async def test_allowed_body_characters_are_accepted(backend):
    queue_url = await backend.create_queue("q")

    await send_one(backend, queue_url, "\t\n\r \ud7ff\ue000\ufffd\U00010000\U0010ffff")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"group_id": "g", "deduplication_id": "d", "delay_s": 5}, "InvalidParameterValue"),
        ({"deduplication_id": "d"}, "MissingParameter"),
        ({"group_id": "g"}, "InvalidParameterValue"),
    ],
)
async def test_fifo_send_rules(backend, fields, code):
    queue_url = await backend.create_queue("q.fifo", {"FifoQueue": "true"})

    result = await backend.send_batch(queue_url, [SendEntry(id="e", body="x", **fields)])

    assert [f.code for f in result.failed] == [code]


async def test_size_counts_attributes_against_the_queue_maximum(backend):
    queue_url = await backend.create_queue("q", {"MaximumMessageSize": "1024"})
    padding: dict[str, MessageAttributeValue] = {
        "pad": {"DataType": "String", "StringValue": "y" * 20}
    }

    result = await backend.send_batch(
        queue_url,
        [
            SendEntry(id="fits", body="x" * 1024),
            SendEntry(id="over", body="x" * 1000, message_attributes=padding),
        ],
    )

    assert result.successful == ("fits",)
    assert [f.id for f in result.failed] == ["over"]


async def test_batch_size_counts_bytes_not_characters(backend):
    queue_url = await backend.create_queue("q")
    body = "é" * (MAX_MESSAGE_BYTES // 2)  # two bytes each in UTF-8

    with pytest.raises(BatchRequestError) as raised:
        await backend.send_batch(queue_url, [SendEntry(id="a", body=body + "x")])

    assert raised.value.code == "AWS.SimpleQueueService.BatchRequestTooLong"
    assert raised.value.message.endswith(f"You have sent {MAX_MESSAGE_BYTES + 1} bytes.")


@pytest.mark.parametrize(
    ("body", "value", "size"),
    [
        ("plain", "v", 5 + 1 + 6 + 1),  # body, then name "k", type "String", value
        ("é€😀", "ü", 9 + 1 + 6 + 2),
        ("x\ud800", "\udfff", 4 + 1 + 6 + 3),  # a lone surrogate: 3 bytes
    ],
)
def test_message_size_counts_utf8_bytes_of_body_and_attributes(
    body: str, value: str, size: int
) -> None:
    attributes: MessageAttributes = {"k": {"DataType": "String", "StringValue": value}}
    assert message_size(body, attributes) == size


async def test_message_attributes_are_copied_on_send(backend):
    queue_url = await backend.create_queue("q")
    attributes: dict[str, MessageAttributeValue] = {"k": {"DataType": "String", "StringValue": "v"}}
    await send_one(backend, queue_url, message_attributes=attributes)
    attributes["k"]["StringValue"] = "changed"

    (message,) = await receive_now(backend, queue_url)

    assert message.message_attributes["k"]["StringValue"] == "v"


# -- FIFO ------------------------------------------------------------------------------------


async def test_fifo_duplicate_returns_the_original_message_id_for_five_minutes(timed, clock):
    queue_url = await timed.create_queue("q.fifo", {"FifoQueue": "true"})
    original = await send_one(timed, queue_url, "a", group_id="g", deduplication_id="d")
    clock.advance(299)

    duplicate = await send_one(timed, queue_url, "b", group_id="g", deduplication_id="d")
    clock.advance(1)
    fresh = await send_one(timed, queue_url, "c", group_id="g", deduplication_id="d")

    assert duplicate == original
    assert fresh != original
    assert (await timed.get_queue_depth(queue_url)).visible == 2


async def test_fifo_attributes_carry_group_sequence_and_deduplication_id(backend):
    queue_url = await backend.create_queue(
        "q.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )
    await send_one(backend, queue_url, "one", group_id="g")
    await send_one(backend, queue_url, "two", group_id="h")

    first, second = await receive_now(backend, queue_url)

    assert (first.group_id, second.group_id) == ("g", "h")
    assert int(first.attributes["SequenceNumber"]) < int(second.attributes["SequenceNumber"])
    assert len(first.attributes["SequenceNumber"]) == 20
    assert first.attributes["MessageDeduplicationId"] == hashlib.sha256(b"one").hexdigest()


async def test_standard_queue_group_ids_do_not_lock_groups(backend):
    queue_url = await backend.create_queue("q")
    await send_one(backend, queue_url, "a1", group_id="a")
    await send_one(backend, queue_url, "a2", group_id="a")
    await backend.receive(queue_url, max_messages=1, wait_time_s=0)

    (message,) = await receive_now(backend, queue_url)

    assert (message.body, message.group_id) == ("a2", "a")


# -- redrive ----------------------------------------------------------------------------------


async def test_redrive_keeps_the_message_and_restarts_its_receive_count(timed, clock):
    dlq_url = await timed.create_queue("dlq")
    policy = json.dumps(
        {"deadLetterTargetArn": "arn:aws:sqs:memory:000000000000:dlq", "maxReceiveCount": "1"}
    )
    queue_url = await timed.create_queue("q", {"RedrivePolicy": policy, "VisibilityTimeout": "1"})
    attributes: dict[str, MessageAttributeValue] = {"k": {"DataType": "String", "StringValue": "v"}}
    message_id = await send_one(timed, queue_url, "poison", message_attributes=attributes)
    (first,) = await receive_now(timed, queue_url)
    clock.advance(1)

    assert await receive_now(timed, queue_url) == []
    (dead,) = await receive_now(timed, dlq_url)

    assert (dead.message_id, dead.body, dead.message_attributes) == (
        message_id,
        "poison",
        attributes,
    )
    assert dead.receive_count == 1
    assert dead.attributes["SentTimestamp"] == first.attributes["SentTimestamp"]
    stale = await timed.delete_batch(queue_url, [DeleteEntry("d", first.receipt_handle)])
    assert stale.successful == ("d",)  # gone from the source: an idempotent delete


@pytest.mark.parametrize("handle", ["", ".", "..", "ünïcode.handle", "a.b.c.d", "\ud800"])
async def test_garbage_receipt_handles_are_invalid(backend, handle):
    queue_url = await backend.create_queue("q")

    deleted = await backend.delete_batch(queue_url, [DeleteEntry("d", handle)])
    changed = await change(backend, queue_url, handle, 1)

    assert [f.code for f in deleted.failed + changed.failed] == ["ReceiptHandleIsInvalid"] * 2
