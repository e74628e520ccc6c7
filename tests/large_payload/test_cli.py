"""Operator commands on pointer messages: ``dlq inspect`` shows the pointer and the
object's size, ``dlq redrive`` moves the pointer without copying the object."""

from __future__ import annotations

import json

from aiosqsq.cli import ExitCode
from tests.cli.conftest import MotoQueues
from tests.cli.harness import run_cli
from tests.large_payload.conftest import PayloadQueue
from tests.large_payload.test_consume_e2e import APPS, send

MIB = 1024 * 1024


def test_inspect_shows_the_pointer_and_redrive_moves_it_without_the_object(
    payload_queue: PayloadQueue, moto_queues: MotoQueues
) -> None:
    url, bucket = payload_queue.url, payload_queue.bucket
    dlq_url = moto_queues.info(url).dead_letter_queue_url
    assert dlq_url is not None
    send(payload_queue.settings, url, [[1, "not an object" * MIB]])  # decodes, does not validate
    [key] = bucket.keys()
    size = len(json.dumps([1, "not an object" * MIB], separators=(",", ":")))
    env = payload_queue.worker_env()
    result = run_cli("run", "payload_ledger:app", "--burst", "--app-dir", APPS, env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    dlq_name = dlq_url.rsplit("/", 1)[-1]

    inspected = run_cli("dlq", "inspect", dlq_name, "--json", env=env)
    assert inspected.returncode == ExitCode.OK, inspected.stderr
    [row] = json.loads(inspected.stdout)
    assert row["error"].startswith("ValidationError: ")
    assert row["payload"] == {
        "pointer": f"s3://{bucket.name}/{key}",
        "size": size,
        "problem": None,
    }
    table = run_cli("dlq", "inspect", dlq_name, env={**env, "COLUMNS": "400"})
    assert f"s3://{bucket.name}/{key} ({size} bytes)" in table.stdout

    moved = run_cli("dlq", "redrive", dlq_name, env=env)
    assert moved.returncode == ExitCode.OK, moved.stderr
    assert moved.stdout == f"moved 1 message from {dlq_name} to {url.rsplit('/', 1)[-1]}\n"
    [back] = moto_queues.receive_all(url)
    assert json.loads(back.body)[1] == {"s3BucketName": bucket.name, "s3Key": key}
    assert back.message_attributes["ExtendedPayloadSize"]["StringValue"] == str(size)
    assert bucket.keys() == [key]  # the object was not copied


def test_inspect_says_when_the_object_is_gone(
    payload_queue: PayloadQueue, moto_queues: MotoQueues
) -> None:
    url, bucket = payload_queue.url, payload_queue.bucket
    settings = payload_queue.settings.model_copy(update={"large_payload_always": True})
    send(settings, url, [{"id": 1}])
    [key] = bucket.keys()
    bucket.client.delete_object(Bucket=bucket.name, Key=key)
    env = payload_queue.worker_env()
    inspected = run_cli("dlq", "inspect", url.rsplit("/", 1)[-1], "--json", env=env)
    assert inspected.returncode == ExitCode.OK, inspected.stderr
    [row] = json.loads(inspected.stdout)
    assert row["payload"] == {
        "pointer": f"s3://{bucket.name}/{key}",
        "size": None,
        "problem": "the object does not exist",
    }
