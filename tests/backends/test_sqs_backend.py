"""SQSBackend: the backend contract on moto server, and what only the SQS backend does.

moto (tests/moto_server.py) serialises requests, so counts are exact; errors moto never
produces (throttling, 5xx, denied or expired credentials) come from a small loopback
server that answers every request with a forged SQS JSON-protocol error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiohttp import web

from aiosqsq.backends import sqs
from aiosqsq.backends.base import DeleteEntry, SendEntry, VisibilityEntry
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.backends.sqs_config import TRANSPORTS, SQSConfig, Transport
from aiosqsq.errors import (
    AccessError,
    BackendError,
    BatchRequestError,
    ConfigurationError,
    QueueNotFoundError,
)
from aiosqsq.settings import QueueSettings
from tests.backends.contract import BackendContract
from tests.backends.loopback import serve

# Sentinel credentials: none of these strings may ever show up in a repr, an exception or
# a log line (a masked key id, first 4 characters, is fine).
KEY_ID = "AKIASENTINELKEYID4242"
SECRET = "SentinelSecretKey/0123456789+abcdefGHIJK"
TOKEN = "SentinelSessionToken//0123456789abcdefghijklmnopqrstuvwxyzTOKEN"
SENTINELS = (KEY_ID, SECRET, TOKEN, KEY_ID[4:], SECRET[:20], TOKEN[:20])


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _assert_no_secret(text: str) -> None:
    for sentinel in SENTINELS:
        assert sentinel not in text


def _on(settings: QueueSettings, transport: Transport) -> SQSConfig:
    return dataclasses.replace(settings.sqs_config(), transport=transport)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    """Each test that takes it runs on both transports of the calls made per message."""
    value: Transport = request.param
    return value


@pytest.fixture
async def backend(sqs_settings: QueueSettings, transport: Transport) -> AsyncIterator[SQSBackend]:
    backend = SQSBackend(_on(sqs_settings, transport))
    yield backend
    await backend.aclose()


@pytest.fixture
async def botocore_backend(sqs_settings: QueueSettings) -> AsyncIterator[SQSBackend]:
    """For the tests that watch botocore's own request hooks."""
    backend = SQSBackend(_on(sqs_settings, "botocore"))
    yield backend
    await backend.aclose()


@pytest.fixture
async def queue_url(backend: SQSBackend) -> AsyncIterator[str]:
    url = await backend.create_queue(_unique("sqs-test"))
    yield url
    await backend.delete_queue(url)


class TestSQSContract(BackendContract):
    """The backend contract, on moto server over loopback, on both transports."""

    strict_receipt_handles = False  # moto accepts stale receipt handles (getmoto/moto#4655)


# --- configuration ---------------------------------------------------------------------


def _settings(**values: Any) -> QueueSettings:
    return QueueSettings(backend="sqs", sqs_queue_url="orders", **values)


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:5000",
        "http://127.8.9.10:5000",
        "http://localhost:4566",
        "http://LOCALHOST:4566",
        "http://[::1]:9324",
        "https://sqs.eu-west-1.amazonaws.com",
        "https://sqs.example.internal:8443/",
    ],
)
def test_endpoint_allowed(endpoint: str) -> None:
    assert repr(SQSBackend(_settings(sqs_endpoint_url=endpoint))).startswith(
        f"SQSBackend(endpoint={endpoint!r}"
    )


def test_plain_http_endpoint_must_be_loopback() -> None:
    with pytest.raises(ConfigurationError) as caught:
        SQSBackend(_settings(sqs_endpoint_url="http://10.0.0.5:4566"))
    assert str(caught.value) == (
        "QUEUE_SQS_ENDPOINT_URL='http://10.0.0.5:4566' is invalid: plain http is allowed only "
        "for a loopback host (127.0.0.0/8, localhost, ::1); use https"
    )


@pytest.mark.parametrize("endpoint", ["ftp://127.0.0.1", "127.0.0.1:5000", "https://"])
def test_endpoint_must_be_a_url(endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match=r"QUEUE_SQS_ENDPOINT_URL=.* expected a URL"):
        SQSBackend(_settings(sqs_endpoint_url=endpoint))


def test_endpoint_with_user_info_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        SQSBackend(_settings(sqs_endpoint_url="https://user:sentinel-password@sqs.example.com"))
    assert "QUEUE_SQS_ENDPOINT_URL is invalid (value hidden)" in str(caught.value)
    assert "sentinel-password" not in str(caught.value)


@pytest.mark.parametrize(
    "values",
    [
        {"aws_access_key_id": KEY_ID},
        {"aws_secret_access_key": SECRET},
        {"aws_secret_access_key": SECRET, "aws_session_token": TOKEN},
    ],
)
def test_access_key_and_secret_go_together(values: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="QUEUE_AWS_ACCESS_KEY_ID and QUEUE_AWS_SECRET"):
        SQSBackend(_settings(**values))


def test_session_token_needs_the_keys() -> None:
    with pytest.raises(ConfigurationError, match="QUEUE_AWS_SESSION_TOKEN needs"):
        SQSBackend(_settings(aws_session_token=TOKEN))


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connections=0"):
        SQSBackend(_settings(), max_connections=0)


def _isolate_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # Keep the developer's ~/.aws and the instance metadata service out of the test.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_region_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    _isolate_aws_config(monkeypatch, tmp_path)
    assert SQSBackend(_settings()).region == "us-east-1"  # nothing configured anywhere
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert SQSBackend(_settings()).region == "ap-south-1"
    queue_url = "https://sqs.eu-central-1.amazonaws.com/123456789012/orders"
    by_url = QueueSettings(backend="sqs", sqs_queue_url=queue_url)
    assert SQSBackend(by_url).region == "eu-central-1"
    assert SQSBackend(_settings(aws_region="eu-west-3")).region == "eu-west-3"


def test_repr_shows_endpoint_and_region_only() -> None:
    backend = SQSBackend(
        _settings(
            sqs_endpoint_url="http://127.0.0.1:5000",
            aws_region="eu-west-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            aws_session_token=TOKEN,
        )
    )
    assert repr(backend) == "SQSBackend(endpoint='http://127.0.0.1:5000', region='eu-west-1')"
    assert str(backend) == repr(backend)
    assert repr(SQSBackend(_settings(aws_region="eu-west-1"))) == (
        "SQSBackend(endpoint='AWS', region='eu-west-1')"
    )


async def test_client_configuration(backend: SQSBackend, queue_url: str) -> None:
    client = backend._client  # one long-lived client, built by the first call
    assert client is not None
    await backend.get_queue_depth(queue_url)
    await backend.receive(queue_url, max_messages=1, wait_time_s=0)
    assert backend._client is client
    config = client.meta.config
    assert config.read_timeout > 20  # outlasts the longest long poll
    assert config.connect_timeout <= 5
    assert config.max_pool_connections == 50
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    sized = SQSBackend(backend.config, max_connections=7)
    await sized.get_queue_depth(queue_url)
    assert sized._client.meta.config.max_pool_connections == 7
    await sized.aclose()


# --- queues ----------------------------------------------------------------------------


async def test_queue_by_name_url_and_arn(backend: SQSBackend) -> None:
    name = _unique("by-name")
    url = await backend.create_queue(name)
    try:
        assert url.endswith(f"/{name}")
        assert await backend.get_queue_url(name) == url  # GetQueueUrl
        assert await backend.get_queue_url(url) == url  # a URL is checked and returned as is
        info = await backend.get_queue_info(url)
        assert info.arn == f"arn:aws:sqs:us-east-1:123456789012:{name}"
        assert await backend.get_queue_url(info.arn) == url
    finally:
        await backend.delete_queue(url)


async def test_missing_queue_is_named(backend: SQSBackend, moto_endpoint: str) -> None:
    with pytest.raises(QueueNotFoundError) as caught:
        await backend.get_queue_url("no-such-queue")
    assert caught.value.queue == "no-such-queue"
    assert str(caught.value) == (
        "AWS.SimpleQueueService.NonExistentQueue: queue 'no-such-queue' does not exist "
        "(sqs:GetQueueUrl refused): create it or check the name, region and account"
    )
    missing_url = f"{moto_endpoint}/123456789012/no-such-queue"
    for call in (
        backend.get_queue_url(missing_url),
        backend.get_queue_depth(missing_url),
        backend.receive(missing_url, max_messages=1, wait_time_s=0),
        backend.delete_queue(missing_url),
    ):
        with pytest.raises(QueueNotFoundError) as caught:
            await call
        assert caught.value.queue == missing_url


async def test_queue_info_and_depth(backend: SQSBackend) -> None:
    dlq_name = _unique("dlq")
    dlq_url = await backend.create_queue(dlq_name)
    dlq_arn = (await backend.get_queue_info(dlq_url)).arn
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "4"})
    url = await backend.create_queue(
        _unique("with-dlq"), {"VisibilityTimeout": "45", "RedrivePolicy": redrive}
    )
    fifo_url = await backend.create_queue(
        _unique("ordered") + ".fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )
    try:
        info = await backend.get_queue_info(url)
        assert (info.visibility_timeout_s, info.fifo) == (45.0, False)
        assert (info.dead_letter_queue_url, info.max_receive_count) == (dlq_url, 4)
        fifo = await backend.get_queue_info(fifo_url)
        assert fifo.fifo
        assert (fifo.dead_letter_queue_url, fifo.max_receive_count) == (None, None)

        sent = await backend.send_batch(
            url, [SendEntry("now", "a"), SendEntry("also", "b"), SendEntry("later", "c", 60)]
        )
        assert set(sent.successful) == {"now", "also", "later"}
        await backend.receive(url, max_messages=1, wait_time_s=0)
        depth = await backend.get_queue_depth(url)
        assert (depth.visible, depth.in_flight, depth.delayed) == (1, 1, 1)
    finally:
        for queue in (url, fifo_url, dlq_url):
            await backend.delete_queue(queue)


async def test_create_queue_is_idempotent_for_same_attributes(backend: SQSBackend) -> None:
    name = _unique("twice")
    url = await backend.create_queue(name, {"VisibilityTimeout": "10"})
    try:
        assert await backend.create_queue(name, {"VisibilityTimeout": "10"}) == url
        with pytest.raises(BackendError) as caught:
            await backend.create_queue(name, {"VisibilityTimeout": "11"})
        assert not isinstance(caught.value, QueueNotFoundError)
        assert not caught.value.retryable
    finally:
        await backend.delete_queue(url)


async def test_concurrent_receivers_get_each_message_once(
    backend: SQSBackend, queue_url: str
) -> None:
    # What tests/moto_server.py guarantees (stock threaded moto does not): with one
    # request at a time, no message is handed to two receivers and no delete is lost.
    total = 150
    for start in range(0, total, 10):
        await backend.send_batch(
            queue_url, [SendEntry(f"m{i}", f"body-{i}") for i in range(start, start + 10)]
        )
    bodies: list[str] = []

    async def consume() -> None:
        while True:
            messages = await backend.receive(
                queue_url, max_messages=10, wait_time_s=0, visibility_timeout_s=60
            )
            if not messages:
                return
            bodies.extend(message.body for message in messages)
            entries = [DeleteEntry(f"d{i}", m.receipt_handle) for i, m in enumerate(messages)]
            assert (await backend.delete_batch(queue_url, entries)).failed == ()

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(consume)
    assert sorted(bodies) == sorted(f"body-{i}" for i in range(total))
    depth = await backend.get_queue_depth(queue_url)
    assert (depth.visible, depth.in_flight, depth.delayed) == (0, 0, 0)


# --- messages --------------------------------------------------------------------------


@dataclass(eq=False)  # hashable: botocore keys handlers by identity
class _Recorder:
    """Request parameters botocore was asked to send, by operation."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))


async def _record_requests(backend: SQSBackend, queue_url: str) -> _Recorder:
    await backend.get_queue_depth(queue_url)  # builds the client
    recorder = _Recorder()
    backend._client.meta.events.register("provide-client-params.sqs", recorder)
    return recorder


async def test_receive_requests_system_attributes(
    botocore_backend: SQSBackend, queue_url: str
) -> None:
    backend = botocore_backend
    recorder = await _record_requests(backend, queue_url)
    await backend.receive(
        queue_url, max_messages=7, wait_time_s=0.2, visibility_timeout_s=2.1, attempt_id="a-1"
    )
    [(operation, params)] = recorder.calls
    assert operation == "ReceiveMessage"
    assert params == {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": 7,
        "WaitTimeSeconds": 1,  # whole seconds, rounded up
        "VisibilityTimeout": 3,
        "ReceiveRequestAttemptId": "a-1",
        "MessageSystemAttributeNames": [
            "ApproximateReceiveCount",
            "SentTimestamp",
            "ApproximateFirstReceiveTimestamp",
            "MessageGroupId",
            "SequenceNumber",
            "AWSTraceHeader",
            "SenderId",
        ],
        "MessageAttributeNames": ["All"],
    }
    assert "AttributeNames" not in params  # deprecated in the SQS API


async def test_fifo_receive_maps_attributes(backend: SQSBackend) -> None:
    url = await backend.create_queue(
        _unique("attrs") + ".fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )
    try:
        attributes: dict[str, Any] = {
            "trace": {"DataType": "String", "StringValue": "t-1"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
            "n": {"DataType": "Number.int", "StringValue": "42"},
        }
        sent = await backend.send_batch(
            url,
            [
                # an explicit deduplication id: moto numbers only those (SQS numbers all)
                SendEntry(
                    "e1",
                    "body-1",
                    message_attributes=attributes,
                    group_id="g",
                    deduplication_id="d",
                )
            ],
        )
        [message] = await backend.receive(url, max_messages=10, wait_time_s=1)
        assert (message.message_id, message.body) == (sent.message_ids["e1"], "body-1")
        assert message.queue_url == url
        assert message.receive_count == 1
        assert message.group_id == "g"
        assert {
            "ApproximateReceiveCount",
            "SentTimestamp",
            "ApproximateFirstReceiveTimestamp",
            "MessageGroupId",
            "SequenceNumber",
            "SenderId",
        } <= set(message.attributes)
        assert message.message_attributes == attributes
    finally:
        await backend.delete_queue(url)


async def test_visibility_timeouts_are_sent_as_whole_seconds(
    botocore_backend: SQSBackend, queue_url: str
) -> None:
    backend = botocore_backend
    await backend.send_batch(queue_url, [SendEntry("m", "x")])
    [message] = await backend.receive(queue_url, max_messages=1, wait_time_s=0)
    recorder = await _record_requests(backend, queue_url)
    result = await backend.change_visibility_batch(
        queue_url, [VisibilityEntry("v", message.receipt_handle, 0.4)]
    )
    assert result.successful == ("v",)
    [(operation, params)] = recorder.calls
    assert operation == "ChangeMessageVisibilityBatch"
    assert params["Entries"] == [
        {"Id": "v", "ReceiptHandle": message.receipt_handle, "VisibilityTimeout": 1}
    ]


async def test_send_entry_fields(botocore_backend: SQSBackend, queue_url: str) -> None:
    backend = botocore_backend
    recorder = await _record_requests(backend, queue_url)
    await backend.send_batch(
        queue_url, [SendEntry("plain", "a"), SendEntry("delayed", "b", delay_s=5)]
    )
    [(_, params)] = recorder.calls
    # delay_s=0 leaves DelaySeconds out: the queue's own delay applies
    assert params["Entries"] == [
        {"Id": "plain", "MessageBody": "a"},
        {"Id": "delayed", "MessageBody": "b", "DelaySeconds": 5},
    ]


async def test_per_entry_failures_are_mapped(backend: SQSBackend, queue_url: str) -> None:
    await backend.send_batch(queue_url, [SendEntry("m", "x")])
    [message] = await backend.receive(queue_url, max_messages=1, wait_time_s=0)
    result = await backend.delete_batch(
        queue_url, [DeleteEntry("ok", message.receipt_handle), DeleteEntry("bad", "not-a-handle")]
    )
    assert result.successful == ("ok",)
    [failure] = result.failed
    assert (failure.id, failure.code, failure.sender_fault) == (
        "bad",
        "ReceiptHandleIsInvalid",
        True,
    )
    assert "not-a-handle" in failure.message


@pytest.mark.parametrize(
    ("ids", "code"),
    [
        ([], "EmptyBatchRequest"),
        ([str(i) for i in range(11)], "TooManyEntriesInBatchRequest"),
        (["a", "b", "a"], "BatchEntryIdsNotDistinct"),
        (["has.dot"], "InvalidBatchEntryId"),
        (["x" * 81], "InvalidBatchEntryId"),
    ],
)
async def test_batch_request_errors(
    backend: SQSBackend, queue_url: str, ids: list[str], code: str
) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: backend.delete_batch(queue_url, [DeleteEntry(i, "h") for i in ids]),
        lambda: backend.change_visibility_batch(
            queue_url, [VisibilityEntry(i, "h", 1) for i in ids]
        ),
        lambda: backend.send_batch(queue_url, [SendEntry(i, "body") for i in ids]),
    ]
    for call in calls:
        with pytest.raises(BatchRequestError) as caught:
            await call()
        assert caught.value.code == f"AWS.SimpleQueueService.{code}"


async def test_batch_too_long(backend: SQSBackend, queue_url: str) -> None:
    entries = [SendEntry(str(i), "x" * 200_000) for i in range(6)]  # 1.2 MB in all
    with pytest.raises(BatchRequestError) as caught:
        await backend.send_batch(queue_url, entries)
    assert caught.value.code == "AWS.SimpleQueueService.BatchRequestTooLong"


async def test_closed_backend_refuses_calls(
    sqs_settings: QueueSettings, transport: Transport, queue_url: str
) -> None:
    backend = SQSBackend(_on(sqs_settings, transport))
    await backend.receive(queue_url, max_messages=1, wait_time_s=0)
    await backend.aclose()
    await backend.aclose()  # idempotent
    for call in (
        backend.get_queue_depth(queue_url),
        backend.receive(queue_url, max_messages=1, wait_time_s=0),
    ):
        with pytest.raises(BackendError) as caught:
            await call
        assert caught.value.code == "BackendClosed"


# --- credentials never leak ------------------------------------------------------------


def _sentinel_settings(endpoint: str, transport: Transport = "botocore") -> QueueSettings:
    return QueueSettings(
        backend="sqs",
        sqs_queue_url="default",
        sqs_endpoint_url=endpoint,
        aws_region="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        aws_session_token=TOKEN,
        sqs_transport=transport,
    )


async def test_no_secret_in_debug_logs_or_reprs(
    moto_endpoint: str, transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = SQSBackend(_sentinel_settings(moto_endpoint, transport))
    try:
        url = await backend.create_queue(_unique("secrets"))
        await backend.send_batch(url, [SendEntry("m", "hello")])
        [message] = await backend.receive(url, max_messages=1, wait_time_s=0)
        await backend.delete_batch(url, [DeleteEntry("m", message.receipt_handle)])
        with pytest.raises(QueueNotFoundError) as caught:
            await backend.get_queue_url("missing-queue")
        await backend.delete_queue(url)
    finally:
        await backend.aclose()
    wire = [r for r in caplog.records if r.name.startswith(("botocore", "aiobotocore"))]
    assert any("Credential=***" in record.getMessage() for record in wire)  # logged, masked
    assert any("X-Amz-Security-Token" in record.getMessage() for record in wire)
    _assert_no_secret(caplog.text)
    _assert_no_secret("\n".join(record.getMessage() for record in caplog.records))
    _assert_no_secret(f"{backend!r} {backend} {caught.value!r} {caught.value}")


# --- error mapping over the wire -------------------------------------------------------


@dataclass
class _FaultServer:
    """Answers every SQS request with one forged JSON-protocol error."""

    endpoint_url: str
    status: int = 500
    error_type: str = "InternalError"
    message: str = "forged"
    query_code: str | None = None
    requests: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.headers.get("X-Amz-Target", ""))
        headers = {"x-amzn-RequestId": "forged-request"}
        if self.query_code is not None:
            sender = "Sender" if self.status < 500 else "Receiver"
            headers["x-amzn-query-error"] = f"{self.query_code};{sender}"
        body = {"__type": f"com.amazonaws.sqs#{self.error_type}", "message": self.message}
        return web.Response(
            status=self.status,
            body=json.dumps(body).encode(),
            content_type="application/x-amz-json-1.0",
            headers=headers,
        )


@pytest.fixture
async def fault_server() -> AsyncIterator[_FaultServer]:
    server = _FaultServer("")
    async with serve(server.handle) as server.endpoint_url:
        yield server


@pytest.fixture
async def faulty_backend(
    fault_server: _FaultServer, transport: Transport
) -> AsyncIterator[SQSBackend]:
    backend = SQSBackend(_sentinel_settings(fault_server.endpoint_url, transport))
    yield backend
    await backend.aclose()


QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


@pytest.mark.parametrize(
    ("status", "error_type", "query_code", "code", "text"),
    [
        (
            403,
            "AccessDenied",
            "AccessDenied",
            "AccessDenied",
            f"AccessDenied: sqs:ReceiveMessage on queue {QUEUE!r} was denied (AccessDenied): "
            "allow sqs:ReceiveMessage on this queue in the caller's IAM policy "
            "(and kms:Decrypt for an SSE-KMS queue)",
        ),
        (
            403,
            "ExpiredTokenException",
            None,
            "ExpiredTokenException",
            f"ExpiredTokenException: sqs:ReceiveMessage on queue {QUEUE!r} was refused: the AWS "
            "credentials are invalid or expired (ExpiredTokenException); check "
            "QUEUE_AWS_ACCESS_KEY_ID, QUEUE_AWS_SECRET_ACCESS_KEY and QUEUE_AWS_SESSION_TOKEN, "
            "or the default credential chain",
        ),
        (403, "InvalidClientTokenId", None, "InvalidClientTokenId", None),
        (400, "UnrecognizedClientException", None, "UnrecognizedClientException", None),
        (403, "SignatureDoesNotMatch", None, "SignatureDoesNotMatch", None),
        (400, "IncompleteSignature", None, "IncompleteSignature", None),
    ],
)
async def test_auth_errors_are_fatal_and_name_the_call(
    faulty_backend: SQSBackend,
    fault_server: _FaultServer,
    caplog: pytest.LogCaptureFixture,
    status: int,
    error_type: str,
    query_code: str | None,
    code: str,
    text: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    fault_server.status, fault_server.error_type, fault_server.query_code = (
        status,
        error_type,
        query_code,
    )
    # AWS echoes the Authorization header in some auth errors: it must not get through.
    fault_server.message = f"Authorization=AWS4-HMAC-SHA256 Credential={KEY_ID}/x, token {TOKEN}"
    with pytest.raises(BackendError) as caught:
        await faulty_backend.receive(QUEUE, max_messages=1, wait_time_s=0)
    error = caught.value
    assert (type(error), error.code, error.retryable) == (AccessError, code, False)
    assert f"sqs:ReceiveMessage on queue {QUEUE!r}" in str(error)
    if text is not None:
        assert str(error) == text
    assert fault_server.requests == ["AmazonSQS.ReceiveMessage"]  # not retried by botocore
    _assert_no_secret(str(error))
    _assert_no_secret(caplog.text)


@pytest.mark.parametrize(
    ("error_type", "query_code"),
    [
        ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"),
        ("QueueDoesNotExist", None),
    ],
)
async def test_missing_queue_codes(
    faulty_backend: SQSBackend, fault_server: _FaultServer, error_type: str, query_code: str | None
) -> None:
    fault_server.status, fault_server.error_type, fault_server.query_code = (
        400,
        error_type,
        query_code,
    )
    with pytest.raises(QueueNotFoundError) as caught:
        await faulty_backend.get_queue_depth(QUEUE)
    assert caught.value.queue == QUEUE


@pytest.mark.parametrize("with_query_code", [True, False])
@pytest.mark.parametrize(
    "code",
    [
        "TooManyEntriesInBatchRequest",
        "BatchEntryIdsNotDistinct",
        "EmptyBatchRequest",
        "BatchRequestTooLong",
        "InvalidBatchEntryId",
    ],
)
async def test_batch_codes_are_normalised(
    faulty_backend: SQSBackend, fault_server: _FaultServer, code: str, with_query_code: bool
) -> None:
    fault_server.status, fault_server.error_type = 400, code
    fault_server.query_code = f"AWS.SimpleQueueService.{code}" if with_query_code else None
    with pytest.raises(BatchRequestError) as caught:
        await faulty_backend.delete_batch(QUEUE, [DeleteEntry("a", "h")])
    assert caught.value.code == f"AWS.SimpleQueueService.{code}"
    assert not caught.value.retryable


async def test_throttling_is_retryable_after_botocore_retries(
    faulty_backend: SQSBackend, fault_server: _FaultServer
) -> None:
    fault_server.status, fault_server.error_type = 400, "RequestThrottled"
    fault_server.query_code = "RequestThrottled"
    with pytest.raises(BackendError) as caught:
        await faulty_backend.delete_batch(QUEUE, [DeleteEntry("a", "h")])
    error = caught.value
    assert (error.code, error.retryable, error.throttled) == ("RequestThrottled", True, True)
    assert len(fault_server.requests) == 3  # botocore's standard mode, 3 attempts in all


@pytest.mark.parametrize("error_type", ["OverLimit", "KmsThrottled"])
async def test_throttling_botocore_does_not_retry_is_tried_once_on_both_transports(
    faulty_backend: SQSBackend, fault_server: _FaultServer, error_type: str
) -> None:
    fault_server.status, fault_server.error_type = 403, error_type
    with pytest.raises(BackendError) as caught:
        await faulty_backend.delete_batch(QUEUE, [DeleteEntry("a", "h")])
    assert (caught.value.code, caught.value.throttled) == (error_type, True)
    assert len(fault_server.requests) == 1  # the engine's backoff retries it, not the SDK


@pytest.mark.parametrize(
    ("status", "error_type", "throttled"),
    [
        (400, "ThrottlingException", True),
        (400, "KmsThrottled", True),
        (403, "OverLimit", True),
        (400, "RequestLimitExceeded", True),
        (500, "InternalError", False),
        (503, "ServiceUnavailable", False),
        (502, "SomethingNew", False),
    ],
)
async def test_transient_errors_are_retryable(
    faulty_backend: SQSBackend,
    fault_server: _FaultServer,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    error_type: str,
    throttled: bool,
) -> None:
    monkeypatch.setattr(sqs, "MAX_ATTEMPTS", 1)  # the classification, not botocore's retries
    fault_server.status, fault_server.error_type = status, error_type
    with pytest.raises(BackendError) as caught:
        await faulty_backend.get_queue_depth(QUEUE)
    with pytest.raises(BackendError) as caught_receive:  # the lean transport, with "lean"
        await faulty_backend.receive(QUEUE, max_messages=1, wait_time_s=0)
    for error in (caught.value, caught_receive.value):
        assert (type(error), error.code, error.retryable, error.throttled) == (
            BackendError,
            error_type,
            True,
            throttled,
        )


async def test_other_client_errors_keep_their_code(
    faulty_backend: SQSBackend, fault_server: _FaultServer
) -> None:
    fault_server.status, fault_server.error_type = 400, "InvalidParameterValue"
    fault_server.message = "Value 99 for parameter MaxNumberOfMessages is invalid."
    with pytest.raises(BackendError) as caught:
        await faulty_backend.receive(QUEUE, max_messages=99, wait_time_s=0)
    assert (caught.value.code, caught.value.retryable) == ("InvalidParameterValue", False)
    assert str(caught.value) == (
        f"InvalidParameterValue: sqs:ReceiveMessage on queue {QUEUE!r} failed: "
        "Value 99 for parameter MaxNumberOfMessages is invalid."
    )


async def test_connection_refused_is_retryable(
    monkeypatch: pytest.MonkeyPatch, transport: Transport
) -> None:
    monkeypatch.setattr(sqs, "MAX_ATTEMPTS", 1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    backend = SQSBackend(_sentinel_settings(f"http://127.0.0.1:{port}", transport))
    try:
        with pytest.raises(BackendError) as caught:
            await backend.get_queue_depth(QUEUE)
        with pytest.raises(BackendError) as caught_receive:
            await backend.receive(QUEUE, max_messages=1, wait_time_s=0)
    finally:
        await backend.aclose()
    assert (caught.value.code, caught.value.retryable) == ("EndpointConnectionError", True)
    assert f"sqs:GetQueueAttributes on queue {QUEUE!r} failed" in str(caught.value)
    error = caught_receive.value
    assert (error.code, error.retryable) == ("EndpointConnectionError", True)
    assert str(error) == (
        f"EndpointConnectionError: sqs:ReceiveMessage on queue {QUEUE!r} failed: Could not "
        f'connect to the endpoint URL: "http://127.0.0.1:{port}/"'
    )


async def test_read_timeout_is_retryable(
    monkeypatch: pytest.MonkeyPatch, transport: Transport
) -> None:
    monkeypatch.setattr(sqs, "MAX_ATTEMPTS", 1)
    monkeypatch.setattr(sqs, "READ_TIMEOUT_S", 0.2)
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = SQSBackend(_sentinel_settings(f"http://127.0.0.1:{port}", transport))
    try:
        with pytest.raises(BackendError) as caught:
            await backend.get_queue_depth(QUEUE)
        with pytest.raises(BackendError) as caught_receive:
            await backend.receive(QUEUE, max_messages=1, wait_time_s=0)
    finally:
        await backend.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
    assert (caught.value.code, caught.value.retryable) == ("ReadTimeoutError", True)
    assert (caught_receive.value.code, caught_receive.value.retryable) == ("ReadTimeoutError", True)


async def test_no_credentials_is_fatal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, moto_endpoint: str, transport: Transport
) -> None:
    _isolate_aws_config(monkeypatch, tmp_path)
    backend = SQSBackend(
        SQSConfig(queue_url="orders", endpoint_url=moto_endpoint, transport=transport)
    )
    try:
        with pytest.raises(BackendError) as caught:
            await backend.get_queue_url("orders")
        with pytest.raises(BackendError) as caught_receive:
            await backend.receive(
                f"{moto_endpoint}/123456789012/orders", max_messages=1, wait_time_s=0
            )
    finally:
        await backend.aclose()
    assert (caught_receive.value.code, caught_receive.value.retryable) == ("NoCredentials", False)
    assert (caught.value.code, caught.value.retryable) == ("NoCredentials", False)
    assert str(caught.value) == (
        "NoCredentials: sqs:GetQueueUrl on queue 'orders' failed: no usable AWS credentials; "
        "set QUEUE_AWS_ACCESS_KEY_ID and QUEUE_AWS_SECRET_ACCESS_KEY or configure the "
        "default AWS credential chain"
    )


# --- the User-Agent header -------------------------------------------------------------


@dataclass(eq=False)  # hashable: botocore keys handlers by identity
class _UserAgents:
    """The User-Agent header of each request on the wire, beside the one botocore itself
    builds for that request (its uncached method, in the request's own context)."""

    sent: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    creator: Any = None

    def __call__(self, request: Any, **_: Any) -> None:
        header = request.headers["User-Agent"]
        self.sent.append(header.decode() if isinstance(header, bytes) else header)
        self.expected.append(type(self.creator).to_string(self.creator))


async def test_user_agent_is_built_once_and_is_botocore_s_own(
    sqs_settings: QueueSettings, queue_url: str
) -> None:
    from botocore.useragent import UserAgentString  # type: ignore[import-untyped]

    original = UserAgentString.to_string
    built = 0

    def counting(self: Any) -> str:
        nonlocal built
        built += 1
        return str(original(self))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(UserAgentString, "to_string", counting)
        async with SQSBackend(_on(sqs_settings, "botocore")) as backend:
            await backend.get_queue_depth(queue_url)  # builds the client
            agents = _UserAgents(creator=backend._client._user_agent_creator)
            backend._client.meta.events.register("before-send.sqs", agents)
            built = 0
            await backend.send_batch(queue_url, [SendEntry(str(i), f"m{i}") for i in range(3)])
            for _ in range(3):
                messages = await backend.receive(queue_url, max_messages=10, wait_time_s=0)
                entries = [DeleteEntry(str(i), m.receipt_handle) for i, m in enumerate(messages)]
                if entries:
                    await backend.delete_batch(queue_url, entries)
            await backend.get_queue_depth(queue_url)
    built -= len(agents.expected)  # the recorder's own calls
    print(f"requests={len(agents.sent)} user_agents_built={built}")
    assert len(agents.sent) >= 5
    assert agents.sent == agents.expected  # the very header botocore would have sent
    assert all(agent.startswith("aiobotocore/") for agent in agents.sent)
    # botocore builds it twice per request; cached, once per distinct set of feature ids.
    assert built <= len(set(agents.sent))
