"""Fixtures for the large-payload tests: a bucket on the session's moto server (its S3),
settings that offload to it, and a queue beside it for an ``aiosqsq run`` worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from aiosqsq.settings import QueueSettings
from tests.cli.conftest import MotoQueues, ledger, moto_queues, sqs_env

__all__ = ["ledger", "moto_queues", "sqs_env"]  # the CLI tests' fixtures, used here too


class MotoBucket:
    """One S3 bucket on moto, emptied and removed after the test; synchronous calls."""

    def __init__(self, endpoint_url: str) -> None:
        self.name = f"payloads-{uuid.uuid4().hex[:10]}"
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.client.create_bucket(Bucket=self.name)

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listed.get("Contents", ()))

    def read(self, key: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return data

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def remove(self) -> None:
        for key in self.keys():
            self.client.delete_object(Bucket=self.name, Key=key)
        self.client.delete_bucket(Bucket=self.name)


@pytest.fixture
def bucket(moto_endpoint: str) -> Iterator[MotoBucket]:
    made = MotoBucket(moto_endpoint)
    yield made
    made.remove()


@pytest.fixture
def large_settings(sqs_settings: QueueSettings, bucket: MotoBucket) -> QueueSettings:
    """The session's moto server for SQS and S3, offloading to ``bucket``."""
    return sqs_settings.model_copy(
        update={
            "large_payload_bucket": bucket.name,
            "s3_endpoint_url": sqs_settings.sqs_endpoint_url,
            "large_payload_prefix": "p/",
        }
    )


@dataclass(frozen=True)
class PayloadQueue:
    """A queue of its own on moto (with its dead-letter queue) beside ``bucket``, and the
    ledger file an ``aiosqsq run`` worker of ``apps/payload_ledger.py`` writes."""

    url: str
    settings: QueueSettings  # large payloads on, to ``bucket``
    bucket: MotoBucket
    ledger: Path
    sqs_env: dict[str, str]
    s3_endpoint: str

    def worker_env(self, s3_endpoint: str | None = None) -> dict[str, str]:
        """A worker's environment: this queue, the bucket at ``s3_endpoint`` (a proxy
        in front of moto) or moto's own, the ledger."""
        return {
            **self.sqs_env,
            "QUEUE_SQS_QUEUE_URL": self.url,
            "QUEUE_LARGE_PAYLOAD_BUCKET": self.bucket.name,
            "QUEUE_S3_ENDPOINT_URL": s3_endpoint or self.s3_endpoint,
            "LEDGER_PATH": str(self.ledger),
        }


@pytest.fixture
def payload_queue(
    large_settings: QueueSettings,
    sqs_env: dict[str, str],
    moto_queues: MotoQueues,
    bucket: MotoBucket,
    ledger: Path,
    moto_endpoint: str,
) -> PayloadQueue:
    return PayloadQueue(
        moto_queues.create(), large_settings, bucket, ledger, sqs_env, moto_endpoint
    )
