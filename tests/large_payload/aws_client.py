"""AWS's own extended client (``amazon-sqs-extended-client``), driven in a child process:
importing it replaces ``boto3.Session`` process-wide, so it never runs in the test's.

``python -m tests.large_payload.aws_client send QUEUE_URL BUCKET LEGACY`` sends one body
read from standard input; ``... receive QUEUE_URL BUCKET LEGACY`` receives every message,
deletes each, and prints one JSON line per message: its body's SHA-256 and size and the
message attribute names it kept. The endpoint and keys come from AWS_* variables.
"""

from __future__ import annotations

import hashlib
import json
import sys

import boto3  # type: ignore[import-untyped]
import sqs_extended_client  # noqa: F401  (patches boto3)


def main(action: str, queue_url: str, bucket: str, legacy: str) -> None:
    sqs = boto3.session.Session().client("sqs")
    sqs.large_payload_support = bucket
    sqs.use_legacy_attribute = legacy == "legacy"
    if action == "send":
        sqs.send_message(QueueUrl=queue_url, MessageBody=sys.stdin.read())
        return
    for _ in range(20):  # bounded: what was sent is there at once on moto
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        messages = response.get("Messages", [])
        if not messages:
            return
        for message in messages:
            body = message["Body"].encode()
            line = {
                "sha256": hashlib.sha256(body).hexdigest(),
                "size": len(body),
                "attributes": sorted(message.get("MessageAttributes", {})),
            }
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
