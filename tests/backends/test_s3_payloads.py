"""S3ObjectStore: a round trip on moto, and how S3's refusals are translated.

moto never throttles or fails, so those answers come from a loopback server that answers
every request with one forged S3 XML error; the store's client talks to it over HTTP as
it would to S3.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import boto3  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from pydantic import SecretStr

from aiosqsq.backends import sqs
from aiosqsq.backends.object_store import ObjectNotFoundError
from aiosqsq.backends.s3_payloads import S3ObjectStore
from aiosqsq.backends.sqs_config import SQSConfig
from aiosqsq.errors import AccessError, BackendError, ConfigurationError
from tests.backends.loopback import serve

CONFIG = SQSConfig(
    region="us-east-1",
    access_key_id=SecretStr("testing"),
    secret_access_key=SecretStr("testing"),
)


@dataclass
class _S3FaultServer:
    """Answers every S3 request with one forged XML error."""

    endpoint_url: str
    status: int = 503
    code: str = "SlowDown"
    requests: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
            "<Message>forged</Message></Error>"
        )
        return web.Response(status=self.status, text=body, content_type="application/xml")


@pytest.fixture
async def s3_faults() -> AsyncIterator[_S3FaultServer]:
    server = _S3FaultServer("")
    async with serve(server.handle) as server.endpoint_url:
        yield server


@pytest.fixture
async def faulty_store(
    s3_faults: _S3FaultServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[S3ObjectStore]:
    monkeypatch.setattr(sqs, "MAX_ATTEMPTS", 1)  # the translation, not botocore's retries
    store = S3ObjectStore(CONFIG, region="us-east-1", endpoint_url=s3_faults.endpoint_url)
    yield store
    await store.aclose()


@pytest.mark.parametrize(
    ("status", "code", "kind", "throttled", "retryable"),
    [
        (503, "SlowDown", BackendError, True, True),
        (400, "ThrottlingException", BackendError, True, True),
        (400, "KMS.ThrottlingException", BackendError, True, True),
        (500, "InternalError", BackendError, False, True),
        (503, "ServiceUnavailable", BackendError, False, True),
        (400, "InvalidArgument", BackendError, False, False),
        (403, "AccessDenied", AccessError, False, False),
    ],
)
async def test_refusals_are_translated_and_only_throttling_is_throttled(
    faulty_store: S3ObjectStore,
    s3_faults: _S3FaultServer,
    status: int,
    code: str,
    kind: type[BackendError],
    throttled: bool,
    retryable: bool,
) -> None:
    s3_faults.status, s3_faults.code = status, code
    with pytest.raises(BackendError) as caught:
        await faulty_store.get("bucket", "key", max_bytes=100)
    error = caught.value
    assert (type(error), error.code, error.throttled, error.retryable) == (
        kind,
        code,
        throttled,
        retryable,
    )
    assert s3_faults.requests == ["GET /bucket/key"]
    if kind is BackendError:
        assert str(error) == f"{code}: GetObject of s3://bucket/key failed: forged"


async def test_round_trip_on_moto(moto_endpoint: str) -> None:
    bucket = f"payloads-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=bucket)
    store = S3ObjectStore(CONFIG, region="us-east-1", endpoint_url=moto_endpoint)
    try:
        await store.put(bucket, "a", b"payload", kms_key_id=None)
        assert await store.get(bucket, "a", max_bytes=100) == b"payload"
        assert await store.delete(bucket, ["a"]) == []
        with pytest.raises(ObjectNotFoundError) as caught:
            await store.get(bucket, "a", max_bytes=100)
        assert (caught.value.code, caught.value.throttled) == ("NoSuchKey", False)
    finally:
        await store.aclose()
        s3.delete_bucket(Bucket=bucket)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (
            "http://s3.example.com",
            "QUEUE_S3_ENDPOINT_URL='http://s3.example.com' is invalid: plain http is allowed "
            "only for a loopback host (127.0.0.0/8, localhost, ::1); use https",
        ),
        (
            "ftp://127.0.0.1:21",
            "QUEUE_S3_ENDPOINT_URL='ftp://127.0.0.1:21' is invalid: expected a URL such as "
            "https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:5000",
        ),
        (
            "https://user:sentinel-password@s3.example.com",
            "QUEUE_S3_ENDPOINT_URL is invalid (value hidden): it must not contain a user name "
            "or password, expected a URL such as https://s3.eu-west-1.amazonaws.com",
        ),
    ],
)
def test_an_invalid_endpoint_names_the_setting(endpoint: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        S3ObjectStore(CONFIG, region="us-east-1", endpoint_url=endpoint)
    assert str(caught.value) == expected
