"""The producer coalesces concurrent sends and gives each caller its own outcome."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from aiosqsq.backends.base import BatchResult, SendEntry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.errors import AccessError, BackendError
from aiosqsq.producer import Producer
from tests.helpers import make_queue


class CountingBackend(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        self.batches.append(len(entries))
        await anyio.sleep(0.01)  # a request takes time on the wire
        return await super().send_batch(queue_url, entries)


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend()


async def test_a_lone_send_goes_out_at_once(backend: CountingBackend) -> None:
    url = await make_queue(backend)
    producer = Producer(backend, linger_s=5)  # a linger would show as a 5 s send
    with anyio.fail_after(1):
        message_id = await producer.send(url, SendEntry("x", "hello"))
    (message,) = await backend.receive(url, max_messages=1, wait_time_s=0)
    assert (message.message_id, message.body) == (message_id, "hello")


async def test_concurrent_sends_are_coalesced_into_batches_of_ten(
    backend: CountingBackend,
) -> None:
    url = await make_queue(backend)
    producer = Producer(backend)
    ids: dict[int, str] = {}

    async def send(i: int) -> None:
        ids[i] = await producer.send(url, SendEntry("x", f"m{i}"))

    async with anyio.create_task_group() as tg:
        for i in range(95):
            tg.start_soon(send, i)
    assert sum(backend.batches) == 95
    assert len(backend.batches) <= 12  # 10 full batches and a remainder, not 95 requests
    assert max(backend.batches) == 10
    received: dict[str, str] = {}
    while batch := await backend.receive(url, max_messages=10, wait_time_s=0):
        received.update((m.message_id, m.body) for m in batch)
    assert received == {ids[i]: f"m{i}" for i in range(95)}


async def test_a_refused_entry_fails_only_its_caller(backend: CountingBackend) -> None:
    url = await make_queue(backend, "orders", fifo=True)
    producer = Producer(backend)
    outcomes: dict[str, object] = {}

    async def send(name: str, entry: SendEntry) -> None:
        try:
            outcomes[name] = await producer.send(url, entry)
        except BackendError as exc:
            outcomes[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(send, "good", SendEntry("x", "a", group_id="g", deduplication_id="1"))
        tg.start_soon(send, "bad", SendEntry("x", "b"))  # FIFO without a group id
    assert isinstance(outcomes["good"], str)
    assert isinstance(outcomes["bad"], BackendError)
    assert outcomes["bad"].code == "MissingParameter"


async def test_batches_respect_the_one_mebibyte_request_limit(backend: CountingBackend) -> None:
    url = await make_queue(backend)
    producer = Producer(backend)
    body = "x" * 300_000  # three fit in 1 MiB, four do not

    async with anyio.create_task_group() as tg:
        for _ in range(7):
            tg.start_soon(producer.send, url, SendEntry("x", body))
    assert sum(backend.batches) == 7
    assert max(backend.batches) <= 3


class DeniedBackend(MemoryBackend):
    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        await anyio.sleep(0.01)  # the callers' sends share this request
        raise AccessError("AccessDenied", "not authorized to perform sqs:SendMessage")


async def test_a_failed_request_gives_each_caller_its_own_error_of_its_class() -> None:
    backend = DeniedBackend()
    url = await make_queue(backend)
    producer = Producer(backend)
    errors: list[BaseException] = []

    async def send(number: int) -> None:
        try:
            await producer.send(url, SendEntry("x", f"m{number}"))
        except BackendError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tasks:
        for number in range(3):
            tasks.start_soon(send, number)
    assert [type(error) for error in errors] == [AccessError] * 3
    assert len({id(error) for error in errors}) == 3  # one exception per caller
    assert {str(error) for error in errors} == {
        "AccessDenied: not authorized to perform sqs:SendMessage"
    }
