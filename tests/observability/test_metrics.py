"""The aiosqsq_* metrics on the memory backend: names, labels and counts against what the
handlers did."""

from __future__ import annotations

from typing import Any

import anyio
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from aiosqsq import Message, Retry
from aiosqsq.backends.base import DeleteEntry, QueueMessage
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.observability import instrument
from aiosqsq.observability.metrics import OUTCOMES
from aiosqsq.testing import AppTester
from tests.helpers import make_app, make_queue, slow


class Job(BaseModel):
    kind: str


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_counts_by_outcome_match_what_the_handler_did() -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs", max_receive_count=2)
    app = make_app(backend, retry_base_delay=0, queue_stats_interval=0)
    registry = CollectorRegistry()
    instrument(app, registry=registry)

    @app.handler()
    async def work(job: Job, message: Message) -> None:
        if job.kind == "retry" and message.receive_count == 1:
            raise Retry(delay_s=0)
        if job.kind == "fail":
            raise ValueError("boom")
        if job.kind == "release" and message.receive_count == 1:
            await message.release(0)

    tester = AppTester(app, backend=backend)
    for kind in ["ok"] * 5 + ["retry"] * 2 + ["fail"] + ["release"]:
        await tester.send({"kind": kind})
    await tester.send("not json")
    await tester.drain()

    def processed(outcome: str) -> float:
        return value(
            registry,
            "aiosqsq_messages_processed_total",
            queue="jobs",
            handler=f"{__name__}.{work.__qualname__}",
            outcome=outcome,
        )

    # 5 ok + 2 retried then ok + released then ok; "fail" fails once (error), then, on
    # its last receive, is moved to the DLQ; the undecodable one is moved at once
    assert processed("succeeded") == 8
    assert processed("retried") == 2
    assert processed("error") == 1
    assert processed("released") == 1
    assert processed("dead_lettered") == 2
    assert processed("shutdown") == 0
    assert value(registry, "aiosqsq_messages_received_total", queue="jobs") == 14
    assert value(registry, "aiosqsq_messages_in_flight", queue="jobs") == 0
    handled = value(
        registry,
        "aiosqsq_handler_duration_seconds_count",
        queue="jobs",
        handler=f"{__name__}.{work.__qualname__}",
    )
    assert handled == 14
    assert value(registry, "aiosqsq_message_lag_seconds_count", queue="jobs") == 14
    receives = value(
        registry, "aiosqsq_sqs_requests_total", operation="ReceiveMessage", result="success"
    )
    assert receives >= 1
    assert value(registry, "aiosqsq_sqs_request_duration_seconds_count",
                 operation="DeleteMessageBatch") >= 1  # fmt: skip
    assert set(OUTCOMES) >= {"succeeded", "retried", "error", "released", "dead_lettered"}


async def test_queue_statistics_are_read_for_the_queue_and_its_dead_letter_queue() -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend, queue_stats_interval=0.05)
    registry = CollectorRegistry()
    instrument(app, registry=registry)
    gate = anyio.Event()

    @app.handler()
    async def work(payload: str) -> None:
        await gate.wait()

    for n in range(3):
        await app.send(str(n))
    async with app:
        with anyio.fail_after(slow(10)):
            while value(registry, "aiosqsq_queue_messages", queue="jobs",
                        state="in_flight") != 3:  # fmt: skip
                await anyio.sleep(0.02)
        assert value(registry, "aiosqsq_queue_messages", queue="jobs", state="visible") == 0
        with anyio.fail_after(slow(10)):  # added to the metrics once a second
            while value(registry, "aiosqsq_messages_in_flight", queue="jobs") != 3:
                await anyio.sleep(0.02)
        assert (
            registry.get_sample_value("aiosqsq_queue_messages", {"queue": "jobs-dlq",
                                                                 "state": "visible"}) == 0
        )  # fmt: skip
        gate.set()


async def test_metrics_off_installs_no_metrics() -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend, metrics="off")
    registry = CollectorRegistry()
    instrument(app, registry=registry)

    @app.handler()
    async def work(payload: str) -> None:
        pass

    tester = AppTester(app, backend=backend)
    await tester.send("x")
    await tester.drain()
    assert registry.get_sample_value("aiosqsq_messages_received_total", {"queue": "jobs"}) is None


async def test_a_lost_lease_is_counted_and_leaves_nothing_in_flight() -> None:
    backend = MemoryBackend()
    url = await make_queue(backend, "jobs", visibility_timeout_s=1)
    app = make_app(backend, queue_stats_interval=0)
    registry = CollectorRegistry()
    instrument(app, registry=registry)
    handles: dict[str, str] = {}
    receive = backend.receive

    async def remember_handles(queue_url: str, **options: Any) -> list[QueueMessage]:
        messages = await receive(queue_url, **options)
        handles.update((m.message_id, m.receipt_handle) for m in messages)
        return messages

    backend.receive = remember_handles  # type: ignore[method-assign]

    @app.handler()
    async def work(payload: str, message: Message) -> None:
        # deleted behind the consumer's back: the heartbeat's next extension is refused
        await backend.delete_batch(url, [DeleteEntry("0", handles[message.message_id])])
        await anyio.sleep_forever()

    await app.send("x")
    await AppTester(app, backend=backend).drain()
    name = f"{__name__}.{work.__qualname__}"
    assert value(registry, "aiosqsq_messages_processed_total", queue="jobs", handler=name,
                 outcome="lease_lost") == 1  # fmt: skip
    assert value(registry, "aiosqsq_messages_in_flight", queue="jobs") == 0


async def test_heartbeat_extensions_are_counted_per_queue() -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs", visibility_timeout_s=2)
    app = make_app(backend, queue_stats_interval=0)
    registry = CollectorRegistry()
    instrument(app, registry=registry)

    def extensions() -> int:
        return sum(stats.heartbeats_sent for stats in app.consumer_statistics().values())

    @app.handler()
    async def long_job(payload: str) -> None:
        with anyio.fail_after(slow(10)):  # held past half its visibility: extended
            while extensions() < 2:
                await anyio.sleep(0.05)

    await app.send("x")
    await AppTester(app, backend=backend).drain()
    counted = value(registry, "aiosqsq_visibility_extensions_total", queue="jobs")
    assert counted == extensions() >= 2
