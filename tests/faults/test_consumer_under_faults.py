"""The consumer through a fault-injecting proxy in front of moto: nothing lost, nothing
handled twice, the consumer never exits, and requests stay batched."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from aiosqsq import App, QueueSettings
from aiosqsq.backends.sqs import SQSBackend
from tests.faults.proxy import FaultProxy
from tests.helpers import slow


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(moto_endpoint) as proxy:
        yield proxy


@pytest.fixture
async def queue_url(sqs_settings: QueueSettings) -> AsyncIterator[str]:
    backend = SQSBackend(sqs_settings)  # straight to moto, not through the proxy
    url = await backend.create_queue(f"faults-{uuid.uuid4().hex[:8]}", {"VisibilityTimeout": "60"})
    yield url
    await backend.delete_queue(url)
    await backend.aclose()


async def _drain(proxy: FaultProxy, queue_url: str, total: int) -> tuple[dict[str, int], App]:
    settings = QueueSettings(
        backend="sqs",
        sqs_queue_url=queue_url,
        sqs_endpoint_url=proxy.endpoint_url,
        aws_region="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        wait_time_seconds=1,
        concurrency=20,
    )
    app = App(settings)
    seen: dict[str, int] = {}

    @app.handler()
    async def handle(payload: str) -> None:
        seen[payload] = seen.get(payload, 0) + 1

    await app.send_batch([str(i) for i in range(total)])
    with anyio.fail_after(slow(60)):
        await app.run(burst=True, handle_signals=False)
    return seen, app


async def test_throttling_5xx_and_partial_failures_lose_and_repeat_nothing(
    proxy: FaultProxy, queue_url: str, sqs_settings: QueueSettings
) -> None:
    # More faults in a row than botocore's own 3 attempts absorb, so the engine's
    # retries run too.
    proxy.arm("ReceiveMessage", "throttle", 4)
    proxy.arm("DeleteMessageBatch", "fail_first_entry", 5)
    total = 300
    seen, app = await _drain(proxy, queue_url, total)

    assert sorted(seen, key=int) == [str(i) for i in range(total)]  # no loss
    assert [body for body, count in seen.items() if count > 1] == []  # no duplicate
    assert proxy.faults_fired["ReceiveMessage:throttle"] == 4
    assert proxy.faults_fired["DeleteMessageBatch:fail_first_entry"] == 5
    assert app.statistics().succeeded == total
    backend = SQSBackend(sqs_settings)
    depth = await backend.get_queue_depth(queue_url)
    await backend.aclose()
    assert (depth.visible, depth.in_flight) == (0, 0)  # the failed entries were retried


async def test_lost_delete_responses_and_5xx_bursts_are_retried_safely(
    proxy: FaultProxy, queue_url: str, sqs_settings: QueueSettings
) -> None:
    proxy.arm("DeleteMessageBatch", "lose_response", 4)  # applied, but the answer is a 500
    total = 100
    seen, _ = await _drain(proxy, queue_url, total)
    assert len(seen) == total
    assert max(seen.values()) == 1
    assert proxy.faults_fired["DeleteMessageBatch:lose_response"] == 4
    backend = SQSBackend(sqs_settings)
    depth = await backend.get_queue_depth(queue_url)
    await backend.aclose()
    assert (depth.visible, depth.in_flight) == (0, 0)


async def test_requests_stay_batched_at_saturation(proxy: FaultProxy, queue_url: str) -> None:
    total = 1000
    seen, _ = await _drain(proxy, queue_url, total)
    assert len(seen) == total
    receives = proxy.requests["ReceiveMessage"]
    deletes = proxy.requests["DeleteMessageBatch"]
    # 1 receive + 1 delete per 10 messages is 0.20; the empty polls that end a burst and
    # partial batches at the edges add a little.
    print(f"requests per message: receive {receives / total:.3f}, delete {deletes / total:.3f}")
    assert deletes / total <= 0.11
    assert (receives + deletes) / total <= 0.22
