"""Envelopes: SNS, EventBridge and S3 bodies taken apart, and hostile ones refused."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore.config  # type: ignore[import-untyped]
import orjson
import pydantic
import pytest

from aiosqsq import envelopes
from aiosqsq.backends.base import MAX_MESSAGE_BYTES
from aiosqsq.codec import Decoder, PayloadError
from aiosqsq.envelopes import (
    UNPARSED,
    EventBridgeMetadata,
    S3Record,
    SNSMessageAttribute,
    SNSMetadata,
    Unwrapped,
    envelope_kind,
    unwrap,
)

DATA = Path(__file__).parent / "data" / "envelopes"


def sample(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_text())


def body_of(name: str) -> str:
    return (DATA / f"{name}.json").read_text()


DELETE = object()


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    document = copy.deepcopy(document)
    target = document
    for part in path[:-1]:
        target = target[part]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


def changed(name: str, path: tuple[Any, ...], value: Any) -> str:
    """The sample ``name`` with the value at ``path`` replaced (or deleted: DELETE)."""
    return json.dumps(replaced(sample(name), path, value))


def bad(kind: envelopes.Envelope, body: str) -> PayloadError:
    with pytest.raises(PayloadError) as raised:
        unwrap(kind, body)
    return raised.value


class Order(pydantic.BaseModel):
    id: int
    sku: str


@dataclass
class SeamDecoder:
    """The codec's Decoder with the seam Unwrapped.payload asks for (``wants_text`` and
    ``validate``), counting which way each payload went."""

    annotation: Any
    calls: list[str] = field(default_factory=list)

    @property
    def wants_text(self) -> bool:
        return self.annotation in (str, bytes)

    def decode(self, body: str, *, max_chars: int = MAX_MESSAGE_BYTES) -> Any:
        self.calls.append("decode")
        return Decoder.for_annotation(self.annotation).decode(body, max_chars=max_chars)

    def validate(self, data: Any) -> Any:
        self.calls.append("validate")
        try:
            return pydantic.TypeAdapter(self.annotation).validate_python(data)
        except pydantic.ValidationError:
            raise PayloadError("ValidationError", "invalid") from None


# --- SNS -------------------------------------------------------------------------------


def test_sns_notification_gives_its_message_and_metadata() -> None:
    unwrapped = unwrap("sns", body_of("sns_notification"))
    assert unwrapped.body == '{"id": 1, "sku": "A-1"}'
    assert unwrapped.data is UNPARSED  # the codec parses the Message, once
    assert unwrapped.records == ()
    assert not unwrapped.is_test_event
    assert unwrapped.metadata == SNSMetadata(
        type="Notification",
        message_id="22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        topic_arn="arn:aws:sns:us-west-2:123456789012:MyTopic",
        subject="Order placed",
        timestamp=datetime(2012, 5, 2, 0, 54, 6, 655000, tzinfo=UTC),
        message_attributes={
            "tenant": SNSMessageAttribute("String", "acme"),
            "priority": SNSMessageAttribute("Number", "5"),
            "thumbnail": SNSMessageAttribute("Binary", "iVBORw0KGgo="),
        },
    )


def test_sns_payload_is_decoded_from_the_message() -> None:
    decoder = SeamDecoder(Order)
    assert unwrap("sns", body_of("sns_notification")).payload(decoder) == Order(id=1, sku="A-1")
    assert decoder.calls == ["decode"]


def test_sns_subject_and_attributes_are_optional() -> None:
    notification = sample("sns_notification")
    del notification["Subject"], notification["MessageAttributes"]
    metadata = unwrap("sns", json.dumps(notification)).metadata
    assert isinstance(metadata, SNSMetadata)
    assert metadata.subject is None
    assert metadata.message_attributes == {}
    notification["Subject"] = None  # as some SDKs write it
    metadata = unwrap("sns", json.dumps(notification)).metadata
    assert isinstance(metadata, SNSMetadata)
    assert metadata.subject is None


@pytest.mark.parametrize("body", ['{"id": 1, "sku": "A-1"}', '{"Type": "Notification"}', "[1]"])
def test_sns_raw_delivery_of_json_passes_through_parsed_once(body: str) -> None:
    unwrapped = unwrap("sns", body)
    assert unwrapped.metadata is None
    assert unwrapped.body == body
    assert unwrapped.data == orjson.loads(body)
    decoder = SeamDecoder(Any)
    assert unwrapped.payload(decoder) == orjson.loads(body)
    assert decoder.calls == ["validate"]  # the envelope's parse is reused


@pytest.mark.parametrize("body", ["plain text", "", "{not json", "[" * 2000])
def test_sns_raw_delivery_of_text_passes_through(body: str) -> None:
    unwrapped = unwrap("sns", body)
    assert unwrapped.metadata is None
    assert unwrapped.body == body
    assert unwrapped.data is UNPARSED
    assert unwrapped.payload(SeamDecoder(str)) == body


def test_raw_delivery_and_notification_give_the_same_payload() -> None:
    raw = '{"id": 1, "sku": "A-1"}'
    for body in (raw, body_of("sns_notification")):
        assert unwrap("sns", body).payload(SeamDecoder(Order)) == Order(id=1, sku="A-1")
        assert unwrap("sns", body).payload(SeamDecoder(str)) == raw


def test_sns_confirmations_are_bad_payloads_saying_what_to_do() -> None:
    error = bad("sns", body_of("sns_subscription_confirmation"))
    assert error.error_class == "EnvelopeError"
    assert error.reason == (
        "SNS envelope: Type is SubscriptionConfirmation, not Notification: the subscription "
        "awaits confirmation: open the SubscribeURL in this message's body, or subscribe "
        "the queue from the topic owner's account"
    )
    unsubscribe = sample("sns_subscription_confirmation") | {"Type": "UnsubscribeConfirmation"}
    assert bad("sns", json.dumps(unsubscribe)).reason == (
        "SNS envelope: Type is UnsubscribeConfirmation, not Notification: the subscription "
        "was deleted; there is nothing to process"
    )


@pytest.mark.parametrize(
    ("field_name", "value", "reason"),
    [
        ("Message", DELETE, "SNS envelope: missing field 'Message'"),
        ("Message", {"id": 1}, "SNS envelope: field 'Message' must be a string, got an object"),
        ("MessageId", DELETE, "SNS envelope: missing field 'MessageId'"),
        ("TopicArn", 7, "SNS envelope: field 'TopicArn' must be a string, got an integer"),
        ("Subject", ["x"], "SNS envelope: field 'Subject' must be a string, got an array"),
        ("Timestamp", "SECRET", "SNS envelope: field 'Timestamp' is not an ISO 8601 time"),
        ("Timestamp", DELETE, "SNS envelope: missing field 'Timestamp'"),
        (
            "MessageAttributes",
            [],
            "SNS envelope: field 'MessageAttributes' must be an object, got an array",
        ),
        (
            "MessageAttributes",
            {"a": "SECRET"},
            "SNS envelope: a MessageAttributes entry must be an object, got a string",
        ),
        (
            "MessageAttributes",
            {"a": {"Type": "String"}},
            "SNS envelope: a MessageAttributes entry: missing field 'Value'",
        ),
    ],
)
def test_sns_notification_fields_are_checked(field_name: str, value: Any, reason: str) -> None:
    error = bad("sns", changed("sns_notification", (field_name,), value))
    assert (error.error_class, error.reason) == ("EnvelopeError", reason)


def test_sns_timestamp_without_offset_is_utc() -> None:
    notification = sample("sns_notification") | {"Timestamp": "2012-05-02T00:54:06"}
    metadata = unwrap("sns", json.dumps(notification)).metadata
    assert isinstance(metadata, SNSMetadata)
    assert metadata.timestamp == datetime(2012, 5, 2, 0, 54, 6, tzinfo=UTC)


# --- EventBridge ---------------------------------------------------------------------


def test_eventbridge_gives_detail_and_metadata() -> None:
    unwrapped = unwrap("eventbridge", body_of("eventbridge_event"))
    assert unwrapped.data == {"id": 1, "sku": "A-1"}
    assert unwrapped.body == '{"id":1,"sku":"A-1"}'
    assert unwrapped.metadata == EventBridgeMetadata(
        source="com.example.orders",
        detail_type="Order Placed",
        id="6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        time=datetime(2017, 12, 22, 18, 43, 48, tzinfo=UTC),
        account="111122223333",
        region="us-west-1",
        resources=("arn:aws:dynamodb:us-west-1:111122223333:table/orders",),
    )


def test_eventbridge_payload_is_validated_without_a_second_parse() -> None:
    unwrapped = unwrap("eventbridge", body_of("eventbridge_event"))
    decoder = SeamDecoder(Order)
    assert unwrapped.payload(decoder) == Order(id=1, sku="A-1")
    assert decoder.calls == ["validate"]
    text = SeamDecoder(str)
    assert unwrapped.payload(text) == '{"id":1,"sku":"A-1"}'
    assert text.calls == ["decode"]


@pytest.mark.parametrize(
    ("field_name", "value", "reason"),
    [
        ("detail-type", DELETE, "EventBridge envelope: missing field 'detail-type'"),
        ("source", DELETE, "EventBridge envelope: missing field 'source'"),
        ("detail", DELETE, "EventBridge envelope: missing field 'detail'"),
        ("detail", [1], "EventBridge envelope: field 'detail' must be an object, got an array"),
        ("detail", "{}", "EventBridge envelope: field 'detail' must be an object, got a string"),
        ("time", "yesterday", "EventBridge envelope: field 'time' is not an ISO 8601 time"),
        (
            "resources",
            [1],
            "EventBridge envelope: a resources entry must be a string, got an integer",
        ),
        (
            "account",
            111122223333,
            "EventBridge envelope: field 'account' must be a string, got an integer",
        ),
    ],
)
def test_eventbridge_fields_are_checked(field_name: str, value: Any, reason: str) -> None:
    error = bad("eventbridge", changed("eventbridge_event", (field_name,), value))
    assert (error.error_class, error.reason) == ("EnvelopeError", reason)


def test_eventbridge_body_must_be_a_json_object() -> None:
    error = bad("eventbridge", "SECRET not json")
    assert error.error_class == "JSONDecodeError"
    assert error.reason.startswith("EventBridge envelope: unexpected character")
    assert bad("eventbridge", "[]").reason == "EventBridge envelope must be an object, got an array"


def test_eventbridge_detail_too_deep_for_text_is_a_bad_payload_only_as_text() -> None:
    deep = '{"detail-type": "x", "source": "s", "id": "i", "time": "2021-11-12T00:00:00Z", '
    deep += '"account": "1", "region": "r", "resources": [], '
    deep += '"detail": {"a": ' + "[" * 500 + "]" * 500 + "}}"
    unwrapped = unwrap("eventbridge", deep)
    assert unwrapped.payload(SeamDecoder(Any)) == unwrapped.data  # as data: fine
    with pytest.raises(PayloadError) as raised:
        unwrapped.payload(SeamDecoder(str))
    assert (
        raised.value.reason == "EventBridge envelope: the payload nests too deeply to use as text"
    )


# --- S3 --------------------------------------------------------------------------------

PUT = S3Record(
    bucket="amzn-s3-demo-bucket",
    key="my folder/café.txt",
    size=1024,
    etag="d41d8cd98f00b204e9800998ecf8427e",
    event_name="ObjectCreated:Put",
    event_time=datetime(2026, 12, 6, 14, 3, 40, 532000, tzinfo=UTC),
    sequencer="0055AED6DCD90281E5",
    version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko",
    region="us-west-2",
)


def test_s3_notification_gives_records_with_keys_decoded() -> None:
    unwrapped = unwrap("s3", body_of("s3_put"))
    assert unwrapped.records == (PUT,)
    assert unwrapped.metadata is None
    assert unwrapped.body is None
    assert not unwrapped.is_test_event


def test_s3_deletion_has_no_size_etag_or_version() -> None:
    (record,) = unwrap("s3", body_of("s3_delete")).records
    assert record == S3Record(
        bucket="amzn-s3-demo-bucket",
        key="reports/2026 Q4.csv",
        size=None,
        etag=None,
        event_name="ObjectRemoved:Delete",
        event_time=datetime(2026, 12, 6, 14, 5, 1, 4000, tzinfo=UTC),
        sequencer="0055AED6DCD9028A11",
        version_id=None,
        region="us-west-2",
    )


@pytest.mark.parametrize(
    ("encoded", "key"),
    [("a%2Bb+c", "a+b c"), ("%E2%82%AC%20100", "€ 100"), ("100%", "100%"), ("x%zz", "x%zz")],
)
def test_s3_keys_are_form_decoded(encoded: str, key: str) -> None:
    notification = sample("s3_put")
    notification["Records"][0]["s3"]["object"]["key"] = encoded
    assert unwrap("s3", json.dumps(notification)).records[0].key == key


def test_s3_test_event_has_no_records() -> None:
    unwrapped = unwrap("s3", body_of("s3_test_event"))
    assert unwrapped.is_test_event
    assert unwrapped.records == ()
    assert unwrapped.metadata is None


def test_s3_through_sns_gives_the_same_records_and_sns_metadata() -> None:
    unwrapped = unwrap("s3", body_of("sns_s3_put"))
    assert unwrapped.records == (PUT,)
    assert isinstance(unwrapped.metadata, SNSMetadata)
    assert unwrapped.metadata.topic_arn == "arn:aws:sns:us-west-2:123456789012:bucket-events"
    assert unwrapped.metadata.subject == "Amazon S3 Notification"
    test_event = unwrap("s3", body_of("sns_s3_test_event"))
    assert test_event.is_test_event
    assert isinstance(test_event.metadata, SNSMetadata)


def test_s3_through_eventbridge_gives_one_record_key_as_is() -> None:
    unwrapped = unwrap("s3", body_of("s3_eventbridge_created"))
    assert isinstance(unwrapped.metadata, EventBridgeMetadata)
    assert unwrapped.metadata.id == "17793124-05d4-b198-2fde-7ededc63b103"
    assert unwrapped.records == (
        S3Record(
            bucket="amzn-s3-demo-bucket1",
            key="my folder/café+1.txt",  # EventBridge does not URL-encode keys
            size=5,
            etag="b1946ac92492d2347c6235b4d2611184",
            event_name="Object Created",
            event_time=datetime(2021, 11, 12, tzinfo=UTC),
            sequencer="617f08299329d189",
            version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
            region="ca-central-1",
            reason="PutObject",
        ),
    )
    (deleted,) = unwrap("s3", body_of("s3_eventbridge_deleted")).records
    assert (deleted.event_name, deleted.reason, deleted.size, deleted.etag) == (
        "Object Deleted",
        "DeleteObject",
        None,
        None,
    )


def test_s3_records_are_not_capped_in_number() -> None:
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-12-06T14:03:40Z",
        "awsRegion": "us-west-2",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "k%20"}},
    }
    item = orjson.dumps(record).decode()
    count = (1_048_576 - 20) // (len(item) + 1)  # as many as one SQS message holds
    unwrapped = unwrap("s3", '{"Records": [' + ",".join([item] * count) + "]}")
    assert count > 6000
    assert len(unwrapped.records) == count
    assert unwrapped.records[-1].key == "k "
    assert unwrap("s3", '{"Records": []}').records == ()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"Records": {}}', "S3 notification: field 'Records' must be an array, got an object"),
        ('{"Records": [5]}', "S3 notification: Records[0] must be an object, got an integer"),
        (
            changed("s3_put", ("Records", 0, "eventSource"), "aws:sqs"),
            "S3 notification: Records[0]: field 'eventSource' must be 'aws:s3'",
        ),
        (
            changed("s3_put", ("Records", 0, "s3", "object", "key"), "caf%C3.txt"),
            "S3 notification: Records[0].s3.object: field 'key' is not URL-encoded UTF-8",
        ),
        (
            changed("s3_put", ("Records", 0, "s3", "object", "key"), DELETE),
            "S3 notification: Records[0].s3.object: missing field 'key'",
        ),
        (
            changed("s3_put", ("Records", 0, "s3", "object", "size"), -1),
            "S3 notification: Records[0].s3.object: field 'size' must not be negative",
        ),
        (
            changed("s3_put", ("Records", 0, "s3", "object", "size"), True),
            "S3 notification: Records[0].s3.object: field 'size' must be an integer, got a boolean",
        ),
        (
            changed("s3_put", ("Records", 0, "s3", "bucket", "name"), DELETE),
            "S3 notification: Records[0].s3.bucket: missing field 'name'",
        ),
        (
            changed("s3_put", ("Records", 0, "eventTime"), "SECRET"),
            "S3 notification: Records[0]: field 'eventTime' is not an ISO 8601 time",
        ),
        (
            body_of("eventbridge_event"),
            "S3 event via EventBridge: field 'source' must be 'aws.s3'",
        ),
        (
            '{"Event": "s3:ObjectCreated"}',
            "S3 notification: expected 'Records', an s3:TestEvent, or an EventBridge event "
            "from aws.s3",
        ),
        ("[]", "S3 notification must be an object, got an array"),
    ],
)
def test_s3_shapes_are_checked(body: str, reason: str) -> None:
    error = bad("s3", body)
    assert (error.error_class, error.reason) == ("EnvelopeError", reason)


def test_s3_eventbridge_detail_is_checked() -> None:
    event = sample("s3_eventbridge_created")
    del event["detail"]["object"]["key"]
    assert bad("s3", json.dumps(event)).reason == (
        "S3 event via EventBridge: detail.object: missing field 'key'"
    )


def test_s3_sns_message_must_be_json() -> None:
    notification = sample("sns_s3_put") | {"Message": "SECRET not json"}
    error = bad("s3", json.dumps(notification))
    assert error.error_class == "JSONDecodeError"
    assert error.reason.startswith("S3 notification in the SNS Message: unexpected character")


# --- every envelope ------------------------------------------------------------------


def test_envelope_kind_is_checked_once() -> None:
    assert envelope_kind("sns") == "sns"
    with pytest.raises(
        ValueError, match=r"^unknown envelope 'SNS': use one of 'sns', 'eventbridge', 's3'$"
    ):
        envelope_kind("SNS")
    with pytest.raises(ValueError, match=r"^unknown envelope 'kafka'"):
        unwrap("kafka", "{}")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", envelopes.ENVELOPES)
def test_bodies_past_sqs_limit_are_refused_before_parsing(kind: envelopes.Envelope) -> None:
    error = bad(kind, " " * 1_048_577)
    assert (error.error_class, error.reason) == ("PayloadTooLarge", "body of 1048577 characters")


def test_an_unforeseen_failure_is_still_a_bad_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    def unforeseen(notification: Any) -> Any:
        raise RecursionError("SECRET")

    monkeypatch.setattr(envelopes.s3, "read_records", unforeseen)
    error = bad("s3", body_of("s3_put"))
    assert (error.error_class, error.reason) == (
        "EnvelopeError",
        "S3 notification: malformed (RecursionError)",
    )


def test_repr_shows_no_payload() -> None:
    text = repr(unwrap("sns", '{"card": "SECRET"}'))
    assert "SECRET" not in text
    assert text.startswith("Unwrapped(kind='sns', metadata=None")


def test_payload_of_s3_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="an s3 envelope has records, not a payload"):
        unwrap("s3", body_of("s3_put")).payload(SeamDecoder(Any))


# --- hostile bodies: only PayloadError, never the body's text in the reason ---------

DEEP_TOKEN = "[" * 2000 + "]" * 2000  # past orjson's 1024 levels
SOMEWHAT_DEEP_TOKEN = "[" * 300 + "]" * 300  # parses; too deep for orjson to serialise
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    "",
    "SECRET",
    "SECRET%FF%FE+",
    "SECRET\n\x1b[31m",
    "9999-99-99TSECRET",
    [],
    ["SECRET"],
    [{"SECRET": 1}],
    {},
    {"SECRET": "SECRET"},
    "@BIG@",
    "@SURROGATE@",
    "@DEEP@",
    "@SOMEWHAT_DEEP@",
]
TOKENS = {
    '"@BIG@"': "123456789012345678901234567890",
    '"@SURROGATE@"': '"\\ud800SECRET"',
    '"@DEEP@"': DEEP_TOKEN,
    '"@SOMEWHAT_DEEP@"': SOMEWHAT_DEEP_TOKEN,
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into ``value`` (keys and indices), the root included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def to_body(document: Any) -> str:
    text = json.dumps(document, ensure_ascii=False)
    for token, replacement in TOKENS.items():
        text = text.replace(token, replacement)
    return text


def mutations(document: Any) -> Iterator[str]:
    for path in paths(document):
        for value in [*HOSTILE_VALUES, *([DELETE] if path else [])]:
            yield to_body(replaced(document, path, value))


def sns_around(message: str) -> str:
    return json.dumps(sample("sns_s3_put") | {"Message": message})


def assert_only_payload_errors(body: str) -> int:
    """Unwrap ``body`` with each envelope; any exception but PayloadError fails the test,
    and so does a reason quoting the body."""
    reasons = []
    for kind in envelopes.ENVELOPES:
        try:
            unwrapped = unwrap(kind, body)
            assert isinstance(unwrapped, Unwrapped)
            unwrapped.body  # noqa: B018 - serialising the payload may fail too, the same way
        except PayloadError as exc:
            reasons.append(str(exc))
    for reason in reasons:
        assert "SECRET" not in reason
        assert "\x1b" not in reason
    return len(reasons)


@pytest.mark.parametrize(
    "name",
    [
        "sns_notification",
        "sns_subscription_confirmation",
        "eventbridge_event",
        "s3_put",
        "s3_delete",
        "s3_test_event",
        "s3_eventbridge_created",
        "s3_eventbridge_deleted",
        "sns_s3_put",
    ],
)
def test_hostile_variants_of_every_sample_raise_only_payload_error(name: str) -> None:
    refused = sum(assert_only_payload_errors(body) for body in mutations(sample(name)))
    assert refused > 100  # the corpus does reach the checks


def test_hostile_s3_notifications_inside_sns_raise_only_payload_error() -> None:
    bodies = (sns_around(body) for body in mutations(sample("s3_put")))
    assert sum(assert_only_payload_errors(body) for body in bodies) > 100


@pytest.mark.parametrize(
    "body",
    [
        "",
        "null",
        "SECRET",
        "\ud800SECRET",
        '"\\ud800SECRET"',
        "1e400",
        "-" + "9" * 5000,
        DEEP_TOKEN,
        '{"Records": ' + DEEP_TOKEN + "}",
        '{"Records": "SECRET"}',
        '{"Records": null}',
        '{"a": 1, "a": 2}',
        '{"Type": "Notification", "TopicArn": "x"}',
        '{"Type": "SubscriptionConfirmation", "TopicArn": []}',
        '{"Type": ["Notification"], "TopicArn": "x", "Message": "SECRET"}',
        '{"Type": {"SECRET": 1}, "TopicArn": "x"}',
        '{"detail-type": "x"}',
        '{"Event": "s3:TestEvent", "Records": 1}',
        sns_around(DEEP_TOKEN),
        sns_around('{"Type": "Notification", "TopicArn": "x", "Message": "{}"}'),
        sns_around("[" * 300 + "]" * 300),
    ],
)
def test_hostile_bodies_raise_only_payload_error(body: str) -> None:
    assert_only_payload_errors(body)


# --- bodies as AWS services deliver them (moto's SNS and S3, on 127.0.0.1) -----------
# moto's EventBridge writes an S3 event's "time" as a Unix number where EventBridge
# writes ISO 8601, so the EventBridge shapes are tested on the documented samples only.


@pytest.fixture
def aws(moto_endpoint: str) -> Callable[[str], Any]:
    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=moto_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=botocore.config.Config(s3={"addressing_style": "path"}),
        )

    return client


@pytest.fixture
def queue(aws: Callable[[str], Any]) -> Iterator[tuple[str, str]]:
    """A fresh queue's URL and ARN (moto lets SNS and S3 send to it without a policy)."""
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName=f"envelopes-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    try:
        yield url, arn["QueueArn"]
    finally:
        sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def topic(aws: Callable[[str], Any]) -> Iterator[str]:
    sns_client = aws("sns")
    arn = sns_client.create_topic(Name=f"envelopes-{uuid.uuid4().hex[:12]}")["TopicArn"]
    try:
        yield arn
    finally:
        sns_client.delete_topic(TopicArn=arn)


@pytest.fixture
def bucket(aws: Callable[[str], Any]) -> Iterator[str]:
    s3_client = aws("s3")
    name = f"envelopes-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        for item in s3_client.list_objects_v2(Bucket=name).get("Contents", []):
            s3_client.delete_object(Bucket=name, Key=item["Key"])
        s3_client.delete_bucket(Bucket=name)


def received(aws: Callable[[str], Any], url: str, count: int) -> list[str]:
    """The next ``count`` bodies on the queue, deleted (moto delivers synchronously)."""
    sqs = aws("sqs")
    bodies: list[str] = []
    for _ in range(10):
        if len(bodies) >= count:
            break
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert len(bodies) == count
    return bodies


def test_sns_delivery_with_and_without_raw_delivery(
    aws: Callable[[str], Any], queue: tuple[str, str], topic: str
) -> None:
    url, queue_arn = queue
    sns_client = aws("sns")
    subscription = sns_client.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    attributes = {"tenant": {"DataType": "String", "StringValue": "acme"}}
    order = '{"id": 1, "sku": "A-1"}'
    sns_client.publish(
        TopicArn=topic, Message=order, Subject="Order placed", MessageAttributes=attributes
    )
    (wrapped,) = received(aws, url, 1)
    unwrapped = unwrap("sns", wrapped)
    assert unwrapped.payload(SeamDecoder(Order)) == Order(id=1, sku="A-1")
    assert isinstance(unwrapped.metadata, SNSMetadata)
    assert (unwrapped.metadata.topic_arn, unwrapped.metadata.subject) == (topic, "Order placed")
    assert unwrapped.metadata.message_attributes == {
        "tenant": SNSMessageAttribute("String", "acme")
    }
    assert unwrapped.metadata.timestamp.tzinfo is not None

    sns_client.set_subscription_attributes(
        SubscriptionArn=subscription["SubscriptionArn"],
        AttributeName="RawMessageDelivery",
        AttributeValue="true",
    )
    sns_client.publish(TopicArn=topic, Message=order, MessageAttributes=attributes)
    (raw,) = received(aws, url, 1)
    assert raw == order
    unwrapped = unwrap("sns", raw)
    assert unwrapped.metadata is None
    assert unwrapped.payload(SeamDecoder(Order)) == Order(id=1, sku="A-1")


def notified(
    aws: Callable[[str], Any], url: str, bucket: str, config: dict[str, Any], key: str, data: bytes
) -> tuple[Unwrapped, Unwrapped]:
    """Configure ``bucket``'s notifications, put one object, and unwrap what reached the
    queue: the s3:TestEvent and the object's notification."""
    s3_client = aws("s3")
    s3_client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    s3_client.put_object(Bucket=bucket, Key=key, Body=data)
    test_event, created = sorted(
        (unwrap("s3", body) for body in received(aws, url, 2)),
        key=lambda unwrapped: not unwrapped.is_test_event,  # a standard queue keeps no order
    )
    assert test_event.is_test_event
    assert test_event.records == ()
    return test_event, created


def test_s3_notifications_sent_to_the_queue(
    aws: Callable[[str], Any], queue: tuple[str, str], bucket: str
) -> None:
    url, queue_arn = queue
    events = {"QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]}
    _, created = notified(aws, url, bucket, events, "my folder/café+1.txt", b"hello")
    assert created.metadata is None
    (record,) = created.records
    assert (record.bucket, record.key, record.size) == (bucket, "my folder/café+1.txt", 5)
    assert (record.event_name, record.etag) == (
        "ObjectCreated:Put",
        hashlib.md5(b"hello").hexdigest(),
    )


def test_s3_notifications_through_sns(
    aws: Callable[[str], Any], queue: tuple[str, str], topic: str, bucket: str
) -> None:
    url, queue_arn = queue
    aws("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    events = {"TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]}
    test_event, created = notified(aws, url, bucket, events, "a%b/ü.txt", b"")
    for unwrapped in (test_event, created):
        assert isinstance(unwrapped.metadata, SNSMetadata)
        assert unwrapped.metadata.topic_arn == topic
    assert [(r.bucket, r.key, r.size) for r in created.records] == [(bucket, "a%b/ü.txt", 0)]
