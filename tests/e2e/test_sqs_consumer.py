"""The whole consumer through the SQS backend, against the moto server on 127.0.0.1.

What is guaranteed by the product and what by the server: the moto server here serialises
requests (tests/moto_server.py), so a duplicate seen in these tests would be the
consumer's, not a server race. moto checks visibility once per request, to the second.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from aiosqsq import App, Message, QueueSettings
from aiosqsq.backends.base import QueueMessage, SendEntry, VisibilityEntry
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.errors import QueueNotFoundError
from tests.helpers import slow

MakeQueue = Callable[..., Awaitable[str]]


@pytest.fixture
async def backend(sqs_settings: QueueSettings) -> AsyncIterator[SQSBackend]:
    backend = SQSBackend(sqs_settings)
    yield backend
    await backend.aclose()


@pytest.fixture
async def make_queue(backend: SQSBackend) -> AsyncIterator[MakeQueue]:
    created: list[str] = []

    async def make(
        *, visibility_timeout_s: int = 30, max_receive_count: int | None = None, fifo: bool = False
    ) -> str:
        name = f"e2e-{uuid.uuid4().hex[:8]}"
        suffix = ".fifo" if fifo else ""
        base = {"FifoQueue": "true"} if fifo else {}
        attributes = {**base, "VisibilityTimeout": str(visibility_timeout_s)}
        if max_receive_count is not None:
            dlq_url = await backend.create_queue(f"{name}-dlq{suffix}", base)
            created.append(dlq_url)
            dlq = await backend.get_queue_info(dlq_url)
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive_count}
            )
        url = await backend.create_queue(f"{name}{suffix}", attributes)
        created.append(url)
        return url

    yield make
    for url in created:
        await backend.delete_queue(url)


def _app(backend: SQSBackend, sqs_settings: QueueSettings, url: str, **options: object) -> App:
    values = sqs_settings.model_dump()
    values.update({"sqs_queue_url": url, "wait_time_seconds": 1, **options})
    for secret in ("aws_access_key_id", "aws_secret_access_key"):
        values[secret] = "testing"
    return App(QueueSettings(**values), backend=backend)


async def test_drains_5000_messages_with_no_loss_and_no_duplicate(
    backend: SQSBackend, sqs_settings: QueueSettings, make_queue: MakeQueue
) -> None:
    url = await make_queue()
    app = _app(backend, sqs_settings, url, concurrency=40)
    seen: dict[str, int] = {}

    @app.handler()
    async def handle(payload: str, message: Message) -> None:
        seen[payload] = seen.get(payload, 0) + 1

    total = int(os.environ.get("E2E_TOTAL", "5000"))
    await app.send_batch([str(i) for i in range(total)])
    with anyio.fail_after(slow(240)):
        stats = await app.run(burst=True, handle_signals=False)

    assert len(seen) == total  # no loss
    assert [body for body, count in seen.items() if count > 1] == []  # no duplicate
    assert stats.succeeded == total
    depth = await backend.get_queue_depth(url)
    assert (depth.visible, depth.in_flight) == (0, 0)  # every success deleted


@pytest.mark.slow  # 7-14 s: the slow tier (scripts/test -m slow)
async def test_a_job_three_times_the_visibility_timeout_is_delivered_once(
    backend: SQSBackend, sqs_settings: QueueSettings, make_queue: MakeQueue
) -> None:
    url = await make_queue(visibility_timeout_s=2)
    app = _app(backend, sqs_settings, url)
    deliveries: list[int] = []

    @app.handler()
    async def handle(payload: str, message: Message) -> None:
        deliveries.append(message.receive_count)
        await anyio.sleep(6)

    await app.send("long job")
    with anyio.fail_after(slow(30)):
        stats = await app.run(burst=True, handle_signals=False)
    assert deliveries == [1]
    assert stats.heartbeats_sent >= 4
    depth = await backend.get_queue_depth(url)
    assert (depth.visible, depth.in_flight) == (0, 0)


async def test_retries_then_the_redrive_policy_dead_letters(
    backend: SQSBackend, sqs_settings: QueueSettings, make_queue: MakeQueue
) -> None:
    url = await make_queue(max_receive_count=3)
    app = _app(backend, sqs_settings, url, retry_base_delay=0)
    receive_counts: list[int] = []

    @app.handler()
    async def handle(payload: str, message: Message) -> None:
        receive_counts.append(message.receive_count)
        raise RuntimeError("always fails")

    await app.send("poison-ish")
    with anyio.fail_after(slow(60)):
        stats = await app.run(burst=True, handle_signals=False)
    assert receive_counts == [1, 2, 3]
    assert stats.retried == 2
    assert stats.dead_lettered == 1  # on its last allowed receive, by the consumer
    info = await backend.get_queue_info(url)
    assert info.dead_letter_queue_url is not None
    found: list[QueueMessage] = []
    with anyio.fail_after(slow(10)):  # moto redrives on the receive after the third
        while not found:
            found = await backend.receive(
                info.dead_letter_queue_url, max_messages=10, wait_time_s=1
            )
    assert [m.body for m in found] == ["poison-ish"]
    assert (await backend.get_queue_depth(url)).visible == 0


async def test_undecodable_messages_go_to_the_dlq_with_the_reason(
    backend: SQSBackend, sqs_settings: QueueSettings, make_queue: MakeQueue
) -> None:
    url = await make_queue(max_receive_count=5)
    app = _app(backend, sqs_settings, url)
    calls = 0

    @app.handler()
    async def handle(payload: dict[str, int]) -> None:
        nonlocal calls
        calls += 1

    await app.send("{not json", attributes={"tenant": "acme"})
    await app.send({"n": 1})
    with anyio.fail_after(slow(30)):
        stats = await app.run(burst=True, handle_signals=False)
    assert (calls, stats.dead_lettered, stats.succeeded) == (1, 1, 1)
    info = await backend.get_queue_info(url)
    assert info.dead_letter_queue_url is not None
    (dead,) = await backend.receive(info.dead_letter_queue_url, max_messages=10, wait_time_s=1)
    assert dead.body == "{not json"
    assert dead.message_attributes["tenant"]["StringValue"] == "acme"
    assert dead.message_attributes["aiosqsq-error"]["StringValue"].startswith("JSONDecodeError")
    assert (await backend.get_queue_depth(url)).in_flight == 0


async def test_fifo_order_per_group_under_failure(
    backend: SQSBackend, sqs_settings: QueueSettings, make_queue: MakeQueue
) -> None:
    url = await make_queue(fifo=True, visibility_timeout_s=5)
    app = _app(backend, sqs_settings, url, retry_base_delay=0, concurrency=10)
    order: list[str] = []

    @app.handler()
    async def handle(payload: str, message: Message) -> None:
        order.append(payload)
        if payload == "a2" and message.receive_count == 1:
            raise RuntimeError("a2 fails once")

    for i in range(1, 5):
        for group in ("a", "b"):
            await app.send(f"{group}{i}", group_id=group, deduplication_id=f"{group}{i}")
    with anyio.fail_after(slow(60)):
        await app.run(burst=True, handle_signals=False)
    assert [p for p in order if p.startswith("a")] == ["a1", "a2", "a2", "a3", "a4"]
    assert [p for p in order if p.startswith("b")] == ["b1", "b2", "b3", "b4"]


async def test_graceful_stop_hands_back_at_once_and_leaves_no_success_undeleted(
    backend: SQSBackend, sqs_settings: QueueSettings, make_queue: MakeQueue
) -> None:
    url = await make_queue(visibility_timeout_s=60, fifo=True)
    app = _app(backend, sqs_settings, url, shutdown_timeout=0.5)
    first_done = anyio.Event()
    handled: list[str] = []

    @app.handler()
    async def handle(payload: str) -> None:
        handled.append(payload)
        if payload == "m0":
            return
        first_done.set()
        await anyio.sleep(60)  # still running at the deadline: cancelled, handed back

    for i in range(6):
        await app.send(f"m{i}", group_id="g", deduplication_id=f"m{i}")
    with anyio.fail_after(slow(30)):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: app.run(handle_signals=False))
            await first_done.wait()
            app.stop()
        exited = anyio.current_time()
        # Visible again right away, not after the 60 s visibility timeout.
        messages: list[QueueMessage] = []
        while len(messages) < 5 and anyio.current_time() - exited < slow(2):
            messages += await backend.receive(url, max_messages=10, wait_time_s=1)
    assert handled == ["m0", "m1"]
    assert [m.body for m in messages] == ["m1", "m2", "m3", "m4", "m5"]
    await backend.change_visibility_batch(
        url, [VisibilityEntry(str(i), m.receipt_handle, 0) for i, m in enumerate(messages)]
    )


class _CountingBackend(SQSBackend):
    """The SQS backend, recording every SQS operation it calls, in order."""

    def __init__(self, settings: QueueSettings) -> None:
        super().__init__(settings)
        self.operations: list[str] = []

    async def _call(self, operation: str, queue: str, **params: object) -> Any:
        self.operations.append(operation)
        return await super()._call(operation, queue, **params)


async def test_a_consumer_of_a_queue_url_makes_one_call_before_receiving(
    sqs_settings: QueueSettings, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    url = await make_queue(visibility_timeout_s=45)
    counting = _CountingBackend(sqs_settings)
    app = _app(counting, sqs_settings, url)
    handled: list[str] = []

    @app.handler()
    async def handle(payload: str) -> None:
        handled.append(payload)

    sender = SQSBackend(sqs_settings)
    try:
        await sender.send_batch(url, [SendEntry("0", "a")])
        with anyio.fail_after(slow(30)), caplog.at_level(logging.INFO, "aiosqsq"):
            stats = await app.run(burst=True, handle_signals=False)
        startup = counting.operations[: counting.operations.index("ReceiveMessage")]
    finally:
        await counting.aclose()
        await sender.aclose()
    print(f"sent=1 handled={len(handled)} succeeded={stats.succeeded} startup_calls={startup}")
    assert startup == ["GetQueueAttributes"]  # no separate existence check first
    assert handled == ["a"]
    assert "visibility_timeout=45s" in caplog.text


async def test_a_missing_queue_url_is_named_at_start(
    sqs_settings: QueueSettings, moto_endpoint: str
) -> None:
    missing = f"{moto_endpoint}/123456789012/missing-{uuid.uuid4().hex[:8]}"
    counting = _CountingBackend(sqs_settings)
    app = _app(counting, sqs_settings, missing)

    @app.handler()
    async def handle(payload: str) -> None:
        raise AssertionError("nothing to handle")

    try:
        with anyio.fail_after(slow(30)), pytest.raises(QueueNotFoundError) as raised:
            await app.run(burst=True, handle_signals=False)
    finally:
        await counting.aclose()
    print(f"startup_calls={counting.operations}")
    assert missing in str(raised.value)
    assert counting.operations == ["GetQueueAttributes"]


async def test_unstarted_messages_go_back_at_once_while_a_long_poll_is_let_finish(
    backend: SQSBackend, sqs_settings: QueueSettings, make_queue: MakeQueue
) -> None:
    """The stop hands back what has not started before it waits for the long polls in
    flight (on SQS they are let finish: up to WaitTimeSeconds, 3 s here)."""
    url = await make_queue(visibility_timeout_s=60, fifo=True)
    app = _app(backend, sqs_settings, url, shutdown_timeout=0.5, wait_time_seconds=3)
    started = anyio.Event()

    @app.handler()
    async def handle(payload: str) -> None:
        started.set()
        await anyio.sleep(60)  # m0 runs; m1..m4 wait behind it in their FIFO group

    # The stop must come while the next long poll is in flight: spy on the real backend.
    receives, polling = 0, anyio.Event()
    real_receive = backend.receive

    async def receive(*args: Any, **kwargs: Any) -> list[QueueMessage]:
        nonlocal receives
        receives += 1
        if receives == 2:
            polling.set()
        return await real_receive(*args, **kwargs)

    backend.receive = receive  # type: ignore[method-assign]
    for i in range(5):
        await app.send(f"m{i}", group_id="g", deduplication_id=f"m{i}")
    with anyio.fail_after(slow(30)):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: app.run(handle_signals=False))
            await started.wait()
            await polling.wait()
            stopped = anyio.current_time()
            app.stop()
            depth = await backend.get_queue_depth(url)
            while depth.visible < 4 and anyio.current_time() - stopped < slow(2):
                await anyio.sleep(0.05)
                depth = await backend.get_queue_depth(url)
            handed_back_s = anyio.current_time() - stopped
        exited_s = anyio.current_time() - stopped
    print(f"handed back in {handed_back_s:.2f} s, exited in {exited_s:.2f} s")
    assert (depth.visible, depth.in_flight) == (4, 1)
    assert handed_back_s < min(slow(1.0), exited_s)  # before the long poll in flight ended
    assert exited_s > 1.0  # the long poll was let finish
