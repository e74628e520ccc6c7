"""Fixtures for the large-payload tests: a bucket on the session's moto server (its S3),
and settings that offload to it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from aiosqsq.settings import QueueSettings
from tests.cli.conftest import ledger, moto_queues, sqs_env

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
