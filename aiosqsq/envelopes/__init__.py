"""Envelopes: the wrappers AWS services put around a message before it reaches SQS.

``unwrap(kind, body)`` takes an SQS body apart, once per message, and returns an
:class:`Unwrapped`: the inner payload (as text and, when already parsed, as data), typed
metadata about the wrapper, and for S3 the object records.

* ``"sns"``: an SNS notification; the payload is its ``Message``. A body SNS did not
  wrap (raw message delivery) is the payload as it is, with no metadata, so switching
  raw delivery on or off breaks no consumer.
* ``"eventbridge"``: an EventBridge event; the payload is its ``detail`` object.
* ``"s3"``: S3 event notifications sent directly, through SNS, or through EventBridge:
  ``records`` holds one :class:`S3Record` per object; ``is_test_event`` marks the
  ``s3:TestEvent`` S3 sends when notifications are configured (no records).

A body that does not match its envelope raises :class:`~aiosqsq.codec.PayloadError`
(and nothing else, whatever the body holds), with a reason that names the field and
never quotes the body: the engine dead-letters such a message like any undecodable one.
Each layer is parsed once, by orjson.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, cast, get_args

import orjson

from aiosqsq.backends.base import MAX_MESSAGE_BYTES
from aiosqsq.codec import PayloadError
from aiosqsq.envelopes import eventbridge, s3, sns
from aiosqsq.envelopes.eventbridge import EventBridgeMetadata
from aiosqsq.envelopes.fields import ENVELOPE_ERROR, expect, parse_json
from aiosqsq.envelopes.s3 import S3Record
from aiosqsq.envelopes.sns import SNSMessageAttribute, SNSMetadata

__all__ = [
    "ENVELOPES",
    "UNPARSED",
    "Envelope",
    "EnvelopeMetadata",
    "EventBridgeMetadata",
    "PayloadDecoder",
    "S3Record",
    "SNSMessageAttribute",
    "SNSMetadata",
    "Unwrapped",
    "envelope_kind",
    "unwrap",
]

Envelope = Literal["sns", "eventbridge", "s3"]
ENVELOPES: Final[tuple[Envelope, ...]] = get_args(Envelope)
EnvelopeMetadata = SNSMetadata | EventBridgeMetadata


class _Unparsed(enum.Enum):
    UNPARSED = "UNPARSED"


UNPARSED: Final = _Unparsed.UNPARSED
"""``Unwrapped.data`` when the inner payload was not parsed (its text is in ``body``)."""


class PayloadDecoder(Protocol):
    """What :meth:`Unwrapped.payload` needs of a decoder (``aiosqsq.codec.Decoder``)."""

    @property
    def wants_text(self) -> bool:
        """True when the payload is the text itself (``str``/``bytes`` annotations)."""
        ...

    def decode(self, body: str, *, max_chars: int = ...) -> Any:
        """The payload from text, refused past ``max_chars``; raises PayloadError."""
        ...

    def validate(self, data: Any) -> Any:
        """The payload from JSON data already parsed; raises PayloadError."""
        ...


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """What an envelope held.

    ``metadata`` is the wrapper's (None for a raw-delivered SNS body or an S3
    notification sent directly); ``data`` is the inner payload already parsed, or
    :data:`UNPARSED`; ``records`` and ``is_test_event`` are for the ``s3`` envelope.
    Neither the payload's text nor its data appear in the ``repr``.
    """

    kind: Envelope
    metadata: EnvelopeMetadata | None
    data: Any = field(default=UNPARSED, repr=False)
    records: tuple[S3Record, ...] = ()
    is_test_event: bool = False
    _text: str | None = field(default=None, repr=False)

    @property
    def body(self) -> str | None:
        """The inner payload as text (None for ``s3``, whose payload is ``records``).

        For ``eventbridge``, ``detail`` serialised again (compact JSON); raises
        :class:`PayloadError` if it nests too deeply to serialise (past 254 levels).
        """
        if self._text is not None or self.data is UNPARSED:
            return self._text
        try:
            return orjson.dumps(self.data).decode()
        except orjson.JSONEncodeError:
            raise PayloadError(
                ENVELOPE_ERROR, f"{_NAMES[self.kind]}: the payload nests too deeply to use as text"
            ) from None

    def payload(self, decoder: PayloadDecoder, max_chars: int = MAX_MESSAGE_BYTES) -> Any:
        """The handler's payload: the parsed data validated, without parsing it again,
        or the text decoded (refused past ``max_chars``). Raises :class:`PayloadError`;
        ``ValueError`` for ``s3``."""
        if self.data is UNPARSED or decoder.wants_text:
            body = self.body
            if body is None:
                raise ValueError("an s3 envelope has records, not a payload")
            return decoder.decode(body, max_chars=max_chars)
        return decoder.validate(self.data)


def envelope_kind(name: str) -> Envelope:
    """``name`` as an :data:`Envelope`, checked once when a handler is registered.

    Raises ``ValueError`` naming the envelopes there are.
    """
    if name not in _UNWRAPPERS:
        raise ValueError(
            f"unknown envelope {name!r}: use one of " + ", ".join(repr(k) for k in ENVELOPES)
        )
    return cast(Envelope, name)


def unwrap(kind: Envelope, body: str, *, max_chars: int = MAX_MESSAGE_BYTES) -> Unwrapped:
    """Take ``body`` out of its ``kind`` envelope. ``max_chars`` is more than SQS's limit
    only for a body fetched from S3 (:mod:`aiosqsq.large_payload`).

    Raises :class:`PayloadError` when the body does not match the envelope (and only
    that, whatever the body holds) or is longer than ``max_chars``; ``ValueError`` for an
    unknown ``kind``.
    """
    unwrapper = _UNWRAPPERS[envelope_kind(kind)]
    try:
        if len(body) > max_chars:  # SQS never delivers more; refuse before parsing
            raise PayloadError("PayloadTooLarge", f"body of {len(body)} characters")
        return unwrapper(body)
    except PayloadError:
        raise
    except Exception as exc:  # a shape no check foresaw is still a bad body, never a crash
        raise PayloadError(
            ENVELOPE_ERROR, f"{_NAMES[kind]}: malformed ({type(exc).__name__})"
        ) from None


def _unwrap_sns(body: str) -> Unwrapped:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:  # raw delivery of a body that is not JSON
        return Unwrapped("sns", None, _text=body)
    if not sns.is_sns_envelope(data):  # raw delivery: keep the parse for the codec
        return Unwrapped("sns", None, data=data, _text=body)
    metadata, message = sns.read_notification(data)
    return Unwrapped("sns", metadata, _text=message)


def _unwrap_eventbridge(body: str) -> Unwrapped:
    metadata, detail = eventbridge.read_event(parse_json(body, eventbridge.WHERE))
    return Unwrapped("eventbridge", metadata, data=detail)


def _unwrap_s3(body: str) -> Unwrapped:
    data = parse_json(body, s3.WHERE)
    metadata: EnvelopeMetadata | None = None
    if sns.is_sns_envelope(data):
        metadata, message = sns.read_notification(data)
        data = parse_json(message, f"{s3.WHERE} in the SNS Message")
    notification = expect(data, dict, s3.WHERE)
    if "Records" in notification:
        return Unwrapped("s3", metadata, records=s3.read_records(notification))
    if s3.is_test_event(notification):
        return Unwrapped("s3", metadata, is_test_event=True)
    if metadata is None and "detail-type" in notification:
        metadata, record = s3.read_eventbridge_record(notification)
        return Unwrapped("s3", metadata, records=(record,))
    raise PayloadError(
        ENVELOPE_ERROR,
        f"{s3.WHERE}: expected 'Records', an s3:TestEvent, or an EventBridge event from aws.s3",
    )


_NAMES: Final[dict[str, str]] = {
    "sns": sns.WHERE,
    "eventbridge": eventbridge.WHERE,
    "s3": s3.WHERE,
}
_UNWRAPPERS: Final[dict[str, Callable[[str], Unwrapped]]] = {
    "sns": _unwrap_sns,
    "eventbridge": _unwrap_eventbridge,
    "s3": _unwrap_s3,
}
