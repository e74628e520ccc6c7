"""The pointer format and the size attribute, parsed as a consumer must: every malformed
pointer a clear reason that quotes no payload."""

from __future__ import annotations

import json

import pytest

from aiosqsq.backends.base import MessageAttributes, MessageAttributeValue
from aiosqsq.backends.object_store import is_loopback_url
from aiosqsq.codec import PayloadError
from aiosqsq.large_payload import (
    LEGACY_POINTER_CLASS,
    POINTER_CLASS,
    PayloadPointer,
    claimed_size,
    is_pointer_message,
    parse_pointer,
)


def test_the_body_is_the_aws_clients_own() -> None:
    # what amazon-sqs-extended-client 1.0.1 writes: json.dumps of [class, {bucket, key}]
    assert PayloadPointer("b", "k/1").body() == (
        '["software.amazon.payloadoffloading.PayloadS3Pointer", '
        '{"s3BucketName": "b", "s3Key": "k/1"}]'
    )


@pytest.mark.parametrize("pointer_class", [POINTER_CLASS, LEGACY_POINTER_CLASS])
def test_both_pointer_classes_and_compact_json_are_read(pointer_class: str) -> None:
    body = json.dumps([pointer_class, {"s3BucketName": "b", "s3Key": "k"}], separators=(",", ":"))
    assert parse_pointer(body) == PayloadPointer("b", "k")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            '["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": "b", "s3K',
            "large payload: the body is not JSON (truncated?)",
        ),
        (
            '{"s3BucketName": "b", "s3Key": "k"}',
            "large payload: the body is not [class, {s3BucketName, s3Key}]",
        ),
        (
            json.dumps([POINTER_CLASS, {"s3BucketName": 7, "s3Key": "k"}]),
            "large payload: s3BucketName is missing or not a non-empty string",
        ),
        (
            json.dumps([POINTER_CLASS, {"s3BucketName": "b", "s3Key": ["k"]}]),
            "large payload: s3Key is missing or not a non-empty string",
        ),
        (
            json.dumps(["evil\n2026-01-01 INFO forged", {"s3BucketName": "b", "s3Key": "k"}]),
            "large payload: unknown pointer class 'evil\\n2026-01-01 INFO forged': expected "
            f"{POINTER_CLASS} or {LEGACY_POINTER_CLASS}",
        ),
    ],
)
def test_a_malformed_pointer_is_a_bad_payload_with_its_reason(body: str, reason: str) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_pointer(body)
    assert refused.value.error_class == "PayloadPointerError"
    assert refused.value.reason == reason


def test_either_attribute_name_marks_a_pointer() -> None:
    number: MessageAttributeValue = {"DataType": "Number", "StringValue": "12"}
    assert is_pointer_message({"ExtendedPayloadSize": number})
    assert is_pointer_message({"SQSLargePayloadSize": number})
    assert not is_pointer_message({"other": number})
    assert claimed_size({"SQSLargePayloadSize": number}) == 12


@pytest.mark.parametrize("value", ["-1", "1.5", "", "1e9", "9" * 16, "\u00b2", "\u0663"])
def test_a_size_that_is_not_a_whole_number_of_bytes_is_refused(value: str) -> None:
    attributes: MessageAttributes = {
        "ExtendedPayloadSize": {"DataType": "Number", "StringValue": value}
    }
    with pytest.raises(
        PayloadError, match="the ExtendedPayloadSize attribute is not a whole number"
    ):
        claimed_size(attributes)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:5000", True),
        ("http://localhost:4566", True),
        ("http://[::1]:9000", True),
        ("http://127.example.com", False),  # a name, not an address on this machine
        ("https://sqs.eu-west-1.amazonaws.com", False),
    ],
)
def test_only_addresses_on_this_machine_are_loopback(url: str, loopback: bool) -> None:
    """S3's endpoint follows a loopback SQS endpoint (run --local) and nothing else."""
    assert is_loopback_url(url) is loopback
