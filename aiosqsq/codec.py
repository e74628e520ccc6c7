"""Turning message bodies into handler arguments, and payloads into bodies.

A handler's payload annotation picks the decoder once, at registration:

* ``str``: the body as is; ``bytes``: the body's UTF-8 bytes;
* no annotation, ``Any`` or ``object``: the parsed JSON (orjson), unvalidated;
* anything else (a pydantic model, ``dict[str, int]``, a dataclass, ...): orjson
  parses the body and a pydantic ``TypeAdapter`` validates it.

A body that cannot be parsed or validated raises :class:`PayloadError`; the engine
sends such a message to the dead-letter queue and never retries it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import orjson
import pydantic

from aiosqsq.backends.base import MAX_MESSAGE_BYTES
from aiosqsq.errors import AiosqsqError


class PayloadError(AiosqsqError):
    """A body that will never decode or validate: ``reason`` is safe to log (it quotes no
    body text). Any exception raised while decoding or validating becomes one."""

    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(f"{error_class}: {reason}")
        self.error_class = error_class
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Decoder:
    """Decodes a body for one payload annotation."""

    annotation: Any
    _adapter: pydantic.TypeAdapter[Any] | None
    _raw: type[str] | type[bytes] | None

    @classmethod
    def for_annotation(cls, annotation: Any) -> Decoder:
        if annotation is str or annotation is bytes:
            return cls(annotation, None, annotation)
        if annotation in (inspect.Parameter.empty, Any, object):
            return cls(annotation, None, None)
        return cls(annotation, pydantic.TypeAdapter(annotation), None)

    def decode(self, body: str, *, max_chars: int = MAX_MESSAGE_BYTES) -> Any:
        """The payload of ``body``; ``max_chars`` is more than SQS's limit only for a body
        fetched from S3 (:mod:`aiosqsq.large_payload`). Raises :class:`PayloadError`."""
        if self._raw is str:
            return body
        if self._raw is bytes:
            return body.encode("utf-8", "surrogatepass")
        if len(body) > max_chars:  # SQS never delivers more; refuse before parsing
            raise PayloadError("PayloadTooLarge", f"body of {len(body)} characters")
        try:
            data = orjson.loads(body)
        except (orjson.JSONDecodeError, RecursionError, ValueError) as exc:
            # orjson's message quotes a position, never the body itself
            raise PayloadError("JSONDecodeError", str(exc).splitlines()[0][:200]) from None
        return self.validate(data)

    @property
    def wants_text(self) -> bool:
        """True when the payload is the body's text itself (``str``/``bytes``)."""
        return self._raw is not None

    def validate(self, data: Any) -> Any:
        """The payload from JSON data already parsed (an envelope's inner object).

        Raises :class:`PayloadError` when it does not validate, whatever the validation
        code raised.
        """
        if self._adapter is None:
            return data
        try:
            return self._adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            raise PayloadError("ValidationError", _summarise(exc)) from None
        except Exception as exc:
            # A validator or __post_init__ that raises something pydantic does not wrap
            # (AttributeError, KeyError, TypeError, ...) is still a body that will never
            # validate. Its text may quote the body: keep the class only.
            raise PayloadError(
                type(exc).__name__, "the payload's validation code raised it"
            ) from None


def _summarise(exc: pydantic.ValidationError) -> str:
    """Where and why validation failed, without the offending input values."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return f"{exc.error_count()} error(s): " + "; ".join(parts[:5])


def encode(payload: Any) -> str:
    """The body to send for ``payload``: str as is, bytes as UTF-8 text, else JSON."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, bytes):
        return payload.decode("utf-8")
    if isinstance(payload, pydantic.BaseModel):
        return payload.model_dump_json()
    try:
        return orjson.dumps(payload, default=_to_jsonable).decode()
    except orjson.JSONEncodeError as exc:
        raise TypeError(
            f"cannot encode {type(payload).__name__} as JSON ({exc}): send str, bytes, a "
            "pydantic model, or data of JSON types, dataclasses, datetimes and UUIDs"
        ) from None


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")
