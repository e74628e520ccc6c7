"""Masking secrets in text and in the AWS libraries' log records."""

from __future__ import annotations

import logging

from aiosqsq.redaction import install_log_redaction, scrub

# Sentinel credentials: none of these strings may survive scrubbing (a masked key id,
# first 4 characters, is fine).
KEY_ID = "AKIASENTINELKEYID4242"
SECRET = "SentinelSecretKey/0123456789+abcdefGHIJK"
TOKEN = "SentinelSessionToken//0123456789abcdefghijklmnopqrstuvwxyzTOKEN"


def _assert_no_secret(text: str) -> None:
    for sentinel in (KEY_ID, SECRET, TOKEN, KEY_ID[4:], SECRET[:20], TOKEN[:20]):
        assert sentinel not in text


def test_scrub_masks_key_material() -> None:
    text = (
        f"Authorization=AWS4-HMAC-SHA256 Credential={KEY_ID}/20250101/us-east-1/sqs/"
        f"aws4_request, Signature={'ab' * 32} x-amz-security-token:{TOKEN} "
        f"'X-Amz-Security-Token': b'{TOKEN}' key {KEY_ID} secret {SECRET}"
    )
    scrubbed = scrub(text)
    _assert_no_secret(scrubbed)
    assert "Credential=***/20250101" in scrubbed
    assert "Signature=***" in scrubbed


def test_scrub_keeps_queue_urls_readable_and_masks_their_query_strings() -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-processing-queue-for-eu"
    text = f"queue '{url}' refused; presigned {url}?token={SECRET} then {SECRET}"

    scrubbed = scrub(text)

    _assert_no_secret(scrubbed)
    assert scrubbed.startswith(f"queue '{url}' refused; presigned {url}?token=")
    assert scrubbed.count("***#") == 2  # both secrets masked, the URLs not


def test_scrub_masks_long_tokens_whole_with_a_mark_that_tells_them_apart() -> None:
    handle_a, handle_b = "AQEB" + "a" * 60, "AQEB" + "b" * 60
    session = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD" + "x" * 200
    text = f"secret {SECRET} session {session} handles {handle_a} {handle_b} {handle_a}"

    scrubbed = scrub(text)

    for token in (SECRET, session, handle_a):
        assert token[:6] not in scrubbed  # not even the first characters
    words = scrubbed.split()
    marks = [words[1], words[3], *words[5:]]
    assert [mark[:4] for mark in marks] == ["***#"] * 5
    assert marks[2] == marks[4] != marks[3]  # the same handle, the same mark


def test_scrub_masks_credentials_in_urls_and_keeps_the_host() -> None:
    text = (
        f"proxy https://{KEY_ID}:{SECRET}@proxy.example:3128/x cache "
        "redis://default:hunter2@cache:6379/0 broker amqp://guest:guest@rabbit// "
        "mail ops@example.com"
    )

    scrubbed = scrub(text)

    _assert_no_secret(scrubbed)
    assert "hunter2" not in scrubbed
    assert scrubbed == (
        "proxy https://***@proxy.example:3128/x cache redis://***@cache:6379/0 broker "
        "amqp://***@rabbit// mail ops@example.com"
    )


def test_installed_filter_masks_wire_log_records() -> None:
    logger = logging.getLogger("botocore.endpoint")  # filters go on loggers that exist
    install_log_redaction()
    install_log_redaction()  # idempotent
    record = logger.makeRecord(
        logger.name, logging.DEBUG, __file__, 1, "headers %s", ({"key": KEY_ID},), None
    )

    kept = logger.filter(record)

    assert kept
    assert record.getMessage() == "headers {'key': 'AKIA***'}"
    assert len(logger.filters) == 1


def test_installed_filter_leaves_a_clean_record_untouched() -> None:
    logger = logging.getLogger("botocore.endpoint")
    install_log_redaction()
    record = logger.makeRecord(logger.name, logging.DEBUG, __file__, 1, "sent %d", (3,), None)

    assert logger.filter(record)
    assert (record.msg, record.args) == ("sent %d", (3,))
