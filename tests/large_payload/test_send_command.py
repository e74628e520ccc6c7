"""``aiosqsq send`` with large payloads on, against moto's SQS and S3: bodies over the
threshold go to S3 as the app's producer sends them, a line may be up to
QUEUE_LARGE_PAYLOAD_MAX_BYTES, and nothing is left in the bucket for a message not sent."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from aiosqsq.backends.base import BatchResult, QueueMessage, SendEntry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.backends.object_store import MemoryObjectStore, create_object_store
from aiosqsq.cli import ExitCode, batch_sender
from aiosqsq.cli.batch_sender import PARALLEL_PUTS, send_all
from aiosqsq.errors import AccessError, BackendError
from aiosqsq.large_payload import LargePayloads, parse_pointer
from aiosqsq.settings import QueueSettings
from tests.cli.conftest import MotoQueues
from tests.cli.harness import run_cli
from tests.large_payload.conftest import MotoBucket
from tests.large_payload.test_consume_e2e import APPS, digest, ledger_lines

MIB = 1024 * 1024
USAGE = "Usage: aiosqsq send [OPTIONS] NAME [BODY]\nTry 'aiosqsq send --help' for help.\n\n"


def _name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _env(sqs_env: dict[str, str], bucket: MotoBucket, **extra: str) -> dict[str, str]:
    """The operator's environment with large payloads on; S3 at the loopback SQS endpoint."""
    return {**sqs_env, "QUEUE_LARGE_PAYLOAD_BUCKET": bucket.name, **extra}


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _fetched(settings: QueueSettings, messages: list[QueueMessage]) -> list[str]:
    """The bodies of ``messages``, pointers read back from S3 by the consumer's code."""

    async def fetch() -> list[str]:
        store = create_object_store(
            "sqs",
            settings.sqs_config(),
            region="us-east-1",
            endpoint_url=settings.s3_endpoint_url,
        )
        assert settings.large_payload_bucket is not None
        payloads = LargePayloads(store, bucket=settings.large_payload_bucket)
        try:
            bodies = []
            for message in messages:
                if "ExtendedPayloadSize" in message.message_attributes:
                    fetched = await payloads.fetch(message)
                    assert fetched is not None
                    message = fetched
                bodies.append(message.body)
            return bodies
        finally:
            await payloads.aclose()

    return anyio.run(fetch)


def test_a_file_mixing_sizes_sends_pointers_and_inline_bodies(
    large_settings: QueueSettings,
    sqs_env: dict[str, str],
    moto_queues: MotoQueues,
    bucket: MotoBucket,
    tmp_path: Path,
) -> None:
    url = moto_queues.create()
    big = json.dumps({"id": 1, "blob": "é" * MIB}, ensure_ascii=False)  # 2 MiB of UTF-8
    lines = ['{"id": 0}', big, '{"id": 2}']
    path = _write(tmp_path / "orders.jsonl", lines)
    env = _env(sqs_env, bucket, QUEUE_LARGE_PAYLOAD_PREFIX="p/")
    result = run_cli("send", _name(url), "--file", path, env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert (result.stdout, result.stderr) == (
        f"sent 3 messages to {_name(url)} (1 through S3)\n",
        "",
    )
    messages = moto_queues.receive_all(url)
    [pointer] = [m for m in messages if "ExtendedPayloadSize" in m.message_attributes]
    [key] = bucket.keys()
    assert parse_pointer(pointer.body) == parse_pointer(
        json.dumps(
            [
                "software.amazon.payloadoffloading.PayloadS3Pointer",
                {"s3BucketName": bucket.name, "s3Key": key},
            ]
        )
    )
    assert key.startswith("p/")
    assert bucket.read(key) == big.encode()
    assert pointer.message_attributes["ExtendedPayloadSize"] == {
        "DataType": "Number",
        "StringValue": str(len(big.encode())),
    }
    inline = sorted(m.body for m in messages if m is not pointer)
    assert inline == ['{"id": 0}', '{"id": 2}']
    assert sorted(_fetched(large_settings, messages)) == sorted(lines)


def test_a_body_over_the_threshold_is_offloaded_and_consumed(
    sqs_env: dict[str, str],
    moto_queues: MotoQueues,
    bucket: MotoBucket,
    ledger: Path,
) -> None:
    # Linux caps one argument at 128 KiB, so a BODY over 1 MiB cannot be given: a lower
    # threshold stands in for SQS's limit.
    url = moto_queues.create()
    payload = {"id": 7, "blob": "b" * 100_000}
    env = _env(sqs_env, bucket, QUEUE_LARGE_PAYLOAD_THRESHOLD="65536")
    body = json.dumps(payload, separators=(",", ":"))
    result = run_cli("send", _name(url), body, env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout == f"sent 1 message to {_name(url)} (1 through S3)\n"
    [key] = bucket.keys()
    assert bucket.read(key) == body.encode()
    worker = {**env, "QUEUE_SQS_QUEUE_URL": url, "LEDGER_PATH": str(ledger)}
    ran = run_cli("run", "payload_ledger:app", "--burst", "--app-dir", APPS, env=worker)
    assert ran.returncode == ExitCode.OK, ran.stderr
    [line] = ledger_lines(ledger)
    assert (line["id"], line["sha256"], line["pointer_seen"]) == (7, digest(payload), False)


def test_always_offloads_a_small_line(
    sqs_env: dict[str, str], moto_queues: MotoQueues, bucket: MotoBucket, tmp_path: Path
) -> None:
    url = moto_queues.create()
    path = _write(tmp_path / "orders.jsonl", ['{"id": 1}'])
    env = _env(sqs_env, bucket, QUEUE_LARGE_PAYLOAD_ALWAYS="true")
    result = run_cli("send", _name(url), "--file", path, env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout == f"sent 1 message to {_name(url)} (1 through S3)\n"
    [key] = bucket.keys()
    assert bucket.read(key) == b'{"id": 1}'
    [message] = moto_queues.receive_all(url)
    assert parse_pointer(message.body).key == key


def test_lines_over_the_large_payload_limit_send_nothing(
    sqs_env: dict[str, str], moto_queues: MotoQueues, bucket: MotoBucket, tmp_path: Path
) -> None:
    url = moto_queues.create()
    lines = [
        '{"id": 1}',
        json.dumps("x" * (2 * MIB)),  # 2 bytes over: loaded, then refused
        json.dumps("y" * (3 * MIB)),  # far over: measured, never loaded
    ]
    path = _write(tmp_path / "orders.jsonl", lines)
    env = _env(sqs_env, bucket, QUEUE_LARGE_PAYLOAD_MAX_BYTES=str(2 * MIB))
    result = run_cli("send", _name(url), "--file", path, env=env)
    assert result.returncode == ExitCode.USAGE
    assert result.stdout == ""
    assert result.stderr.splitlines()[3:] == [
        f"Error: Invalid value for '--file': 2 lines of {path} cannot be sent: nothing was sent",
        f"  line 2 cannot be sent: it is {2 * MIB + 2} bytes, over QUEUE_LARGE_PAYLOAD_MAX_BYTES "
        f"({2 * MIB})",
        f"  line 3 cannot be sent: it is {3 * MIB + 2} bytes, over QUEUE_LARGE_PAYLOAD_MAX_BYTES "
        f"({2 * MIB})",
    ]
    assert moto_queues.depth(url).visible == 0
    assert bucket.keys() == []


def test_no_offload_keeps_sqs_limit(
    sqs_env: dict[str, str], moto_queues: MotoQueues, bucket: MotoBucket, tmp_path: Path
) -> None:
    url = moto_queues.create()
    path = _write(tmp_path / "orders.jsonl", ['"small"', json.dumps("x" * (2 * MIB))])
    result = run_cli("send", _name(url), "--file", path, "--no-offload", env=_env(sqs_env, bucket))
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for '--file': {path} line 2 cannot be sent: it is "
        f"{2 * MIB + 2} bytes, over SQS's limit of {MIB}: nothing was sent"
    )
    assert moto_queues.depth(url).visible == 0
    assert bucket.keys() == []


def test_offload_without_a_bucket_is_a_usage_error(
    sqs_env: dict[str, str], moto_queues: MotoQueues
) -> None:
    url = moto_queues.create()
    result = run_cli("send", _name(url), '{"id": 1}', "--offload", env=sqs_env)
    assert result.returncode == ExitCode.USAGE
    assert (result.stdout, result.stderr) == (
        "",
        f"{USAGE}Error: --offload needs large payloads on: set QUEUE_LARGE_PAYLOAD_BUCKET to "
        "the S3 bucket that holds them; nothing was sent\n",
    )
    assert moto_queues.depth(url).visible == 0


def test_a_missing_bucket_stops_the_sending_in_one_line(
    sqs_env: dict[str, str], moto_queues: MotoQueues, tmp_path: Path
) -> None:
    url = moto_queues.create()
    lines = ['{"id": 0}', json.dumps("x" * (2 * MIB)), '{"id": 2}']
    path = _write(tmp_path / "orders.jsonl", lines)
    env = {**sqs_env, "QUEUE_LARGE_PAYLOAD_BUCKET": "no-such-bucket-aiosqsq"}
    result = run_cli("send", _name(url), "--file", path, env=env)
    assert result.returncode == ExitCode.QUEUE_ACCESS_LOST
    assert result.stdout == f"sent 0 of 3 messages to {_name(url)}\n"
    assert result.stderr.splitlines() == [
        "not sent: 3 messages",
        "Error: NoSuchBucket: s3:PutObject to bucket 'no-such-bucket-aiosqsq' failed: the "
        "bucket does not exist: create it or check QUEUE_LARGE_PAYLOAD_BUCKET",
    ]
    assert moto_queues.depth(url).visible == 0


def test_a_pointer_sqs_refuses_has_its_object_deleted(
    sqs_env: dict[str, str], moto_queues: MotoQueues, bucket: MotoBucket, tmp_path: Path
) -> None:
    # A key prefix of 950 characters makes the pointer longer than the queue's 1 KiB limit.
    url = moto_queues.create_plain({"MaximumMessageSize": "1024"})
    path = _write(tmp_path / "orders.jsonl", ['{"id": 1}', json.dumps("z" * 300)])
    env = _env(
        sqs_env, bucket, QUEUE_LARGE_PAYLOAD_THRESHOLD="200", QUEUE_LARGE_PAYLOAD_PREFIX="k" * 950
    )
    result = run_cli("send", _name(url), "--file", path, env=env)
    assert result.returncode == 1
    assert result.stdout == f"sent 1 of 2 messages to {_name(url)}\n"
    refused, error = result.stderr.splitlines()
    assert refused.startswith("refused: line 2: InvalidParameterValue: ")
    assert error == "Error: 1 message not sent: line 2"
    assert [m.body for m in moto_queues.receive_all(url)] == ['{"id": 1}']
    assert bucket.keys() == []  # the refused line's object was deleted


class _CountingStore(MemoryObjectStore):
    """Counts the bodies read from the file and not yet stored: those held at once."""

    def __init__(self) -> None:
        super().__init__()
        self.read = self.stored = self.most_held = 0

    async def put(self, bucket: str, key: str, data: bytes, *, kms_key_id: str | None) -> None:
        self.most_held = max(self.most_held, self.read - self.stored)
        await anyio.lowlevel.checkpoint()  # let the other PUTs of the run start
        await super().put(bucket, key, data, kms_key_id=kms_key_id)
        self.stored += 1


def test_only_a_few_large_bodies_are_held_at_once() -> None:
    store = _CountingStore()
    payloads = LargePayloads(store, bucket="b", always=True)
    results: list[BatchResult] = []

    def entries() -> Iterator[SendEntry]:
        for i in range(25):
            store.read += 1
            yield SendEntry(str(i), json.dumps({"id": i}))

    async def go() -> None:
        backend = MemoryBackend()
        try:
            url = await backend.create_queue("orders")
            await send_all(
                backend, url, entries(), lambda _, r: results.append(r), payloads=payloads
            )
        finally:
            await backend.aclose()

    anyio.run(go)
    assert store.most_held == PARALLEL_PUTS
    assert sum(len(result.successful) for result in results) == 25
    assert len(store.objects) == 25


def test_large_bodies_are_put_within_a_budget_of_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_sender, "PUT_BUDGET_CHARS", 2500)
    store = _CountingStore()
    payloads = LargePayloads(store, bucket="b", always=True)

    def entries() -> Iterator[SendEntry]:
        for i in range(9):
            store.read += 1
            yield SendEntry(str(i), json.dumps({"id": i, "pad": "x" * 1000}))

    async def go() -> None:
        backend = MemoryBackend()
        try:
            url = await backend.create_queue("orders")
            await send_all(backend, url, entries(), lambda _, r: None, payloads=payloads)
        finally:
            await backend.aclose()

    anyio.run(go)
    assert store.most_held == 3  # 3 of ~1,020 characters pass 2,500; not PARALLEL_PUTS
    assert len(store.objects) == 9


class _FailingStore(MemoryObjectStore):
    """Denies the PUT of one body; the others are stored."""

    def __init__(self, denied: bytes) -> None:
        super().__init__()
        self.denied = denied

    async def put(self, bucket: str, key: str, data: bytes, *, kms_key_id: str | None) -> None:
        if data == self.denied:
            raise AccessError("AccessDenied", f"PutObject of s3://{bucket}/{key} was denied")
        await super().put(bucket, key, data, kms_key_id=kms_key_id)


def test_a_failed_put_leaves_no_object_of_the_unsent_entries() -> None:
    store = _FailingStore(denied=b'"two"')
    payloads = LargePayloads(store, bucket="b", always=True)
    bodies = ['"zero"', '"one"', '"two"', '"three"']
    entries = [SendEntry(str(i), body) for i, body in enumerate(bodies)]
    sent: list[BatchResult] = []

    async def go() -> None:
        backend = MemoryBackend()
        try:
            url = await backend.create_queue("orders")
            await send_all(backend, url, entries, lambda _, r: sent.append(r), payloads=payloads)
        finally:
            await backend.aclose()

    with pytest.raises(BackendError) as raised:
        anyio.run(go)
    assert str(raised.value) == (
        "AccessDenied: s3:PutObject to bucket 'b' failed: access denied: check the IAM policy "
        "(and the KMS key with SSE-KMS)"
    )
    assert sent == []
    assert store.objects == {}  # the three stored with the denied one were deleted
    assert payloads.deleted == 3


class _TakenThenTimedOut(MemoryBackend):
    """Takes every batch, then loses the answer (a timeout past the SDK's retries)."""

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        await super().send_batch(queue_url, entries)
        raise BackendError("ReadTimeoutError", "the answer was lost", retryable=True)


class _NoOutcome(MemoryBackend):
    """Takes every batch and answers 200 without a word about its entries."""

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        await super().send_batch(queue_url, entries)
        return BatchResult()


@pytest.mark.parametrize("backend_type", [_TakenThenTimedOut, _NoOutcome])
def test_a_batch_that_may_have_been_taken_keeps_its_objects(
    backend_type: type[MemoryBackend],
) -> None:
    store = MemoryObjectStore()
    payloads = LargePayloads(store, bucket="b", always=True)
    entries = [SendEntry(str(n), json.dumps({"id": n})) for n in range(3)]

    async def go() -> list[QueueMessage]:
        backend = backend_type()
        try:
            url = await backend.create_queue("orders")
            with contextlib.suppress(BackendError):
                await send_all(backend, url, entries, lambda _, r: None, payloads=payloads)
            return await backend.receive(url, max_messages=10, wait_time_s=0)
        finally:
            await backend.aclose()

    taken = anyio.run(go)
    assert len(taken) == 3
    assert sorted(key for _, key in store.objects) == sorted(
        parse_pointer(message.body).key for message in taken
    )
