"""Running ``tests/faults/apps/strict.py`` under the real ``aiosqsq run`` command on moto:
its queues (FIFO too, each with a dead-letter queue), its ledger, and the worker's start and
graceful stop. Shared by the handler-fate, bad-input and secrets tests."""

from __future__ import annotations

import json
import signal
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from aiosqsq.backends.base import MAX_BATCH_ENTRIES, MAX_MESSAGE_BYTES, SendEntry, message_size
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.cli import ExitCode
from aiosqsq.settings import QueueSettings
from tests.cli.conftest import MotoQueues
from tests.cli.harness import CliProcess

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests.faults.apps.strict:app"
HANDLER = "tests.faults.apps.strict.handle"
POLL_S = 0.1


class StrictQueues(MotoQueues):
    """:class:`MotoQueues` plus FIFO queues with a dead-letter queue, and sends that
    return the new MessageIds."""

    def create_fifo(self, *, max_receive_count: int) -> str:
        name = f"faults-{uuid.uuid4().hex[:10]}"
        fifo = {"FifoQueue": "true"}

        async def create(backend: SQSBackend) -> str:
            dlq_url = await backend.create_queue(f"{name}-dlq.fifo", fifo)
            self._created.append(dlq_url)
            dlq = await backend.get_queue_info(dlq_url)
            redrive = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive_count}
            url = await backend.create_queue(
                f"{name}.fifo", {**fifo, "RedrivePolicy": json.dumps(redrive)}
            )
            self._created.append(url)
            return url

        return self._call(create)

    def dead_letter_url(self, url: str) -> str:
        dlq = self.info(url).dead_letter_queue_url
        assert dlq is not None
        return dlq

    def send_all(self, url: str, entries: list[SendEntry]) -> list[str]:
        """Send ``entries`` in order, in batches within SQS's limits; their MessageIds."""
        batches: list[list[SendEntry]] = [[]]
        for entry in entries:
            batch = batches[-1]
            size = sum(message_size(e.body, e.message_attributes) for e in [*batch, entry])
            if len(batch) == MAX_BATCH_ENTRIES or (batch and size > MAX_MESSAGE_BYTES):
                batches.append([])
            batches[-1].append(replace(entry, id=str(len(batches[-1]))))

        async def send(backend: SQSBackend) -> list[str]:
            ids: list[str] = []
            for batch in batches:
                with warnings.catch_warnings():
                    # aiohttp warns of request bodies over 1 MiB (a batch near SQS's limit)
                    warnings.simplefilter("ignore", ResourceWarning)
                    result = await backend.send_batch(url, batch)
                assert not result.failed, result.failed
                ids.extend(result.message_ids[entry.id] for entry in batch)
            return ids

        return self._call(send)


@pytest.fixture
def queues(sqs_settings: QueueSettings) -> Iterator[StrictQueues]:
    made = StrictQueues(sqs_settings)
    yield made
    made.delete_all()


@dataclass(frozen=True)
class Call:
    """One ledger line of the strict app."""

    event: str  # start, ok, fail, cancelled
    seq: int
    sku: str
    group: str
    mid: str
    receive_count: int
    fifo_group: str | None
    attributes: list[str]
    t: float


def read_ledger(path: Path) -> list[Call]:
    if not path.exists():
        return []
    return [
        Call(**{k: v for k, v in json.loads(line).items() if k != "pid"})
        for line in path.read_text().splitlines()
    ]


def wait_until(condition: Callable[[], bool], what: str, *, timeout_s: float) -> float:
    """Poll ``condition`` (progress only the worker process makes) until it holds; the
    seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(POLL_S)
    return time.monotonic() - started


def worker_env(moto_endpoint: str, url: str, ledger: Path, **extra: str) -> dict[str, str]:
    return {
        "QUEUE_BACKEND": "sqs",
        "QUEUE_SQS_ENDPOINT_URL": moto_endpoint,
        "QUEUE_SQS_QUEUE_URL": url,
        "QUEUE_AWS_REGION": "us-east-1",
        "QUEUE_AWS_ACCESS_KEY_ID": "testing",
        "QUEUE_AWS_SECRET_ACCESS_KEY": "testing",
        "QUEUE_WAIT_TIME_SECONDS": "1",
        "LEDGER_PATH": str(ledger),
        **extra,
    }


def start_worker(env: dict[str, str], *args: str) -> CliProcess:
    """``aiosqsq run`` on the strict app, once it consumes."""
    worker = CliProcess("run", TARGET, "--app-dir", str(ROOT), *args, env=env)
    try:
        worker.wait_for(rf"consuming \S+ with {HANDLER}:")
    except BaseException:
        worker.stop()
        raise
    return worker


def stop_worker(worker: CliProcess) -> float:
    """SIGTERM, then the seconds until exit code 0."""
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait()
    assert code == ExitCode.OK, worker.output
    return time.monotonic() - started


def order(seq: int, **extra: object) -> str:
    return json.dumps({"seq": seq, "sku": f"sku-{seq}", **extra})
