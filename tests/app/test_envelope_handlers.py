"""Handlers registered with an envelope get the inner payload and the wrapper's metadata."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import BaseModel

from aiosqsq import EventBridgeMetadata, HandlerSignatureError, Message, S3Record, SNSMetadata
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester, error_of
from tests.helpers import make_app, make_queue

SAMPLES = Path(__file__).parents[1] / "data" / "envelopes"


class Order(BaseModel):
    id: int
    sku: str


def _sample(name: str) -> str:
    return (SAMPLES / name).read_text()


@pytest.fixture
async def backend() -> MemoryBackend:
    backend = MemoryBackend()
    await make_queue(backend)
    return backend


async def test_sns_notifications_and_raw_delivery_both_reach_the_handler(
    backend: MemoryBackend,
) -> None:
    app = make_app(backend)
    got: list[tuple[Order, object]] = []

    @app.handler(envelope="sns")
    async def handle(order: Order, message: Message) -> None:
        got.append((order, message.envelope))

    await app.send(_sample("sns_notification.json"))
    await app.send({"id": 2, "sku": "raw"})  # raw message delivery: no envelope
    await app.send('{"Type": "Notification", "TopicArn": "arn:t"}')  # no Message
    drained = await AppTester(app).drain()

    assert sorted(order.id for order, _ in got) == [1, 2]
    metadata = {order.id: meta for order, meta in got}
    assert isinstance(metadata[1], SNSMetadata)
    assert metadata[1].topic_arn == "arn:aws:sns:us-west-2:123456789012:MyTopic"
    assert metadata[2] is None
    assert len(drained.dead_lettered) == 1
    (dead,) = await AppTester(app).dead_letters()
    assert (error_of(dead) or "").startswith("EnvelopeError: SNS")


async def test_eventbridge_detail_is_the_payload(backend: MemoryBackend) -> None:
    app = make_app(backend)
    got: list[tuple[dict[str, object], object]] = []

    @app.handler(envelope="eventbridge")
    async def handle(detail: dict[str, object], message: Message) -> None:
        got.append((detail, message.envelope))

    event = json.loads(_sample("eventbridge_event.json"))
    await app.send(event)
    await AppTester(app).drain()
    ((detail, meta),) = got
    assert detail == event["detail"]
    assert isinstance(meta, EventBridgeMetadata)
    assert meta.source == event["source"]


async def test_s3_records_one_call_each_and_the_test_event_is_deleted_unhandled(
    backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(backend)
    records: list[S3Record] = []

    @app.handler(envelope="s3")
    async def handle(record: S3Record) -> None:
        records.append(record)

    await app.send(_sample("s3_put.json"))
    await app.send(_sample("sns_s3_put.json"))
    await app.send(_sample("s3_eventbridge_created.json"))
    await app.send(_sample("s3_test_event.json"))
    with caplog.at_level(logging.INFO, logger="aiosqsq"):
        drained = await AppTester(app).drain()

    assert len(records) == 3
    assert all(isinstance(r, S3Record) and r.bucket for r in records)
    assert len(drained.succeeded) == 4
    assert sum("s3:TestEvent" in r.getMessage() for r in caplog.records) == 1


async def test_s3_batch_handlers_get_the_records_as_a_list(backend: MemoryBackend) -> None:
    app = make_app(backend)
    got: list[list[S3Record]] = []

    @app.handler(envelope="s3", batch=True, max_batch_size=10, max_wait_s=0)
    async def handle(records: list[S3Record], messages: list[Message]) -> None:
        assert len(records) == len(messages)
        got.append(records)

    await app.send_batch([_sample("s3_put.json"), _sample("s3_delete.json")])
    await AppTester(app).drain()
    assert sum(len(batch) for batch in got) == 2


def test_an_unknown_envelope_or_a_wrong_s3_annotation_fails_at_import(
    backend: MemoryBackend,
) -> None:
    app = make_app(backend)

    async def handle(order: Order) -> None: ...

    with pytest.raises(HandlerSignatureError, match="unknown envelope 'sqs'"):
        app.handler(envelope="sqs")(handle)
    with pytest.raises(HandlerSignatureError, match="annotate 'order: S3Record'"):
        app.handler(envelope="s3")(handle)
