"""Fetched payloads past SQS's 1 MiB: envelope handlers take them, and a handler's own
``max_payload_bytes`` replaces QUEUE_LARGE_PAYLOAD_MAX_BYTES for its queue, both ways."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiosqsq import App, HandlerSignatureError, QueueSettings
from aiosqsq.backends.base import MessageAttributes, SendEntry
from aiosqsq.large_payload import PayloadPointer
from aiosqsq.testing import AppTester, error_of
from tests.helpers import eventually

MIB = 1024 * 1024
SNS_SAMPLE = Path(__file__).parent.parent / "data" / "envelopes" / "sns_notification.json"


def memory_app(**settings: Any) -> App:
    return App(
        QueueSettings(backend="memory", large_payload_bucket="mem", retry_base_delay=0, **settings)
    )


async def send_offloaded(app: App, queue: str, body: str) -> None:
    """``body`` as a producer of another stack sends it (whatever this app's limits):
    stored in the bucket, a pointer sent."""
    payloads = app.service.large_payloads
    assert payloads is not None
    data = body.encode()
    key = f"from-elsewhere/{uuid.uuid4()}"
    await payloads.store.put("mem", key, data, kms_key_id=None)
    size: MessageAttributes = {
        "ExtendedPayloadSize": {"DataType": "Number", "StringValue": str(len(data))}
    }
    entry = SendEntry("0", PayloadPointer("mem", key).body(), message_attributes=size)
    url = await app.service.queue_url(queue)
    await app.service.backend.send_batch(url, [entry])


def sns_notification(message: str) -> str:
    """An SNS notification (not raw delivery) whose Message is ``message``."""
    document = json.loads(SNS_SAMPLE.read_text())
    document["Message"] = message
    return json.dumps(document)


@pytest.mark.parametrize("batch", [False, True])
async def test_an_sns_handler_gets_a_notification_fetched_from_s3(batch: bool) -> None:
    app = memory_app()
    got: list[int] = []
    big = {"id": 1, "blob": "x" * (2 * MIB)}

    if batch:

        @app.handler("events", envelope="sns", batch=True)
        async def handle_all(items: list[dict[str, Any]]) -> None:
            got.extend(len(item["blob"]) for item in items)
    else:

        @app.handler("events", envelope="sns")
        async def handle(item: dict[str, Any]) -> None:
            got.append(len(item["blob"]))

    tester = AppTester(app)
    await send_offloaded(app, "events", sns_notification(json.dumps(big)))
    drained = await tester.drain()
    assert await tester.dead_letters("events") == []
    assert got == [2 * MIB]
    assert len(drained.succeeded) == 1


@pytest.mark.parametrize("batch", [False, True])
async def test_a_handlers_own_limit_refuses_a_larger_payload(batch: bool) -> None:
    app = memory_app(large_payload_always=True)
    got: list[int] = []

    if batch:

        @app.handler("small", max_payload_bytes=1000, batch=True)
        async def handle_all(items: list[str]) -> None:
            got.extend(len(item) for item in items)
    else:

        @app.handler("small", max_payload_bytes=1000)
        async def handle(item: str) -> None:
            got.append(len(item))

    tester = AppTester(app)
    await tester.send("y" * 500, "small")
    await tester.send("z" * 1500, "small")
    await tester.drain()
    assert got == [500]
    [dead] = await tester.dead_letters("small")
    assert error_of(dead) == (
        "PayloadTooLarge: large payload: the payload of 1500 bytes is over the handler's "
        "max_payload_bytes (1000): not loaded"
    )


async def test_a_handlers_own_limit_may_be_above_the_settings() -> None:
    app = memory_app(large_payload_max_bytes=1000)
    got: list[int] = []

    @app.handler("big", max_payload_bytes=3 * MIB)
    async def handle(item: dict[str, str]) -> None:
        got.append(len(item["blob"]))

    @app.handler("other")
    async def handle_other(item: dict[str, str]) -> None:
        got.append(-1)

    tester = AppTester(app)
    body = json.dumps({"blob": "b" * (2 * MIB)})
    await send_offloaded(app, "big", body)
    await send_offloaded(app, "other", body)
    await tester.drain()
    assert got == [2 * MIB]  # decoded whole: past 1 MiB and past the setting
    [dead] = await tester.dead_letters("other")
    assert (error_of(dead) or "").startswith(
        "PayloadTooLarge: large payload: the payload of 2097164 bytes is over "
        "QUEUE_LARGE_PAYLOAD_MAX_BYTES (1000): not loaded"
    )


async def test_a_payload_is_fetched_only_once_its_message_has_a_handler_slot() -> None:
    # an adaptive limit held at 2: messages are received ahead and wait for the limit
    app = memory_app(large_payload_always=True, concurrency_min=2, concurrency_max=2)
    payloads = app.service.large_payloads
    assert payloads is not None
    store, fetching = payloads.store, payloads.store.get
    gets = 0

    async def counted_get(bucket: str, key: str, *, max_bytes: int) -> bytes:
        nonlocal gets
        gets += 1
        return await fetching(bucket, key, max_bytes=max_bytes)

    store.get = counted_get  # type: ignore[method-assign]
    release = anyio.Event()
    handled: list[str] = []

    @app.handler("jobs")
    async def handle(item: str) -> None:
        await release.wait()
        handled.append(item)

    tester = AppTester(app)
    for number in range(8):
        await tester.send(f"job-{number}", "jobs")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(tester.drain)
        await eventually(lambda: bool(app.consumers))
        [consumer] = app.consumers
        await eventually(lambda: consumer.statistics().received >= 4)  # some wait ahead
        assert consumer.statistics().in_flight >= 4
        assert gets == 2  # one per running handler, none for the messages waiting
        release.set()
    assert sorted(handled) == [f"job-{number}" for number in range(8)]
    assert gets == 8


def test_a_limit_below_one_byte_is_refused_at_registration() -> None:
    app = memory_app()
    with pytest.raises(HandlerSignatureError, match="max_payload_bytes must be >= 1, got 0"):

        @app.handler("q", max_payload_bytes=0)
        async def handle(item: str) -> None: ...


def test_an_unknown_option_is_a_type_error_not_ignored() -> None:
    app = memory_app()
    with pytest.raises(TypeError, match="unexpected keyword argument 'concurency'"):
        app.handler("q", concurency=3)  # type: ignore[call-overload]
