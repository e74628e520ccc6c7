"""Sending through S3: the extended client's pointer and size attribute, batches mixing
offloaded and inline messages, the reserved attribute slot (moto's SQS and S3)."""

from __future__ import annotations

import json
import uuid

import pytest

from aiosqsq.backends.base import QueueMessage
from aiosqsq.errors import ConfigurationError, PayloadTooLargeError, QueueNotFoundError
from aiosqsq.large_payload import POINTER_CLASS
from aiosqsq.service import QueueService
from aiosqsq.settings import QueueSettings
from tests.large_payload.conftest import MotoBucket

MIB = 1024 * 1024


async def _received(service: QueueService, url: str, count: int) -> list[QueueMessage]:
    found: list[QueueMessage] = []
    for _ in range(20):  # bounded: moto hands out what was sent at once
        found.extend(await service.dequeue(url, max_messages=10, wait_time_s=0))
        if len(found) >= count:
            break
    return found


async def test_a_body_past_the_limit_goes_to_s3_as_the_extended_client_writes_it(
    large_settings: QueueSettings, bucket: MotoBucket
) -> None:
    payload = "x" * (2 * MIB)
    async with QueueService(large_settings) as service:
        url = await service.backend.create_queue("lp-one")
        await service.enqueue(payload, url, attributes={"tenant": "t1"})
        [message] = await _received(service, url, 1)
        await service.backend.delete_queue(url)
    [key] = bucket.keys()
    assert key.startswith("p/")
    assert json.loads(message.body) == [POINTER_CLASS, {"s3BucketName": bucket.name, "s3Key": key}]
    assert message.body.startswith('["software.amazon.payloadoffloading.PayloadS3Pointer", {')
    assert message.message_attributes["ExtendedPayloadSize"] == {
        "DataType": "Number",
        "StringValue": str(2 * MIB),
    }
    assert message.message_attributes["tenant"]["StringValue"] == "t1"
    assert bucket.read(key) == payload.encode()


async def test_a_batch_mixes_offloaded_and_inline_messages(
    large_settings: QueueSettings, bucket: MotoBucket
) -> None:
    payloads = [f"small {i}" for i in range(10)]
    payloads[3] = "a" * (3 * MIB // 2)
    payloads[7] = "é" * (MIB // 2 + 1)  # 1 MiB + 2 bytes of UTF-8: over the limit
    payloads.append("b" * 900_000)  # fits alone, inline
    async with QueueService(large_settings) as service:
        url = await service.backend.create_queue("lp-mixed")
        ids = await service.enqueue_batch(payloads, url)
        received = await _received(service, url, len(payloads))
        await service.backend.delete_queue(url)
    assert len(ids) == len(set(ids)) == 11
    by_id = {message.message_id: message for message in received}
    pointers = [
        i for i, mid in enumerate(ids) if "ExtendedPayloadSize" in by_id[mid].message_attributes
    ]
    assert pointers == [3, 7]
    assert by_id[ids[10]].body == payloads[10]
    assert len(bucket.keys()) == 2
    assert by_id[ids[7]].message_attributes["ExtendedPayloadSize"]["StringValue"] == str(MIB + 2)


async def test_the_legacy_attribute_name_by_setting(
    large_settings: QueueSettings, bucket: MotoBucket
) -> None:
    settings = large_settings.model_copy(
        update={
            "large_payload_size_attribute": "SQSLargePayloadSize",
            "large_payload_always": True,
            "s3_endpoint_url": None,  # a loopback SQS endpoint serves S3 too (run --local)
        }
    )
    async with QueueService(settings) as service:
        url = await service.backend.create_queue("lp-legacy")
        await service.enqueue({"small": True}, url)
        [message] = await _received(service, url, 1)
        await service.backend.delete_queue(url)
    assert set(message.message_attributes) == {"SQSLargePayloadSize"}
    assert bucket.read(bucket.keys()[0]) == b'{"small":true}'


async def test_threshold_offloads_what_is_over_it_and_keeps_the_rest_inline(
    large_settings: QueueSettings, bucket: MotoBucket
) -> None:
    settings = large_settings.model_copy(update={"large_payload_threshold": 100})
    async with QueueService(settings) as service:
        url = await service.backend.create_queue("lp-threshold")
        await service.enqueue_batch(["y" * 100, "y" * 101], url)
        received = await _received(service, url, 2)
        await service.backend.delete_queue(url)
    inline = [m for m in received if not m.message_attributes]
    assert [m.body for m in inline] == ["y" * 100]
    assert len(bucket.keys()) == 1


async def test_one_attribute_slot_is_reserved(large_settings: QueueSettings) -> None:
    ten = {f"a{i}": "v" for i in range(10)}
    async with QueueService(large_settings) as service:
        with pytest.raises(ValueError, match="one is reserved") as refused:
            await service.enqueue("x", "lp-never-made", attributes=ten)
    assert str(refused.value) == (
        "the message has 10 message attributes; SQS allows 9 of its 10 with large payloads "
        "on (one is reserved for the payload's size attribute) (send middleware counts: it "
        "may have added some)"
    )


async def test_a_payload_over_the_consumers_maximum_is_refused_before_any_put(
    large_settings: QueueSettings, bucket: MotoBucket
) -> None:
    settings = large_settings.model_copy(update={"large_payload_max_bytes": 2 * MIB})
    async with QueueService(settings) as service:
        url = await service.backend.create_queue(f"lp-{uuid.uuid4().hex[:10]}", {})
        try:
            with pytest.raises(PayloadTooLargeError, match="QUEUE_LARGE_PAYLOAD_MAX_BYTES"):
                await service.enqueue("z" * (2 * MIB + 1), url)
            with pytest.raises(QueueNotFoundError):  # looked up before the PUT
                await service.enqueue("z" * (2 * MIB), "lp-never-made")
            assert (await service.backend.get_queue_depth(url)).visible == 0
        finally:
            await service.backend.delete_queue(url)
    assert bucket.keys() == []


async def test_a_send_may_choose_to_offload_or_not(
    large_settings: QueueSettings, bucket: MotoBucket
) -> None:
    async with QueueService(large_settings) as service:
        url = await service.backend.create_queue("lp-per-send")
        await service.enqueue("small", url, offload=True)  # under the threshold: S3 anyway
        await service.enqueue_batch(["a", "b"], url, offload=True)
        with pytest.raises(PayloadTooLargeError):  # over 1 MiB and kept inline: refused
            await service.enqueue("z" * (2 * MIB), url, offload=False)
        received = await _received(service, url, 3)
        await service.backend.delete_queue(url)
    assert len(bucket.keys()) == 3
    assert all(m.body.startswith(f'["{POINTER_CLASS}"') for m in received)


async def test_offload_without_a_bucket_is_a_configuration_error(
    large_settings: QueueSettings,
) -> None:
    settings = large_settings.model_copy(update={"large_payload_bucket": None})
    async with QueueService(settings) as service:
        with pytest.raises(ConfigurationError, match="set QUEUE_LARGE_PAYLOAD_BUCKET"):
            await service.enqueue("x", "anything", offload=True)
