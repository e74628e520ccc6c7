"""QueueService: the origin report's enqueue / dequeue / ack / nack vocabulary."""

from __future__ import annotations

import pytest

from aiosqsq import BackendError, PayloadTooLargeError, QueueService, QueueSettings


@pytest.fixture
def service() -> QueueService:
    return QueueService(QueueSettings(backend="memory", wait_time_seconds=0))


async def test_enqueue_dequeue_ack(service: QueueService) -> None:
    message_id = await service.enqueue({"id": 1}, attributes={"kind": "order", "n": 2})
    (message,) = await service.dequeue()
    assert message.message_id == message_id
    assert message.receipt_handle != message.message_id  # two different things
    assert message.body == '{"id":1}'
    assert message.message_attributes["kind"] == {"DataType": "String", "StringValue": "order"}
    assert message.message_attributes["n"] == {"DataType": "Number", "StringValue": "2"}
    await service.ack(message)
    assert await service.dequeue() == []
    depth = await service.backend.get_queue_depth(await service.queue_url())
    assert (depth.visible, depth.in_flight) == (0, 0)


async def test_nack_makes_the_message_visible_again(service: QueueService) -> None:
    await service.enqueue("again")
    (first,) = await service.dequeue()
    await service.nack(first)
    (second,) = await service.dequeue()
    assert (second.message_id, second.receive_count) == (first.message_id, 2)


async def test_ack_with_a_forged_receipt_handle_fails_loudly(service: QueueService) -> None:
    await service.enqueue("x")
    (message,) = await service.dequeue()
    forged = type(message)(message.queue_url, message.message_id, "forged", message.body)
    with pytest.raises(BackendError, match="ReceiptHandleIsInvalid"):
        await service.ack(forged)


async def test_memory_queues_are_created_with_a_dead_letter_queue(service: QueueService) -> None:
    info = await service.backend.get_queue_info(await service.queue_url("orders"))
    assert info.dead_letter_queue_url is not None
    assert info.dead_letter_queue_url.endswith("orders-dlq")
    assert info.max_receive_count == 5


async def test_a_body_over_one_mebibyte_fails_before_sending(service: QueueService) -> None:
    with pytest.raises(PayloadTooLargeError) as raised:
        await service.enqueue("x" * (1_048_576 + 1))
    assert str(raised.value).startswith(
        "message of 1048577 bytes (body and attributes) is over SQS's limit of 1048576 bytes"
    )
    depth = await service.backend.get_queue_depth(await service.queue_url())
    assert depth.visible == 0


async def test_enqueue_batch_keeps_order_past_ten(service: QueueService) -> None:
    ids = await service.enqueue_batch([str(i) for i in range(23)])
    assert len(set(ids)) == 23
    received = []
    while batch := await service.dequeue(max_messages=10):
        received.extend(batch)
    assert [m.message_id for m in received] == ids


async def test_enqueue_batch_splits_by_size_as_well_as_by_count(service: QueueService) -> None:
    """Ten bodies of 200 kB are 2 MB: more than one request, however many entries."""
    bodies = [f"{i}" + "x" * 200_000 for i in range(10)]
    ids = await service.enqueue_batch(bodies)
    assert len(set(ids)) == 10
    received = []
    while batch := await service.dequeue(max_messages=10):
        received.extend(batch)
    assert sorted(m.body for m in received) == sorted(bodies)
