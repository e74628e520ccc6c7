"""Secrets out of text and log lines: key ids, session tokens, signatures, long tokens,
credentials in URLs.

:func:`scrub` masks them in a string (server messages, exception text);
:func:`install_log_redaction` puts the same masking on the AWS SDK's and its HTTP
libraries' loggers, whose DEBUG wire logs quote headers and signed requests. Pure text
work: this module imports no AWS library, the SQS backend installs it when it builds its
client.

A long token (a secret key, a session token, a receipt handle) is replaced whole, its first
characters too, by ``***#`` and 8 hex digits of its SHA-256: two log lines about the same
receipt handle still show the same mark, and nothing of the token can be read back.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Final

_SCRUBBERS: Final = (
    # Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<date>/..., Signature=<hex>
    (re.compile(r"(Credential=)[^/\s,'\"]+"), r"\1***"),
    (re.compile(r"(Signature=)[0-9a-fA-F]+"), r"\1***"),
    # X-Amz-Security-Token as a header (dict repr or canonical request) or a query parameter
    (
        re.compile(r"(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,}&]+", re.IGNORECASE),
        r"\1***",
    ),
    # user:password@ in any URL (https://, redis://, amqp://, ...), a password with '/' too
    (
        re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)(?:[^\s/?#@'\"]+|[^\s:/?#@'\"]*:[^\s@'\"]+)@"),
        r"\1***@",
    ),
    # access key ids, wherever they appear: the 4-letter prefix (the kind of key) is kept
    (
        re.compile(r"\b(A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{12,}\b"),
        r"\1***",
    ),
)
# anything long and token-like (secret keys are 40 characters, tokens and receipt handles
# longer), outside the scheme, host and path of a URL: queue URLs stay readable (a path
# carries no secret; a query string can, and is scrubbed)
_LONG_TOKEN: Final = re.compile(r"[A-Za-z0-9+/_-]{40,}={0,2}")  # "=": base64's padding
_URL_UP_TO_QUERY: Final = re.compile(r"https?://[^\s/?#'\"]+[^\s?#'\"]*")


def scrub(text: str) -> str:
    """``text`` with key ids, tokens, signatures and other long secrets masked."""
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    kept, start = [], 0
    for url in _URL_UP_TO_QUERY.finditer(text):
        kept += [_LONG_TOKEN.sub(_mask, text[start : url.start()]), url.group(0)]
        start = url.end()
    kept.append(_LONG_TOKEN.sub(_mask, text[start:]))
    return "".join(kept)


def _mask(token: re.Match[str]) -> str:
    """``***#`` and a short digest: enough to tell receipt handles apart in a log."""
    return f"***#{hashlib.sha256(token.group(0).encode()).hexdigest()[:8]}"


class _RedactingFilter(logging.Filter):
    """Masks secrets in records of botocore's DEBUG wire logs (boto/botocore#2626)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as it would
            return True
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


_REDACTOR: Final = _RedactingFilter()
#: The AWS SDK's and its HTTP libraries' loggers, whose DEBUG records quote the wire.
WIRE_LOGGERS: Final = ("botocore", "aiobotocore", "aioboto3", "boto3", "urllib3", "aiohttp")


def install_log_redaction() -> None:
    """Attach the redacting filter to every botocore/aiobotocore logger that exists.

    Filters on a logger see only its own records, not its children's, so each one gets it;
    idempotent, and repeated after the client is built as botocore imports lazily."""
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if name.split(".", 1)[0] in WIRE_LOGGERS
    ]
    for name in {*WIRE_LOGGERS, *names}:
        target = logging.getLogger(name)
        if _REDACTOR not in target.filters:
            target.addFilter(_REDACTOR)
