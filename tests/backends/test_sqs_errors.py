"""sqs_errors.translate, directly: every throttling code comes back ``throttled``.

The errors are built as the lean transport builds them (its parser on SQS's JSON-protocol
error responses, raised as botocore's ClientError), which is also what botocore's parser
returns (tests/backends/test_sqs_lean.py); the loopback-server tests of
test_sqs_backend.py cover the same translation end to end on both transports.
"""

from __future__ import annotations

import json

import pytest
from botocore import exceptions as boto_errors  # type: ignore[import-untyped]

from aiosqsq.backends.error_codes import THROTTLING_CODES
from aiosqsq.backends.sqs_errors import malformed_response, translate
from aiosqsq.backends.sqs_lean import parse_error
from aiosqsq.errors import AccessError, BackendError, QueueNotFoundError

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


def _client_error(status: int, code: str, *, query_code: str | None = None) -> Exception:
    headers = {"x-amzn-query-error": f"{query_code};Sender"} if query_code else {}
    body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": "forged"}).encode()
    error: Exception = boto_errors.ClientError(parse_error(status, headers, body), "ReceiveMessage")
    return error


@pytest.mark.parametrize("status", [400, 403])
@pytest.mark.parametrize("code", sorted(THROTTLING_CODES))
def test_every_throttling_code_is_throttled_and_retryable(code: str, status: int) -> None:
    error = translate(_client_error(status, code), "ReceiveMessage", QUEUE)
    # a 403 that is throttling (RequestThrottled, OverLimit) is not an access error
    assert (type(error), error.code, error.throttled, error.retryable) == (
        BackendError,
        code,
        True,
        True,
    )
    assert str(error) == f"{code}: sqs:ReceiveMessage on queue {QUEUE!r} failed: forged"


def test_a_throttling_query_code_counts_without_its_prefix() -> None:
    raised = _client_error(400, "Throttled", query_code="AWS.SimpleQueueService.OverLimit")
    error = translate(raised, "ReceiveMessage", QUEUE)
    assert (error.code, error.throttled) == ("AWS.SimpleQueueService.OverLimit", True)


@pytest.mark.parametrize(
    ("status", "code", "kind", "retryable"),
    [
        (500, "InternalError", BackendError, True),
        (503, "ServiceUnavailable", BackendError, True),
        (400, "QueueDeletedRecently", BackendError, True),
        (400, "InvalidParameterValue", BackendError, False),
        (403, "AccessDenied", AccessError, False),
        (400, "ExpiredToken", AccessError, False),
        (400, "QueueDoesNotExist", QueueNotFoundError, False),
    ],
)
def test_other_errors_are_not_throttled(
    status: int, code: str, kind: type[BackendError], retryable: bool
) -> None:
    error = translate(_client_error(status, code), "ReceiveMessage", QUEUE)
    assert (type(error), error.throttled, error.retryable) == (kind, False, retryable)


@pytest.mark.parametrize(
    "raised",
    [
        boto_errors.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        boto_errors.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        boto_errors.CredentialRetrievalError(provider="container-role", error_msg="down"),
    ],
)
def test_network_and_credential_failures_are_retryable_not_throttled(raised: Exception) -> None:
    error = translate(raised, "ReceiveMessage", QUEUE)
    assert (error.retryable, error.throttled) == (True, False)


def test_a_response_that_does_not_parse_is_retryable_not_throttled() -> None:
    error = malformed_response(ValueError("not JSON"), "ReceiveMessage", QUEUE)
    assert (error.code, error.retryable, error.throttled) == ("MalformedResponse", True, False)
    assert str(error) == (
        f"MalformedResponse: sqs:ReceiveMessage on queue {QUEUE!r} failed: the response "
        "could not be parsed (ValueError)"
    )


def test_a_throttled_error_is_retryable() -> None:
    error = BackendError("SlowDown", "Please reduce your request rate.", throttled=True)
    assert (error.throttled, error.retryable) == (True, True)
    assert BackendError("InternalError", "oops", retryable=True).throttled is False
