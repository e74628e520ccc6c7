"""The lean transport speaks SQS exactly as botocore does.

* Requests: one loopback recording server captures the request botocore sends and the one
  the lean transport sends for the same call, with fixed credentials (a session token
  among them), a fixed clock and the same inputs: method, path, Content-Type,
  X-Amz-Target, the query-compatibility header, the JSON body as data, and the signature
  (botocore's signer accepts the lean request's; the lean signer reproduces botocore's).
* Responses: recorded SQS responses parse to what botocore's own JSON parser returns, for
  results, failed batch entries and every error shape.
* Signatures: moto with IAM authentication on accepts the lean transport's requests, with
  long-term keys and with a role's temporary credentials, and refuses a wrong secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore.auth  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
import botocore.session  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.parsers import create_parser  # type: ignore[import-untyped]
from pydantic import SecretStr

from aiosqsq.backends.base import (
    MAX_MESSAGE_BYTES,
    DeleteEntry,
    SendEntry,
    VisibilityEntry,
    message_size,
)
from aiosqsq.backends.sigv4 import SigV4Signer, canonical_headers
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.backends.sqs_config import SQSConfig, Transport
from aiosqsq.backends.sqs_errors import translate
from aiosqsq.backends.sqs_lean import parse_error, parse_response
from aiosqsq.errors import AccessError
from tests.backends.loopback import serve
from tests.moto_server import start_moto_server

KEY_ID = "ASIALEANEQUIVALENCE42"
SECRET = "LeanEquivalenceSecret/0123456789+abcdefGH"
TOKEN = "LeanEquivalenceToken//////////wEaDJ0123456789abcdefghijklmnopqrstuv+Z=="
NOW = dt.datetime(2026, 12, 6, 21, 4, 5, tzinfo=dt.UTC)
AMZ_DATE = "20261206T210405Z"
REGION = "us-east-1"
# Headers botocore adds for its own metrics (a fresh uuid per call): signed, but they
# carry nothing SQS acts on; the lean transport does not send them.
SDK_METRICS_HEADERS = {"amz-sdk-invocation-id", "amz-sdk-request"}


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def signed_headers(self) -> list[str]:
        authorization = self.headers["authorization"]
        return authorization.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")


@dataclass
class RecordingServer:
    """Records every request and answers it with ``{}`` (an empty success)."""

    endpoint_url: str
    requests: list[Captured] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            Captured(
                request.method,
                request.path_qs,
                {name.lower(): value for name, value in request.headers.items()},
                await request.read(),
            )
        )
        return web.Response(body=b"{}", content_type="application/x-amz-json-1.0")


@pytest.fixture
async def recorder() -> AsyncIterator[RecordingServer]:
    server = RecordingServer("")
    async with serve(server.handle, client_max_size=4 * MAX_MESSAGE_BYTES) as url:
        server.endpoint_url = url
        yield server


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW)
    monkeypatch.setattr(SigV4Signer, "timestamp", lambda self: AMZ_DATE)


def _config(endpoint_url: str, transport: Transport, *, secret: str = SECRET) -> SQSConfig:
    return SQSConfig(
        endpoint_url=endpoint_url,
        region=REGION,
        access_key_id=SecretStr(KEY_ID),
        secret_access_key=SecretStr(secret),
        session_token=SecretStr(TOKEN),
        transport=transport,
    )


Call = Callable[[SQSBackend, str], Any]

UNICODE_BODY = 'héllo wörld ☃ 中文 😀 \t\n\r "quoted" \\ back </tag> \u2028 \U0010fffd'
ATTRIBUTES: dict[str, Any] = {
    "trace": {"DataType": "String", "StringValue": "ünïcode ☃"},
    "count": {"DataType": "Number", "StringValue": "-12.5e3"},
    "blob": {"DataType": "Binary", "BinaryValue": bytes(range(256))},
    "zipped": {"DataType": "Binary.gzip", "BinaryValue": b"\x1f\x8b\x08\x00"},
    "kind": {"DataType": "String.custom-type", "StringValue": "order"},
    "price": {"DataType": "Number.float", "StringValue": "9.99"},
}
HANDLES = [f"AQEB{i}x+/ab==Zq{i}/{'h' * 40}+=" for i in range(10)]
# Ten entries filling a batch to within a few bytes of SQS's 1 MiB (SQS's own count).
BIG_BODY = "é" + "x" * (MAX_MESSAGE_BYTES // 10 - 3)
CALLS: dict[str, Call] = {
    "receive": lambda b, q: b.receive(
        q, max_messages=10, wait_time_s=20, visibility_timeout_s=30.5, attempt_id="attempt-1"
    ),
    "receive-plain": lambda b, q: b.receive(q, max_messages=1, wait_time_s=0),
    "delete": lambda b, q: b.delete_batch(
        q, [DeleteEntry(f"d{i}", handle) for i, handle in enumerate(HANDLES)]
    ),
    "visibility": lambda b, q: b.change_visibility_batch(
        q,
        [VisibilityEntry("v0", HANDLES[0], 0), VisibilityEntry("v1", HANDLES[1], 43_199.2)],
    ),
    "send-unicode-attributes": lambda b, q: b.send_batch(
        q,
        [
            SendEntry("u", UNICODE_BODY, message_attributes=ATTRIBUTES),
            SendEntry("later", "delayed", delay_s=900),
        ],
    ),
    "send-fifo": lambda b, q: b.send_batch(
        q,
        [
            SendEntry(f"f{i}", f"ordered-{i}", group_id="group-ä/1", deduplication_id=f"dd-{i}")
            for i in range(3)
        ],
    ),
    "send-1mib": lambda b, q: b.send_batch(q, [SendEntry(f"b{i}", BIG_BODY) for i in range(10)]),
}


async def _capture(recorder: RecordingServer, transport: Transport, call: Call) -> Captured:
    queue_url = f"{recorder.endpoint_url}/123456789012/orders.fifo"
    recorder.requests.clear()
    async with SQSBackend(_config(recorder.endpoint_url, transport)) as backend:
        await call(backend, queue_url)
    [request] = recorder.requests
    return request


def _botocore_signature(request: Captured, url: str) -> str:
    """The Authorization header botocore's SigV4 signer computes for ``request``'s own
    signed headers and body."""
    headers = {n: request.headers[n] for n in request.signed_headers if n != "host"}
    aws_request = AWSRequest(method=request.method, url=url, data=request.body, headers=headers)
    aws_request.context["timestamp"] = request.headers["x-amz-date"]
    signer = botocore.auth.SigV4Auth(Credentials(KEY_ID, SECRET, TOKEN), "sqs", REGION)
    canonical = signer.canonical_request(aws_request)
    signature = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    signer._inject_signature_to_request(aws_request, signature)
    return str(aws_request.headers["Authorization"])


def _lean_signature(request: Captured) -> str:
    """The Authorization header the lean signer computes for ``request``'s own signed
    headers and body."""
    headers = canonical_headers((n, request.headers[n]) for n in request.signed_headers)
    return SigV4Signer(REGION, "sqs").authorization(
        request.method,
        request.path,
        headers,
        hashlib.sha256(request.body).hexdigest(),
        KEY_ID,
        SECRET,
        request.headers["x-amz-date"],
    )


def test_the_big_batch_fills_one_mib() -> None:
    size = sum(message_size(BIG_BODY, {}) for _ in range(10))
    assert MAX_MESSAGE_BYTES - 64 < size <= MAX_MESSAGE_BYTES


# botocore hands aiohttp a 1 MiB body as raw bytes, which aiohttp warns about
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
@pytest.mark.parametrize("name", sorted(CALLS))
async def test_lean_request_is_botocore_s_request(
    recorder: RecordingServer, fixed_clock: None, name: str
) -> None:
    botocore_request = await _capture(recorder, "botocore", CALLS[name])
    lean = await _capture(recorder, "lean", CALLS[name])
    url = f"{recorder.endpoint_url}/"
    print(f"{name}: botocore body {len(botocore_request.body)} B, lean {len(lean.body)} B")

    for header in (
        "content-type",
        "x-amz-target",
        "x-amzn-query-mode",
        "x-amz-date",
        "x-amz-security-token",
        "host",
    ):
        assert lean.headers[header] == botocore_request.headers[header], header
    assert lean.headers["content-type"] == "application/x-amz-json-1.0"
    assert lean.headers["x-amz-target"].startswith("AmazonSQS.")
    assert lean.headers["x-amzn-query-mode"] == "true"
    assert (lean.method, lean.path) == (botocore_request.method, botocore_request.path)
    assert json.loads(lean.body) == json.loads(botocore_request.body)
    assert lean.headers["x-amz-security-token"] == TOKEN
    # the same headers signed, less botocore's per-call metrics ids
    assert lean.signed_headers == [
        h for h in botocore_request.signed_headers if h not in SDK_METRICS_HEADERS
    ]
    # Each signer accepts the other's request: the signature botocore computes over the
    # lean request is the one it carries, and the lean signer reproduces botocore's.
    assert lean.headers["authorization"] == _botocore_signature(lean, url)
    assert _lean_signature(botocore_request) == botocore_request.headers["authorization"]
    assert _lean_signature(lean) == lean.headers["authorization"]


async def test_binary_attributes_go_out_in_base64(
    recorder: RecordingServer, fixed_clock: None
) -> None:
    lean = await _capture(recorder, "lean", CALLS["send-unicode-attributes"])
    [entry, _] = json.loads(lean.body)["Entries"]
    assert entry["MessageBody"] == UNICODE_BODY
    assert base64.b64decode(entry["MessageAttributes"]["blob"]["BinaryValue"]) == bytes(range(256))


async def test_signing_key_is_derived_once_per_day() -> None:
    clock = [NOW.timestamp()]
    signer = SigV4Signer(REGION, "sqs", clock=lambda: clock[0])
    derived: list[str] = []
    original = __import__("aiosqsq.backends.sigv4", fromlist=["signing_key"]).signing_key

    def counting(secret: str, date: str, region: str, service: str) -> bytes:
        derived.append(date)
        return bytes(original(secret, date, region, service))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("aiosqsq.backends.sigv4.signing_key", counting)
        for step in range(0, 3600 * 6, 600):  # six hours of the same day
            clock[0] = NOW.timestamp() + step
            signer.authorization("POST", "/", [], "", KEY_ID, SECRET, signer.timestamp())
        clock[0] = NOW.timestamp() + 86_400
        signer.authorization("POST", "/", [], "", KEY_ID, SECRET, signer.timestamp())
        signer.authorization("POST", "/", [], "", KEY_ID, "rotated", signer.timestamp())
    assert derived == ["20261206", "20261207", "20261207"]


# --- responses ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


RESPONSES: dict[str, tuple[str, dict[str, Any]]] = {
    "receive": (
        "ReceiveMessage",
        {
            "Messages": [
                {
                    "MessageId": "5fea7756-0ea4-451a-a703-a558b933e274",
                    "ReceiptHandle": HANDLES[0],
                    "MD5OfBody": "fafb00f5732ab283681e124bf8747ed1",
                    "Body": UNICODE_BODY,
                    "Attributes": {
                        "ApproximateReceiveCount": "3",
                        "SentTimestamp": "1796590000000",
                        "MessageGroupId": "group-ä/1",
                        "SequenceNumber": "18849496460467696128",
                        "SenderId": "AIDASENDER",
                    },
                    "MD5OfMessageAttributes": "2d8a8fb1d3a1d4a6e1f5b1c1e6c5a0f2",
                    "MessageAttributes": {
                        "trace": {"DataType": "String", "StringValue": "ünïcode ☃"},
                        "blob": {"DataType": "Binary", "BinaryValue": _b64(bytes(range(256)))},
                        "zipped": {"DataType": "Binary.gzip", "BinaryValue": _b64(b"\x1f\x8b")},
                        "price": {"DataType": "Number.float", "StringValue": "9.99"},
                    },
                },
                {"MessageId": "m2", "ReceiptHandle": HANDLES[1], "Body": "", "MD5OfBody": "x"},
            ]
        },
    ),
    "receive-empty": ("ReceiveMessage", {}),
    "delete-partial": (
        "DeleteMessageBatch",
        {
            "Successful": [{"Id": "d0"}],
            "Failed": [
                {
                    "Id": "d1",
                    "SenderFault": True,
                    "Code": "ReceiptHandleIsInvalid",
                    "Message": 'The input receipt handle "x" is not a valid receipt handle.',
                },
                {"Id": "d2", "SenderFault": False, "Code": "InternalError"},
            ],
        },
    ),
    "visibility-partial": (
        "ChangeMessageVisibilityBatch",
        {
            "Successful": [{"Id": "v0"}],
            "Failed": [
                {"Id": "v1", "SenderFault": True, "Code": "MessageNotInflight", "Message": "no"}
            ],
        },
    ),
    "send-partial": (
        "SendMessageBatch",
        {
            "Successful": [
                {
                    "Id": "f0",
                    "MessageId": "id-0",
                    "MD5OfMessageBody": "md5",
                    "MD5OfMessageAttributes": "md5a",
                    "SequenceNumber": "18849496460467696129",
                }
            ],
            "Failed": [
                {
                    "Id": "f1",
                    "SenderFault": True,
                    "Code": "InvalidParameterValue",
                    "Message": "MessageGroupId is missing",
                }
            ],
        },
    ),
}


@pytest.fixture(scope="module")
def sqs_model() -> Any:
    return botocore.session.get_session().get_service_model("sqs")


def _botocore_parse(model: Any, operation: str, status: int, headers: Any, body: bytes) -> Any:
    response = {"status_code": status, "headers": headers, "body": body}
    return create_parser("json").parse(response, model.operation_model(operation).output_shape)


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_responses_parse_as_botocore_parses_them(sqs_model: Any, name: str) -> None:
    operation, document = RESPONSES[name]
    raw = json.dumps(document).encode()
    expected = _botocore_parse(sqs_model, operation, 200, {}, raw)
    del expected["ResponseMetadata"]
    assert parse_response(operation, raw) == expected


QUERY = "x-amzn-query-error"
ERRORS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "json-with-query-code": (
        400,
        {QUERY: "AWS.SimpleQueueService.NonExistentQueue;Sender", "x-amzn-requestid": "r-1"},
        b'{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The queue does not exist."}',
    ),
    "json-without-query-code": (
        400,
        {},
        b'{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The queue does not exist."}',
    ),
    "capital-message": (
        400,
        {},
        b'{"__type":"com.amazon.coral.service#UnrecognizedClientException",'
        b'"Message":"The security token included in the request is invalid."}',
    ),
    "type-with-colon": (
        400,
        {},
        b'{"__type":"InvalidParameterValue:http://internal.amazon.com/coral/","message":"bad"}',
    ),
    "throttled": (
        400,
        {QUERY: "RequestThrottled;Sender"},
        b'{"__type":"com.amazonaws.sqs#RequestThrottled","message":"slow down"}',
    ),
    "malformed-query-header": (
        400,
        {QUERY: "RequestThrottled"},
        b'{"__type":"com.amazonaws.sqs#RequestThrottled","message":"slow down"}',
    ),
    "no-type": (400, {}, b'{"message":"what"}'),
    "access-denied": (
        403,
        {QUERY: "AccessDenied;Sender"},
        b'{"__type":"com.amazon.coral.service#AccessDeniedException","Message":"denied"}',
    ),
    "xml-403 (moto IAM)": (
        403,
        {},
        b'<?xml version="1.0"?><ErrorResponse><Error><Code>AccessDenied</Code>'
        b"<Message>User is not authorized</Message></Error></ErrorResponse>",
    ),
    "text-413": (413, {}, b"Request Entity Too Large"),
    "json-500": (500, {}, b'{"__type":"com.amazonaws.sqs#InternalError","message":"oops"}'),
    "empty-500": (500, {}, b""),
    "html-503": (503, {}, b"<html><body><b>Http/1.1 Service Unavailable</b></body></html>"),
    "list-body": (400, {}, b"[1, 2]"),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_parse_as_botocore_parses_them(sqs_model: Any, name: str) -> None:
    status, headers, raw = ERRORS[name]
    if name == "list-body":
        # botocore's parser fails on a JSON body that is not an object; the lean parser
        # keeps it as the message instead
        parsed = parse_error(status, headers, raw)
        assert parsed["Error"] == {"Code": "400", "Message": "[1, 2]"}
        return
    expected = _botocore_parse(sqs_model, "ReceiveMessage", status, headers, raw)
    assert parse_error(status, headers, raw) == expected


@pytest.mark.parametrize(
    ("name", "throttled"),
    [("throttled", True), ("malformed-query-header", True), ("json-500", False)],
)
def test_parsed_errors_translate_throttling_as_throttled(name: str, throttled: bool) -> None:
    status, headers, raw = ERRORS[name]
    raised = botocore.exceptions.ClientError(parse_error(status, headers, raw), "ReceiveMessage")
    error = translate(raised, "ReceiveMessage", "orders")
    assert (error.throttled, error.retryable) == (throttled, True)


# --- signatures that moto checks ---------------------------------------------------------


@dataclass
class AuthMoto:
    """A moto server of this test's own with IAM authentication on."""

    endpoint_url: str
    key: tuple[str, str]  # an IAM user's access key id and secret
    role: tuple[str, str, str]  # a role's temporary key id, secret and session token
    queue_url: str


ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@pytest.fixture
def auth_moto() -> Iterator[AuthMoto]:
    server = start_moto_server()
    try:
        common = {
            "endpoint_url": server.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        iam = boto3.client("iam", **common)
        iam.create_user(UserName="consumer")
        iam.put_user_policy(
            UserName="consumer", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL)
        )
        key = iam.create_access_key(UserName="consumer")["AccessKey"]
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role_arn = iam.create_role(RoleName="worker", AssumeRolePolicyDocument=json.dumps(trust))[
            "Role"
        ]["Arn"]
        iam.put_role_policy(
            RoleName="worker", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL)
        )
        assumed = boto3.client("sts", **common).assume_role(
            RoleArn=role_arn, RoleSessionName="lean"
        )["Credentials"]
        queue_url = boto3.client("sqs", **common).create_queue(QueueName="signed")["QueueUrl"]
        request = urllib.request.Request(
            f"{server.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        yield AuthMoto(
            server.endpoint_url,
            (key["AccessKeyId"], key["SecretAccessKey"]),
            (assumed["AccessKeyId"], assumed["SecretAccessKey"], assumed["SessionToken"]),
            queue_url,
        )
    finally:
        server.stop()


async def _round_trip(config: SQSConfig, queue_url: str) -> None:
    async with SQSBackend(config) as backend:
        assert backend.config.transport == "lean"
        sent = await backend.send_batch(queue_url, [SendEntry("a", UNICODE_BODY)])
        assert sent.failed == ()
        [message] = await backend.receive(queue_url, max_messages=10, wait_time_s=1)
        assert message.body == UNICODE_BODY
        entries = [VisibilityEntry("v", message.receipt_handle, 5)]
        assert (await backend.change_visibility_batch(queue_url, entries)).failed == ()
        deleted = await backend.delete_batch(queue_url, [DeleteEntry("d", message.receipt_handle)])
        assert deleted.successful == ("d",)
        assert backend._lean is not None  # the calls above went out on the lean transport


async def test_moto_with_authentication_accepts_lean_signatures(auth_moto: AuthMoto) -> None:
    key_id, secret = auth_moto.key
    config = SQSConfig(
        endpoint_url=auth_moto.endpoint_url,
        region=REGION,
        access_key_id=SecretStr(key_id),
        secret_access_key=SecretStr(secret),
        transport="lean",
    )
    await _round_trip(config, auth_moto.queue_url)


async def test_moto_with_authentication_accepts_a_session_token(auth_moto: AuthMoto) -> None:
    key_id, secret, token = auth_moto.role
    config = SQSConfig(
        endpoint_url=auth_moto.endpoint_url,
        region=REGION,
        access_key_id=SecretStr(key_id),
        secret_access_key=SecretStr(secret),
        session_token=SecretStr(token),
        transport="lean",
    )
    await _round_trip(config, auth_moto.queue_url)
    wrong_token = SQSConfig(
        endpoint_url=auth_moto.endpoint_url,
        region=REGION,
        access_key_id=SecretStr(key_id),
        secret_access_key=SecretStr(secret),
        session_token=SecretStr(token[:-4] + "AAA="),
        transport="lean",
    )
    async with SQSBackend(wrong_token) as backend:
        with pytest.raises(AccessError):
            await backend.receive(auth_moto.queue_url, max_messages=1, wait_time_s=0)


@pytest.mark.parametrize("transport", ["lean", "botocore"])
async def test_moto_with_authentication_refuses_a_wrong_secret(
    auth_moto: AuthMoto, transport: Transport
) -> None:
    key_id, secret = auth_moto.key
    config = SQSConfig(
        endpoint_url=auth_moto.endpoint_url,
        region=REGION,
        access_key_id=SecretStr(key_id),
        secret_access_key=SecretStr(secret[:-1] + ("A" if secret[-1] != "A" else "B")),
        transport=transport,
    )
    async with SQSBackend(config) as backend:
        with pytest.raises(AccessError) as caught:
            await backend.receive(auth_moto.queue_url, max_messages=1, wait_time_s=0)
        assert (backend._lean is not None) == (transport == "lean")
    error = caught.value
    # moto answers a bad signature with an XML 403, which both transports read as
    # botocore does: code "403", an authorization failure that stops the worker (exit 5)
    assert (error.code, error.retryable) == ("403", False)
    assert str(error) == (
        f"403: sqs:ReceiveMessage on queue {auth_moto.queue_url!r} was denied (403): allow "
        "sqs:ReceiveMessage on this queue in the caller's IAM policy (and kms:Decrypt for "
        "an SSE-KMS queue)"
    )
    assert secret not in str(error)
