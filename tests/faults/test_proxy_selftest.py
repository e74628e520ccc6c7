"""T0: the fault proxies themselves. Each forged error reaches aiosqsq's SQSBackend (botocore
on 127.0.0.1) as the intended error code and class; pass-through changes nothing; entry
failures are really not applied; a lost response was applied; the TCP proxy's latency,
blackhole and resets do what they say."""

from __future__ import annotations

import time
import uuid

import anyio
import pytest

from aiosqsq.backends.base import DeleteEntry, QueueMessage, SendEntry
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.errors import AccessError, BackendError
from aiosqsq.settings import QueueSettings
from tests.faults.proxy import ERRORS, Delay, FailEntries, FaultProxy, LoseResponse
from tests.faults.tcp_proxy import TcpProxy
from tests.helpers import slow

# code -> (retryable as aiosqsq classifies it, attempts botocore makes: 3 when it retries)
EXPECTED = {
    "ThrottlingException": (True, 3),
    "RequestThrottled": (True, 3),
    "KmsThrottled": (True, 1),
    "OverLimit": (True, 1),
    "ExpiredToken": (False, 1),
    "AccessDenied": (False, 1),
    "InternalError": (True, 3),
    "ServiceUnavailable": (True, 3),
    "InvalidParameterValue": (False, 1),
    "ReceiptHandleIsInvalid": (False, 1),
}


def _through(settings: QueueSettings, endpoint_url: str) -> QueueSettings:
    """``settings`` (moto's) with the proxy at ``endpoint_url`` in front of moto."""
    return settings.model_copy(update={"sqs_endpoint_url": endpoint_url})


async def _queue(backend: SQSBackend, count: int) -> str:
    url = await backend.create_queue(f"selftest-{uuid.uuid4().hex[:10]}")
    entries = [SendEntry(str(i), f"body-{i}") for i in range(count)]
    if entries:
        assert not (await backend.send_batch(url, entries)).failed
    return url


async def _receive(backend: SQSBackend, url: str, count: int) -> list[QueueMessage]:
    got: list[QueueMessage] = []
    with anyio.fail_after(slow(10)):
        while len(got) < count:
            got += await backend.receive(url, max_messages=10, wait_time_s=0)
    return got


async def test_every_forged_error_parses_to_its_code_and_class(
    fault_proxy: FaultProxy, sqs_settings: QueueSettings
) -> None:
    async with SQSBackend(_through(sqs_settings, fault_proxy.endpoint_url)) as backend:
        for code in EXPECTED:
            fault_proxy.add("ReceiveMessage", ERRORS[code], queue=f"/q-{code}")
        caught: dict[str, BackendError] = {}

        async def receive(code: str) -> None:
            url = f"{fault_proxy.endpoint_url}/123456789012/q-{code}"
            with pytest.raises(BackendError) as info:
                await backend.receive(url, max_messages=1, wait_time_s=0)
            caught[code] = info.value

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for code in EXPECTED:
                tg.start_soon(receive, code)
    attempts = {
        code: len([e for e in fault_proxy.exchanges("ReceiveMessage") if f"/q-{code}" in e.queue])
        for code in EXPECTED
    }
    figures = {
        code: (caught[code].code, caught[code].retryable, attempts[code]) for code in EXPECTED
    }
    print(
        f"forged errors -> (code, retryable, attempts): {figures}; "
        f"{time.monotonic() - started:.1f} s"
    )
    assert figures == {code: (code, *EXPECTED[code]) for code in EXPECTED}
    assert "expired" in caught["ExpiredToken"].message
    assert "AQEB" not in caught["ExpiredToken"].message  # auth failures never quote the server
    assert isinstance(caught["AccessDenied"], AccessError)
    assert "sqs:ReceiveMessage" in caught["AccessDenied"].message


async def test_pass_through_changes_nothing(
    fault_proxy: FaultProxy, sqs_settings: QueueSettings
) -> None:
    async with (
        SQSBackend(sqs_settings) as direct,
        SQSBackend(_through(sqs_settings, fault_proxy.endpoint_url)) as proxied,
    ):
        url = await _queue(proxied, 5)
        info_direct, info_proxied = (
            await direct.get_queue_info(url),
            await proxied.get_queue_info(url),
        )
        got = await _receive(proxied, url, 5)
        result = await proxied.delete_batch(
            url, [DeleteEntry(str(i), m.receipt_handle) for i, m in enumerate(got)]
        )
        depth = await direct.get_queue_depth(url)
        await direct.delete_queue(url)
    assert info_direct == info_proxied
    assert sorted(m.body for m in got) == [f"body-{i}" for i in range(5)]
    assert (sorted(result.successful), result.failed) == (["0", "1", "2", "3", "4"], ())
    assert (depth.visible, depth.in_flight) == (0, 0)
    receives = fault_proxy.exchanges("ReceiveMessage")
    assert sorted(m for e in receives for m, _ in e.received) == sorted(m.message_id for m in got)
    assert all(e.fault is None and e.status == 200 for e in fault_proxy.exchanges())
    deletes = fault_proxy.exchanges("DeleteMessageBatch")
    assert [sorted(e.succeeded) for e in deletes] == [["0", "1", "2", "3", "4"]]


async def test_failed_entries_are_not_applied(
    fault_proxy: FaultProxy, sqs_settings: QueueSettings
) -> None:
    fault_proxy.add(
        "DeleteMessageBatch",
        FailEntries(2, "ReceiptHandleIsInvalid", "stale", sender_fault=True),
        times=1,
    )
    async with (
        SQSBackend(sqs_settings) as direct,
        SQSBackend(_through(sqs_settings, fault_proxy.endpoint_url)) as proxied,
    ):
        url = await _queue(direct, 4)
        got = await _receive(direct, url, 4)
        result = await proxied.delete_batch(
            url, [DeleteEntry(str(i), m.receipt_handle) for i, m in enumerate(got)]
        )
        depth = await direct.get_queue_depth(url)
        await direct.delete_queue(url)
    assert sorted(result.successful) == ["2", "3"]
    assert [(f.id, f.code, f.sender_fault) for f in result.failed] == [
        ("0", "ReceiptHandleIsInvalid", True),
        ("1", "ReceiptHandleIsInvalid", True),
    ]
    assert (depth.visible, depth.in_flight) == (0, 2)  # the two failed ones were not deleted
    assert fault_proxy.faults_fired["DeleteMessageBatch:fail_entries:ReceiptHandleIsInvalid"] == 1


async def test_a_lost_response_was_applied(
    fault_proxy: FaultProxy, sqs_settings: QueueSettings
) -> None:
    fault_proxy.add("DeleteMessageBatch", LoseResponse("reset"), times=1)
    fault_proxy.add("ReceiveMessage", LoseResponse("reset"))  # every attempt
    async with (
        SQSBackend(sqs_settings) as direct,
        SQSBackend(_through(sqs_settings, fault_proxy.endpoint_url)) as proxied,
    ):
        url = await _queue(direct, 3)
        got = await _receive(direct, url, 3)
        result = await proxied.delete_batch(  # botocore retries after the reset
            url, [DeleteEntry(str(i), m.receipt_handle) for i, m in enumerate(got)]
        )
        assert (await direct.get_queue_depth(url)).in_flight == 0
        await direct.send_batch(url, [SendEntry("0", "phantom")])
        with pytest.raises(BackendError) as info:
            await proxied.receive(url, max_messages=10, wait_time_s=0)
        depth = await direct.get_queue_depth(url)
        await direct.delete_queue(url)
    assert sorted(result.successful) == ["0", "1", "2"]
    assert info.value.retryable
    assert (depth.visible, depth.in_flight) == (0, 1)  # received upstream, never seen
    deletes = fault_proxy.exchanges("DeleteMessageBatch")
    assert [(e.status, e.applied) for e in deletes] == [("reset", True), (200, True)]
    phantom = [m for e in fault_proxy.exchanges("ReceiveMessage") for m in e.received]
    assert len(phantom) == 1
    print(
        f"lost responses: delete attempts {len(deletes)}, receive attempts "
        f"{len(fault_proxy.exchanges('ReceiveMessage'))}, phantom in flight {depth.in_flight}"
    )


async def test_delay_holds_the_request(
    fault_proxy: FaultProxy, sqs_settings: QueueSettings
) -> None:
    fault_proxy.add("GetQueueUrl", Delay(0.5), times=1)
    async with SQSBackend(_through(sqs_settings, fault_proxy.endpoint_url)) as backend:
        url = await _queue(backend, 0)
        started = time.monotonic()
        name = url.rsplit("/", 1)[-1]
        assert await backend.get_queue_url(name) == url
        elapsed = time.monotonic() - started
        await backend.delete_queue(url)
    print(f"delayed call took {elapsed:.2f} s")
    assert 0.5 <= elapsed < slow(5)


async def test_tcp_latency_blackhole_and_reset(
    tcp_proxy: TcpProxy, sqs_settings: QueueSettings
) -> None:
    async with SQSBackend(_through(sqs_settings, tcp_proxy.endpoint_url)) as backend:
        url = await _queue(backend, 2)
        assert tcp_proxy.connections >= 1

        tcp_proxy.latency_s = 0.2  # each way: a call takes at least 0.4 s
        started = time.monotonic()
        await backend.get_queue_depth(url)
        latency_call = time.monotonic() - started
        tcp_proxy.latency_s = 0.0

        tcp_proxy.blackhole(1.5)
        started = time.monotonic()
        depth = await backend.get_queue_depth(url)  # held, then answered
        blackhole_call = time.monotonic() - started

        tcp_proxy.reset_all()
        await anyio.sleep(0.1)
        resets = tcp_proxy.resets
        got = await _receive(backend, url, 2)  # a fresh connection (or botocore's retry)
        await backend.delete_queue(url)
    print(
        f"tcp: latency call {latency_call:.2f} s, blackhole call {blackhole_call:.2f} s, "
        f"sockets reset {resets}, connections {tcp_proxy.connections}"
    )
    assert 0.4 <= latency_call < slow(5)
    assert 1.4 <= blackhole_call < slow(10)
    assert depth.visible == 2
    assert resets >= 2  # both ends of the pooled connection
    assert len(got) == 2
