"""Cleanup of S3 objects: only after the message's delete succeeded, never for a message
moved to the dead-letter queue; a failed S3 delete is counted, not retried; a SIGKILL
between the two deletes leaves an orphan object, never a lost message."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel

from aiosqsq import App, Message, QueueSettings
from aiosqsq.backends.base import BatchResult, MessageAttributes, SendEntry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.backends.object_store import MemoryObjectStore
from aiosqsq.errors import AccessError, BackendError
from aiosqsq.large_payload import PayloadPointer, parse_pointer
from aiosqsq.service import QueueService
from aiosqsq.testing import AppTester, error_of
from tests.cli.conftest import MotoQueues
from tests.cli.harness import CliProcess
from tests.helpers import make_queue, slow
from tests.large_payload.conftest import MotoBucket, PayloadQueue
from tests.large_payload.s3_proxy import S3Proxy
from tests.large_payload.test_consume_e2e import APPS, ledger_lines, send


class Order(BaseModel):
    id: int


def memory_app(
    backend: MemoryBackend | None = None, **settings: Any
) -> tuple[App, MemoryObjectStore]:
    app = App(
        QueueSettings(
            backend="memory",
            large_payload_bucket="mem",
            large_payload_always=True,
            retry_base_delay=0,
            **settings,
        ),
        backend=backend,
    )
    assert app.service.large_payloads is not None
    store = app.service.large_payloads.store
    assert isinstance(store, MemoryObjectStore)
    return app, store


@pytest.mark.parametrize("cleanup", [True, False])
async def test_only_objects_of_deleted_messages_are_removed(cleanup: bool) -> None:
    app, store = memory_app(large_payload_cleanup=cleanup)

    @app.handler("orders")
    async def handle(order: Order) -> None:
        if order.id == 1:
            raise RuntimeError("fails on every receive")

    tester = AppTester(app)
    for payload in ({"id": 0}, {"id": 1}, {"id": "not a number"}):
        await tester.send(payload, "orders")
    assert len(store.objects) == 3
    drained = await tester.drain()
    assert len(drained.succeeded) == 1
    assert len(drained.dead_lettered) == 2  # failed five times; did not validate
    kept = sorted(str(json.loads(data)["id"]) for data in store.objects.values())
    assert kept == (["1", "not a number"] if cleanup else ["0", "1", "not a number"])
    dead = await tester.dead_letters("orders")
    assert all(m.message_attributes["ExtendedPayloadSize"] for m in dead)  # still pointers


async def test_cleanup_deletes_only_under_its_prefix() -> None:
    app, store = memory_app(large_payload_cleanup=True, large_payload_prefix="p/")
    handled: list[int] = []

    @app.handler("orders")
    async def handle(order: Order) -> None:
        handled.append(order.id)

    tester = AppTester(app)
    await tester.send({"id": 1}, "orders")  # stored under p/
    store.objects["mem", "elsewhere"] = b'{"id": 2}'  # a sender's pointer outside it
    pointer = PayloadPointer("mem", "elsewhere").body()
    size: MessageAttributes = {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "9"}}
    url = await app.service.queue_url("orders")
    await app.service.backend.send_batch(url, [SendEntry("0", pointer, message_attributes=size)])
    await tester.drain()
    assert sorted(handled) == [1, 2]
    assert list(store.objects) == [("mem", "elsewhere")]  # read, handled, never deleted


@pytest.mark.parametrize("ignore", [False, True])
async def test_a_missing_object(ignore: bool) -> None:
    app, store = memory_app(large_payload_ignore_missing=ignore)
    calls: list[Any] = []

    @app.handler("orders")
    async def handle(order: Order) -> None:
        calls.append(order)

    tester = AppTester(app)
    await tester.send({"id": 7}, "orders")
    store.objects.clear()
    drained = await tester.drain()
    assert calls == []
    if ignore:  # deleted unhandled, as asked
        assert len(drained.succeeded) == 1
        assert await tester.dead_letters("orders") == []
    else:
        [dead] = await tester.dead_letters("orders")
        reason = error_of(dead) or ""
        assert reason.startswith("PayloadObjectMissing: large payload: 's3://mem/")


async def test_a_failed_s3_delete_is_logged_and_counted_not_retried(
    large_settings: QueueSettings,
    bucket: MotoBucket,
    moto_endpoint: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = S3Proxy(moto_endpoint, fail_deletes=True)
    try:
        settings = large_settings.model_copy(
            update={
                "s3_endpoint_url": proxy.endpoint_url,
                "large_payload_cleanup": True,
                "large_payload_always": True,
                "wait_time_seconds": 0,
            }
        )
        app = App(settings)
        url = await app.service.backend.create_queue(f"lp-{uuid.uuid4().hex[:8]}")
        handled: list[int] = []

        @app.handler(url)
        async def handle(order: Order) -> None:
            handled.append(order.id)

        await app.send_batch([{"id": i} for i in range(3)], url)
        await app.run(burst=True)
        async with QueueService(settings) as service:  # the app's connection is closed
            depth = await service.backend.get_queue_depth(url)
            await service.backend.delete_queue(url)
    finally:
        proxy.close()
    assert sorted(handled) == [0, 1, 2]
    assert (depth.visible, depth.in_flight) == (0, 0)
    large = app.service.large_payloads
    assert large is not None
    assert (large.deleted, large.delete_failures) == (0, 3)
    assert 1 <= proxy.delete_requests <= 3 * 3  # botocore's 3 attempts per request, no more
    assert len(bucket.keys()) == 3
    warnings = [r.getMessage() for r in caplog.records if "large-payload object" in r.getMessage()]
    assert warnings
    assert "they stay in the bucket" in warnings[0]


async def test_a_fetch_throttled_past_the_sdks_retries_is_retried_not_dead_lettered(
    large_settings: QueueSettings, bucket: MotoBucket, moto_endpoint: str
) -> None:
    proxy = S3Proxy(moto_endpoint, fail_gets=4)  # botocore makes 3 attempts per call
    try:
        settings = large_settings.model_copy(
            update={
                "s3_endpoint_url": proxy.endpoint_url,
                "large_payload_always": True,
                "wait_time_seconds": 0,
                "retry_base_delay": 0,
            }
        )
        app = App(settings)
        url = await app.service.backend.create_queue(f"lp-{uuid.uuid4().hex[:8]}")
        handled: list[tuple[int, int]] = []

        @app.handler(url)
        async def handle(order: Order, message: Message) -> None:
            handled.append((order.id, message.receive_count))

        await app.send({"id": 4}, url)
        await app.run(burst=True)
        async with QueueService(settings) as service:
            await service.backend.delete_queue(url)
    finally:
        proxy.close()
    assert handled == [(4, 2)]  # the first receive's fetch failed for now: retried
    assert app.statistics().dead_lettered == 0
    assert proxy.gets_failed == 4


def test_sigkill_between_the_sqs_delete_and_the_s3_delete_leaves_an_orphan_object(
    payload_queue: PayloadQueue, moto_queues: MotoQueues, moto_endpoint: str
) -> None:
    url, bucket, ledger = payload_queue.url, payload_queue.bucket, payload_queue.ledger
    send(payload_queue.settings, url, [{"id": 0, "blob": "k" * (2 * 1024 * 1024)}])
    [key] = bucket.keys()
    proxy = S3Proxy(moto_endpoint, hold_deletes=True)
    try:
        env = payload_queue.worker_env(proxy.endpoint_url)
        env["QUEUE_LARGE_PAYLOAD_CLEANUP"] = "true"
        with CliProcess("run", "payload_ledger:app", "--app-dir", APPS, env=env) as worker:
            assert proxy.delete_held.wait(slow(60)), worker.output  # SQS delete done by now
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    finally:
        proxy.close()
    assert [line["id"] for line in ledger_lines(ledger)] == [0]  # handled once
    depth = moto_queues.depth(url)
    assert (depth.visible, depth.in_flight) == (0, 0)  # deleted, not lost
    assert bucket.keys() == [key]  # the orphan a lifecycle rule expires


async def test_a_send_sqs_refuses_for_good_leaves_no_object() -> None:
    backend = MemoryBackend()
    await backend.create_queue(
        "jobs.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )
    app, store = memory_app(backend)
    with pytest.raises(BackendError, match=r"^MissingParameter: "):  # no group id: refused
        await app.send("x", "jobs.fifo")
    with pytest.raises(BackendError, match=r"^MissingParameter: "):  # 10 refused, 2 not sent
        await app.send_batch([str(n) for n in range(12)], "jobs.fifo")
    assert store.objects == {}
    await app.send_batch(["a", "b"], "jobs.fifo", group_id="g")
    assert len(store.objects) == 2


class Unavailable(MemoryBackend):
    """SQS answering 503 to every send: whether a message was taken is unknown."""

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        raise BackendError("ServiceUnavailable", "try again", retryable=True)


async def test_a_send_that_may_have_been_taken_keeps_its_object() -> None:
    backend = Unavailable()
    await make_queue(backend, "jobs")
    app, store = memory_app(backend)
    with pytest.raises(BackendError, match=r"^ServiceUnavailable: "):
        await app.send("x", "jobs")
    with pytest.raises(BackendError, match=r"^ServiceUnavailable: "):
        await app.send_batch([str(n) for n in range(12)], "jobs")
    assert len(store.objects) == 1 + 10  # the batches sent; not the 2 never sent


class TakenThenRefused(MemoryBackend):
    """SQS takes the first send and its answer is lost; the retry is refused for good."""

    calls = 0

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        self.calls += 1
        if self.calls == 1:
            await super().send_batch(queue_url, entries)
            raise BackendError("ReadTimeoutError", "the answer was lost", retryable=True)
        raise AccessError("ExpiredToken", "the security token has expired")


async def test_a_send_refused_after_an_attempt_that_may_have_landed_keeps_its_object() -> None:
    backend = TakenThenRefused()
    url = await make_queue(backend, "jobs")
    app, store = memory_app(backend)
    with pytest.raises(AccessError, match=r"^ExpiredToken: "):
        await app.send("x", "jobs")
    [taken] = await backend.receive(url, max_messages=10, wait_time_s=0)
    assert [key for _, key in store.objects] == [parse_pointer(taken.body).key]


class DeniesTheThirdPut(MemoryObjectStore):
    """Stores two objects, then is denied."""

    async def put(self, bucket: str, key: str, data: bytes, *, kms_key_id: str | None) -> None:
        if len(self.objects) == 2:
            raise AccessError("AccessDenied", f"PutObject of s3://{bucket}/{key} was denied")
        await super().put(bucket, key, data, kms_key_id=kms_key_id)


async def test_a_batch_whose_put_fails_leaves_no_object_and_sends_nothing() -> None:
    backend = MemoryBackend()
    url = await make_queue(backend, "jobs")
    app, _ = memory_app(backend)
    assert app.service.large_payloads is not None
    store = app.service.large_payloads.store = DeniesTheThirdPut()
    with pytest.raises(AccessError, match=r"^AccessDenied: "):
        await app.send_batch([str(n) for n in range(5)], "jobs")
    assert store.objects == {}
    assert await backend.receive(url, max_messages=10, wait_time_s=0) == []
