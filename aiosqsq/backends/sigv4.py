"""AWS Signature Version 4 for the lean SQS transport (:mod:`aiosqsq.backends.sqs_lean`).

The algorithm botocore's ``SigV4Auth`` runs (AWS General Reference, "Signature Version 4
signing process"), for requests whose headers the caller already holds in canonical form:
lower-case names, sorted, values trimmed, no query string. The signing key (four HMACs)
is derived once per secret key and UTC day, not once per request, and the timestamp text
once per second.

Nothing here logs, and no exception or repr carries key material: :class:`SigV4Signer`
keeps the derived key of the current day only, and its repr names region and service.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

ALGORITHM: Final = "AWS4-HMAC-SHA256"
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
# Headers SigV4 never signs (botocore's SIGNED_HEADERS_BLACKLIST): proxies may change them.
UNSIGNED_HEADERS: Final = frozenset(
    {"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"}
)


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The key of one day (``YYYYMMDD``), region and service."""
    key = _hmac(f"AWS4{secret_key}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def canonical_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` as SigV4 signs them: names lower-cased, values trimmed (runs of spaces
    made one), repeated names joined by commas, sorted, unsigned ones left out."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower not in UNSIGNED_HEADERS:
            merged.setdefault(lower, []).append(" ".join(value.split()))
    return [(name, ",".join(merged[name])) for name in sorted(merged)]


class SigV4Signer:
    """Signs requests to one service in one region.

    :meth:`authorization` takes headers already in canonical form (see
    :func:`canonical_headers`), which must include ``host`` and ``x-amz-date`` (and
    ``x-amz-security-token`` with temporary credentials), and the hex SHA-256 of the body.
    """

    __slots__ = ("_clock", "_key", "_key_for", "_region", "_second", "_service", "_stamp")

    def __init__(
        self, region: str, service: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._region = region
        self._service = service
        self._clock = clock
        self._key_for: tuple[str, str] | None = None  # (secret key, date) of self._key
        self._key = b""
        self._second = -1
        self._stamp = ""

    def __repr__(self) -> str:
        return f"SigV4Signer(region={self._region!r}, service={self._service!r})"

    @property
    def region(self) -> str:
        return self._region

    def timestamp(self) -> str:
        """Now as SigV4's ``X-Amz-Date`` (``YYYYMMDDTHHMMSSZ``, UTC)."""
        second = int(self._clock())
        if second != self._second:
            self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._second = second
        return self._stamp

    def authorization(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]],
        payload_sha256: str,
        access_key: str,
        secret_key: str,
        amz_date: str,
    ) -> str:
        """The ``Authorization`` header value for this request."""
        canonical = "".join(f"{name}:{value}\n" for name, value in headers)
        signed = ";".join(name for name, _ in headers)
        request = f"{method}\n{path}\n\n{canonical}\n{signed}\n{payload_sha256}"
        date = amz_date[:8]
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(request.encode('utf-8')).hexdigest()}"
        )
        if self._key_for != (secret_key, date):
            self._key = signing_key(secret_key, date, self._region, self._service)
            self._key_for = (secret_key, date)
        signature = hmac.new(self._key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        return (
            f"{ALGORITHM} Credential={access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
