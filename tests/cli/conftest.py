"""Fixtures for the CLI tests: queues on the session's moto server, and the environment that
points a worker process at one of them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

from aiosqsq.backends.base import QueueDepth, QueueInfo, QueueMessage, SendEntry
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.service import QueueService
from aiosqsq.settings import QueueSettings

T = TypeVar("T")

# A sentinel secret: it must never appear in anything a worker prints.
SECRET = "CliSentinelSecretKey/0123456789+abcdefGHIJ"


class MotoQueues:
    """Queues a test creates on moto (each with a dead-letter queue) and removes after it;
    synchronous calls, for tests that drive subprocesses."""

    def __init__(self, settings: QueueSettings) -> None:
        self.settings = settings
        self._created: list[str] = []

    def create(self, *, max_receive_count: int = 5) -> str:
        name = f"cli-{uuid.uuid4().hex[:10]}"

        async def create(backend: SQSBackend) -> str:
            dlq_url = await backend.create_queue(f"{name}-dlq")
            self._created.append(dlq_url)
            dlq = await backend.get_queue_info(dlq_url)
            redrive = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive_count}
            url = await backend.create_queue(name, {"RedrivePolicy": json.dumps(redrive)})
            self._created.append(url)
            return url

        return self._call(create)

    def send(self, url: str, payloads: list[str]) -> None:
        async def send(backend: SQSBackend) -> None:
            async with QueueService(self.settings, backend=backend) as service:
                await service.enqueue_batch(payloads, url)

        self._call(send)

    def depth(self, url: str) -> QueueDepth:
        return self._call(lambda backend: backend.get_queue_depth(url))

    def adopt(self, name: str) -> str:
        """The URL of the queue ``name`` (made by the command under test), removed after
        the test like the ones :meth:`create` makes."""
        url = self._call(lambda backend: backend.get_queue_url(name))
        self._created.append(url)
        return url

    def create_plain(
        self, attributes: dict[str, str] | None = None, *, name: str | None = None
    ) -> str:
        """A queue with ``attributes`` and no dead-letter queue, named ``name`` or anew."""
        name = name or f"cli-{uuid.uuid4().hex[:10]}" + (
            ".fifo" if (attributes or {}).get("FifoQueue") == "true" else ""
        )
        url = self._call(lambda backend: backend.create_queue(name, attributes))
        self._created.append(url)
        return url

    def info(self, url: str) -> QueueInfo:
        return self._call(lambda backend: backend.get_queue_info(url))

    def send_entries(self, url: str, entries: list[SendEntry]) -> None:
        """SendMessageBatch of up to 10 entries, which must all succeed."""

        async def send(backend: SQSBackend) -> None:
            result = await backend.send_batch(url, entries)
            assert not result.failed, result.failed

        self._call(send)

    def receive_all(self, url: str) -> list[QueueMessage]:
        """Every visible message, received (and so hidden for 60 s): for the test's checks
        once the command under test is done."""

        async def receive(backend: SQSBackend) -> list[QueueMessage]:
            found: list[QueueMessage] = []
            while batch := await backend.receive(
                url, max_messages=10, wait_time_s=0, visibility_timeout_s=60
            ):
                found.extend(batch)
            return found

        return self._call(receive)

    def delete_all(self) -> None:
        async def delete(backend: SQSBackend) -> None:
            for url in self._created:
                await backend.delete_queue(url)

        self._call(delete)

    def _call(self, operation: Callable[[SQSBackend], Awaitable[T]]) -> T:
        async def call() -> T:
            async with SQSBackend(self.settings) as backend:
                return await operation(backend)

        return anyio.run(call)


@pytest.fixture
def moto_queues(sqs_settings: QueueSettings) -> Iterator[MotoQueues]:
    queues = MotoQueues(sqs_settings)
    yield queues
    queues.delete_all()


@pytest.fixture
def sqs_env(moto_endpoint: str) -> dict[str, str]:
    """QUEUE_* variables for a worker on moto; add QUEUE_SQS_QUEUE_URL."""
    return {
        "QUEUE_BACKEND": "sqs",
        "QUEUE_SQS_ENDPOINT_URL": moto_endpoint,
        "QUEUE_AWS_REGION": "us-east-1",
        "QUEUE_AWS_ACCESS_KEY_ID": "testing",
        "QUEUE_AWS_SECRET_ACCESS_KEY": SECRET,
        "QUEUE_WAIT_TIME_SECONDS": "1",
    }


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """Where tests/cli/apps/ledger.py records what it handled (LEDGER_PATH)."""
    return tmp_path / "ledger.jsonl"
