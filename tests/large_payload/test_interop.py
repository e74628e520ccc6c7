"""Interoperability with AWS's own extended client (amazon-sqs-extended-client), both
ways and with both size attribute names: what it sends, ``aiosqsq run`` handles; what
aiosqsq sends, it receives, decodes and deletes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from aiosqsq.backends.base import QueueMessage
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.cli import ExitCode
from aiosqsq.settings import QueueSettings
from tests.cli.conftest import MotoQueues
from tests.cli.harness import run_cli
from tests.helpers import slow
from tests.large_payload.conftest import MotoBucket, PayloadQueue
from tests.large_payload.test_consume_e2e import APPS, digest, ledger_lines, send

ROOT = Path(__file__).parents[2]
MIB = 1024 * 1024
ATTRIBUTE = {"modern": "ExtendedPayloadSize", "legacy": "SQSLargePayloadSize"}


def peek(settings: QueueSettings, url: str) -> list[QueueMessage]:
    """The visible messages, left visible (a receive with a visibility timeout of 0)."""

    async def receive() -> list[QueueMessage]:
        async with SQSBackend(settings) as backend:
            return await backend.receive(
                url, max_messages=10, wait_time_s=0, visibility_timeout_s=0
            )

    return anyio.run(receive)


def aws_client(
    action: str, queue_url: str, bucket: str, legacy: str, endpoint: str, stdin: str = ""
) -> str:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.large_payload.aws_client", action, queue_url, bucket, legacy],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=slow(60),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("legacy", ["modern", "legacy"])
def test_a_message_the_aws_client_sends_is_handled_by_aiosqsq(
    legacy: str, payload_queue: PayloadQueue, moto_queues: MotoQueues, moto_endpoint: str
) -> None:
    url, bucket, ledger = payload_queue.url, payload_queue.bucket, payload_queue.ledger
    body = json.dumps({"id": 5, "blob": "j" * (2 * MIB)}, separators=(",", ":"))
    aws_client("send", url, bucket.name, legacy, moto_endpoint, stdin=body)
    [sent] = peek(moto_queues.settings, url)  # on the wire: the AWS client's own format
    assert set(sent.message_attributes) == {ATTRIBUTE[legacy]}
    assert json.loads(sent.body)[1]["s3BucketName"] == bucket.name
    env = payload_queue.worker_env()
    result = run_cli("run", "payload_ledger:app", "--burst", "--app-dir", APPS, env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    [line] = ledger_lines(ledger)
    assert line["sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert line["attributes"] == []
    assert not line["pointer_seen"]


@pytest.mark.parametrize("legacy", ["modern", "legacy"])
def test_a_message_aiosqsq_sends_is_received_and_deleted_by_the_aws_client(
    legacy: str,
    large_settings: QueueSettings,
    moto_queues: MotoQueues,
    bucket: MotoBucket,
    moto_endpoint: str,
) -> None:
    url = moto_queues.create()
    settings = large_settings.model_copy(update={"large_payload_size_attribute": ATTRIBUTE[legacy]})
    payloads = [{"id": 1, "blob": "q" * (3 * MIB)}, {"id": 2, "blob": "inline"}]
    send(settings, url, payloads)
    out = aws_client("receive", url, bucket.name, legacy, moto_endpoint)
    lines = [json.loads(line) for line in out.splitlines()]
    assert {line["sha256"] for line in lines} == {digest(p) for p in payloads}
    assert all(line["attributes"] == [] for line in lines)  # it removed the size attribute
    depth = moto_queues.depth(url)
    assert (depth.visible, depth.in_flight) == (0, 0)  # its deletes went through
