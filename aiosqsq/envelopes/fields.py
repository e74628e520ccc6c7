"""Reading fields out of parsed JSON, with errors that name the field and never its value.

Every envelope reads its body through these: a field that is missing, or of the wrong
JSON type, raises :class:`~aiosqsq.codec.PayloadError` with a reason such as
``SNS envelope: missing field 'Message'``. Reasons quote field names (constants of this
package) and JSON type names, never text from the body.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import orjson

from aiosqsq.codec import PayloadError

ENVELOPE_ERROR: Final = "EnvelopeError"

_T = TypeVar("_T")
_JSON_TYPE_NAMES: Final[dict[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def parse_json(text: str, where: str) -> Any:
    """``text`` parsed by orjson (strict JSON, at most 1024 levels deep).

    Raises :class:`PayloadError` ``JSONDecodeError`` naming ``where``; orjson's message
    gives a position, never the text.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # orjson's message gives a position, never the text
        reason = str(exc).splitlines()[0][:200]
        raise PayloadError("JSONDecodeError", f"{where}: {reason}") from None


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type ("an object", "a string", ...)."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def expect(value: Any, expected: type[_T], where: str) -> _T:
    """``value`` if its type is exactly ``expected`` (so a boolean is no integer)."""
    if type(value) is not expected:
        raise _wrong_type(where, expected, value)
    return value


def required(obj: dict[str, Any], key: str, expected: type[_T], where: str) -> _T:
    """``obj[key]``, which must exist and be of type ``expected``."""
    try:
        value = obj[key]
    except KeyError:
        raise PayloadError(ENVELOPE_ERROR, f"{where}: missing field {key!r}") from None
    if type(value) is not expected:  # checked here: the message is built only for an error
        raise _wrong_type(f"{where}: field {key!r}", expected, value)
    return value


def optional(obj: dict[str, Any], key: str, expected: type[_T], where: str) -> _T | None:
    """``obj[key]`` if present and not null (then of type ``expected``), else None."""
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not expected:
        raise _wrong_type(f"{where}: field {key!r}", expected, value)
    return value


def required_time(obj: dict[str, Any], key: str, where: str) -> datetime:
    """``obj[key]`` as an ISO 8601 time, in UTC when it names no offset (AWS writes Z)."""
    text = required(obj, key, str, where)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        # fromisoformat's own message quotes the text: say what was expected instead
        raise PayloadError(
            ENVELOPE_ERROR, f"{where}: field {key!r} is not an ISO 8601 time"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _wrong_type(where: str, expected: type, value: Any) -> PayloadError:
    return PayloadError(
        ENVELOPE_ERROR, f"{where} must be {_JSON_TYPE_NAMES[expected]}, got {json_type(value)}"
    )
