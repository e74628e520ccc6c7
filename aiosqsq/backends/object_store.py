"""Where large payloads are kept: the :class:`ObjectStore` protocol, its errors, and an
in-memory store for the memory backend.

Amazon S3 is :class:`aiosqsq.backends.s3_payloads.S3ObjectStore` (the one module that
talks to S3); :mod:`aiosqsq.large_payload` decides what goes where and never sees botocore.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

from aiosqsq.backends.sqs_config import SQSConfig
from aiosqsq.errors import BackendError

#: DeleteObjects takes at most this many keys per request.
MAX_DELETE_KEYS: Final = 1000


class ObjectNotFoundError(BackendError):
    """The bucket or the object does not exist (S3's NoSuchKey / NoSuchBucket)."""


class ObjectTooLargeError(BackendError):
    """The object is bigger than the caller agreed to load; it was not read."""


@dataclass(frozen=True, slots=True)
class DeleteFailure:
    """One key a DeleteObjects request did not delete, and S3's code for why."""

    key: str
    code: str


class ObjectStore(Protocol):
    """Puts, gets and deletes whole objects. Every method raises
    :class:`~aiosqsq.errors.AccessError` when access is denied, a retryable
    :class:`~aiosqsq.errors.BackendError` for throttling, 5xx and network errors, and
    :class:`ObjectNotFoundError` for a missing bucket or object."""

    async def put(self, bucket: str, key: str, data: bytes, *, kms_key_id: str | None) -> None:
        """Store ``data`` at ``bucket``/``key`` (SSE-KMS with ``kms_key_id`` when given)."""
        ...

    async def get(self, bucket: str, key: str, *, max_bytes: int) -> bytes:
        """The object's bytes; raises :class:`ObjectTooLargeError` before reading an
        object over ``max_bytes``."""
        ...

    async def size(self, bucket: str, key: str) -> int:
        """The object's size in bytes, without reading it."""
        ...

    async def delete(self, bucket: str, keys: Sequence[str]) -> list[DeleteFailure]:
        """Delete up to :data:`MAX_DELETE_KEYS` keys in one request; return those that
        failed (a missing key is no failure)."""
        ...

    async def open(self) -> None:
        """Connect now rather than on first use (loading S3's model blocks for a while)."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...


class MemoryObjectStore:
    """Objects in a dict: the memory backend's store (one process only, as its queues)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def __repr__(self) -> str:
        return f"MemoryObjectStore(objects={len(self.objects)})"

    async def put(self, bucket: str, key: str, data: bytes, *, kms_key_id: str | None) -> None:
        self.objects[bucket, key] = bytes(data)

    async def get(self, bucket: str, key: str, *, max_bytes: int) -> bytes:
        data = self._object(bucket, key)
        if len(data) > max_bytes:
            raise ObjectTooLargeError(
                "ObjectTooLarge", f"s3://{bucket}/{key} has {len(data)} bytes, over {max_bytes}"
            )
        return data

    async def size(self, bucket: str, key: str) -> int:
        return len(self._object(bucket, key))

    async def delete(self, bucket: str, keys: Sequence[str]) -> list[DeleteFailure]:
        for key in keys:
            self.objects.pop((bucket, key), None)
        return []

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _object(self, bucket: str, key: str) -> bytes:
        data = self.objects.get((bucket, key))
        if data is None:
            raise ObjectNotFoundError("NoSuchKey", f"s3://{bucket}/{key} does not exist")
        return data


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlsplit(url).hostname or ""
    if host.lower() == "localhost":
        return True
    try:  # an address, not a name that merely starts with "127." (127.example.com)
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_object_store(
    backend: str, config: SQSConfig, *, region: str | None, endpoint_url: str | None
) -> ObjectStore:
    """The store that goes with ``backend``: S3 (connecting as the SQS backend does, at
    ``endpoint_url`` when given) for ``sqs``, a :class:`MemoryObjectStore` for ``memory``."""
    if backend == "sqs":
        from aiosqsq.backends.s3_payloads import S3ObjectStore  # imports aioboto3: only when asked

        return S3ObjectStore(config, region=region, endpoint_url=endpoint_url)
    return MemoryObjectStore()
