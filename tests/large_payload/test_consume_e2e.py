"""Large payloads through the real ``aiosqsq run`` on moto (SQS and S3): 2 MiB and 10 MiB
payloads, single and batch handlers, cleanup on and off, and every bad pointer to the
dead-letter queue with its reason, handled by no handler and received once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiosqsq.backends.base import SendEntry
from aiosqsq.cli import ExitCode
from aiosqsq.service import QueueService
from aiosqsq.settings import QueueSettings
from tests.cli.conftest import MotoQueues
from tests.cli.harness import run_cli
from tests.large_payload.conftest import MotoBucket, PayloadQueue
from tests.large_payload.s3_proxy import S3Proxy

APPS = str(Path(__file__).parent / "apps")
MIB = 1024 * 1024


def send(settings: QueueSettings, url: str, payloads: list[Any]) -> None:
    async def go() -> None:
        async with QueueService(settings) as service:
            await service.enqueue_batch(payloads, url)

    anyio.run(go)


def ledger_lines(ledger: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []


def digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


@pytest.mark.parametrize("cleanup", [False, True])
def test_2_and_10_mib_payloads_through_aiosqsq_run(
    cleanup: bool, payload_queue: PayloadQueue, moto_queues: MotoQueues
) -> None:
    url, bucket, ledger = payload_queue.url, payload_queue.bucket, payload_queue.ledger
    payloads = [
        {"id": 0, "blob": "a" * (2 * MIB)},
        {"id": 1, "blob": "b" * (10 * MIB)},
        {"id": 2, "blob": "small"},
    ]
    send(payload_queue.settings, url, payloads)
    assert len(bucket.keys()) == 2
    env = payload_queue.worker_env()
    env["QUEUE_LARGE_PAYLOAD_CLEANUP"] = "true" if cleanup else "false"
    result = run_cli("run", "payload_ledger:app", "--burst", "--app-dir", APPS, env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    lines = sorted(ledger_lines(ledger), key=lambda line: line["id"])
    assert [(line["id"], line["sha256"]) for line in lines] == [
        (p["id"], digest(p)) for p in payloads
    ]
    assert lines[1]["size"] > 10 * MIB
    assert not any(line["pointer_seen"] for line in lines)
    assert all(line["attributes"] == [] for line in lines)  # the size attribute removed
    depth = moto_queues.depth(url)
    assert (depth.visible, depth.in_flight) == (0, 0)
    assert len(bucket.keys()) == (0 if cleanup else 2)


def test_a_batch_handler_gets_payloads_mixed_with_inline_bodies(
    payload_queue: PayloadQueue, moto_queues: MotoQueues
) -> None:
    url, bucket, ledger = payload_queue.url, payload_queue.bucket, payload_queue.ledger
    payloads = [{"id": i, "blob": "c" * (3 * MIB if i % 4 == 0 else 100)} for i in range(12)]
    send(payload_queue.settings, url, payloads)
    assert len(bucket.keys()) == 3
    env = payload_queue.worker_env()
    env.update(BATCH="1", QUEUE_LARGE_PAYLOAD_CLEANUP="true")
    result = run_cli("run", "payload_ledger:app", "--burst", "--app-dir", APPS, env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    lines = sorted(ledger_lines(ledger), key=lambda line: line["id"])
    assert [line["sha256"] for line in lines] == [digest(p) for p in payloads]
    assert not any(line["pointer_seen"] for line in lines)
    assert bucket.keys() == []


def _pointer(bucket: object, key: object) -> str:
    return json.dumps(
        [
            "software.amazon.payloadoffloading.PayloadS3Pointer",
            {"s3BucketName": bucket, "s3Key": key},
        ]
    )


def _size(name: str, value: int | str) -> dict[str, Any]:
    return {name: {"DataType": "Number", "StringValue": str(value)}}


def test_every_bad_pointer_goes_to_the_dead_letter_queue_with_its_reason(
    payload_queue: PayloadQueue, moto_queues: MotoQueues, moto_endpoint: str
) -> None:
    url, bucket, ledger = payload_queue.url, payload_queue.bucket, payload_queue.ledger
    dlq_url = moto_queues.info(url).dead_letter_queue_url
    assert dlq_url is not None
    bucket.put("present", b'{"id": 1}')
    bucket.put("locked/k", b'{"id": 2}')  # readable by nobody through the proxy
    other = MotoBucket(moto_endpoint)  # readable, but not the consumer's bucket
    other.put("k", b'{"id": 3}')
    cases = {
        "missing": (_pointer(bucket.name, "gone"), _size("ExtendedPayloadSize", 9),
                    f"PayloadObjectMissing: large payload: 's3://{bucket.name}/gone' does not "
                    "exist (deleted, expired or never stored)"),
        "bucket-not-a-string": (_pointer(12, "k"), _size("ExtendedPayloadSize", 9),
                                "PayloadPointerError: large payload: s3BucketName is missing or "
                                "not a non-empty string"),
        "key-not-a-string": (_pointer(bucket.name, None), _size("SQSLargePayloadSize", 9),
                             "PayloadPointerError: large payload: s3Key is missing or not a "
                             "non-empty string"),
        "truncated": (_pointer(bucket.name, "present")[:-9], _size("ExtendedPayloadSize", 9),
                      "PayloadPointerError: large payload: the body is not JSON (truncated?)"),
        "size-lies-low": (_pointer(bucket.name, "present"), _size("ExtendedPayloadSize", 5),
                          f"PayloadSizeMismatch: large payload: 's3://{bucket.name}/present' is "
                          "larger than the 5 bytes its size attribute states: not loaded"),
        "size-lies-high": (_pointer(bucket.name, "present"), _size("ExtendedPayloadSize", 99),
                           f"PayloadSizeMismatch: large payload: 's3://{bucket.name}/present' has "
                           "9 bytes; its size attribute states 99"),
        "denied": (_pointer(bucket.name, "locked/k"), _size("ExtendedPayloadSize", 9),
                   f"PayloadObjectDenied: large payload: reading 's3://{bucket.name}/locked/k' "
                   "was denied (AccessDenied)"),
        "another-bucket": (_pointer(other.name, "k"), _size("ExtendedPayloadSize", 9),
                           f"PayloadPointerError: large payload: the pointer names bucket "
                           f"'{other.name}', not QUEUE_LARGE_PAYLOAD_BUCKET ('{bucket.name}'): "
                           "not read"),
        "over-the-maximum": (_pointer(bucket.name, "present"), _size("ExtendedPayloadSize", 10**9),
                             "PayloadTooLarge: large payload: the payload of 1000000000 bytes is "
                             "over QUEUE_LARGE_PAYLOAD_MAX_BYTES (67108864): not loaded"),
    }  # fmt: skip
    entries = [
        SendEntry(str(i), body, message_attributes={**attributes, **_size("case", i)})
        for i, (body, attributes, _) in enumerate(cases.values())
    ]
    moto_queues.send_entries(url, entries)
    proxy = S3Proxy(moto_endpoint, deny=[f"{bucket.name}/locked/"])
    try:
        env = payload_queue.worker_env(proxy.endpoint_url)
        result = run_cli("run", "payload_ledger:app", "--burst", "--app-dir", APPS, env=env)
    finally:
        proxy.close()
        other.remove()
    assert result.returncode == ExitCode.OK, result.stderr
    assert ledger_lines(ledger) == []  # no handler saw any of them
    dead = moto_queues.receive_all(dlq_url)
    reasons = {
        int(m.message_attributes["case"]["StringValue"]): (
            m.message_attributes["aiosqsq-error"]["StringValue"],
            m.receive_count,
        )
        for m in dead
    }
    expected = {i: (reason, 1) for i, (_, _, reason) in enumerate(cases.values())}
    assert reasons == expected  # each moved on its first receive: no loop
    assert bucket.keys() == ["locked/k", "present"]  # dead-lettered messages keep objects
    assert "Traceback" not in result.stderr
