"""Amazon S3 as the :class:`~aiosqsq.backends.object_store.ObjectStore` of large payloads.

The only module of aiosqsq that talks to S3. It connects as the SQS backend does: the same
``QUEUE_AWS_*`` keys (or the default credential chain), the same region, an aioboto3
client created on first use and closed by :meth:`S3ObjectStore.aclose`;
``QUEUE_S3_ENDPOINT_URL`` points it at moto or LocalStack (path-style addressing).
Errors are translated in :func:`_translate` (throttling, S3's ``SlowDown`` or KMS's, with
``throttled=True``); no text of S3's reaches an error unscrubbed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import aioboto3  # type: ignore[import-untyped]
from botocore import exceptions as boto_errors  # type: ignore[import-untyped]

from aiosqsq.backends.error_codes import THROTTLING_CODES
from aiosqsq.backends.object_store import (
    MAX_DELETE_KEYS,
    DeleteFailure,
    ObjectNotFoundError,
    ObjectTooLargeError,
)
from aiosqsq.backends.sqs import client_config, method_name
from aiosqsq.backends.sqs_config import SQSConfig
from aiosqsq.backends.sqs_connection import checked_endpoint
from aiosqsq.errors import AccessError, BackendError
from aiosqsq.redaction import install_log_redaction, scrub

logger = logging.getLogger(__name__)

READ_TIMEOUT_S: Final = 60.0  # a large object streams for a while
_CHUNK_BYTES: Final = 1 << 20

_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "AllAccessDisabled",
        "KMS.AccessDeniedException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
    }
)
# Throttling (SlowDown, KMS.ThrottlingException, ...) is in error_codes.THROTTLING_CODES.
_TRANSIENT = frozenset({"InternalError", "ServiceUnavailable", "RequestTimeout", "500", "503"})


class S3ObjectStore:
    """S3 through one long-lived aioboto3 client (see the module docstring)."""

    def __init__(
        self,
        config: SQSConfig,
        *,
        region: str | None,
        endpoint_url: str | None = None,
        max_connections: int = 20,
    ) -> None:
        self._config = config
        self._endpoint_url = checked_endpoint(
            endpoint_url, "QUEUE_S3_ENDPOINT_URL", "https://s3.eu-west-1.amazonaws.com"
        )
        self._session = aioboto3.Session()
        configured = self._session.region_name
        self._region = region or (configured if isinstance(configured, str) else None)
        self._max_connections = max_connections
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint={self._endpoint_url or 'AWS'!r}, region={self._region!r})"

    async def put(self, bucket: str, key: str, data: bytes, *, kms_key_id: str | None) -> None:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": data}
        if kms_key_id:
            params.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key_id)
        await self._call("PutObject", bucket, key, **params)

    async def get(self, bucket: str, key: str, *, max_bytes: int) -> bytes:
        response = await self._call("GetObject", bucket, key, Bucket=bucket, Key=key)
        stream = response["Body"]
        try:
            length = int(response.get("ContentLength", 0))
            if length > max_bytes:
                raise ObjectTooLargeError(
                    "ObjectTooLarge", f"s3://{bucket}/{key} has {length} bytes, over {max_bytes}"
                )
            chunks: list[bytes] = []
            read = 0
            while chunk := await stream.read(_CHUNK_BYTES):
                read += len(chunk)
                if read > max_bytes:  # a length header that lied
                    raise ObjectTooLargeError(
                        "ObjectTooLarge", f"s3://{bucket}/{key} is over {max_bytes} bytes"
                    )
                chunks.append(chunk)
            return b"".join(chunks)
        except (boto_errors.BotoCoreError, OSError, TimeoutError) as exc:
            raise _translate(exc, "GetObject", bucket, key) from None
        finally:
            stream.close()

    async def size(self, bucket: str, key: str) -> int:
        response = await self._call("HeadObject", bucket, key, Bucket=bucket, Key=key)
        return int(response.get("ContentLength", 0))

    async def delete(self, bucket: str, keys: Sequence[str]) -> list[DeleteFailure]:
        if len(keys) > MAX_DELETE_KEYS:
            raise ValueError(f"DeleteObjects takes at most {MAX_DELETE_KEYS} keys, not {len(keys)}")
        if not keys:
            return []
        response = await self._call(
            "DeleteObjects",
            bucket,
            keys[0],
            Bucket=bucket,
            Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
        )
        return [
            DeleteFailure(str(error.get("Key", "")), str(error.get("Code", "")))
            for error in response.get("Errors", ())
            if isinstance(error, Mapping) and error.get("Code") != "NoSuchKey"
        ]

    async def open(self) -> None:
        if self._client is None:
            await self._open()

    async def aclose(self) -> None:
        self._client = None
        await self._stack.aclose()

    async def _call(self, operation: str, bucket: str, key: str, **params: Any) -> Any:
        client = self._client if self._client is not None else await self._open()
        method = getattr(client, method_name(operation))
        try:
            return await method(**params)
        except (boto_errors.ClientError, boto_errors.BotoCoreError, OSError, TimeoutError) as exc:
            raise _translate(exc, operation, bucket, key) from None

    async def _open(self) -> Any:
        if self._client is None:
            install_log_redaction()
            config = client_config(
                read_timeout_s=READ_TIMEOUT_S,
                max_connections=self._max_connections,
                s3={"addressing_style": "path"} if self._endpoint_url else None,
            )
            self._client = await self._stack.enter_async_context(
                self._session.client(
                    "s3",
                    region_name=self._region,
                    endpoint_url=self._endpoint_url,
                    config=config,
                    verify=True,
                    **self._config.client_credentials(),
                )
            )
            logger.info(
                "S3 client ready for large payloads: endpoint %s, region %s",
                self._endpoint_url or "AWS",
                self._region or "from the AWS configuration",
            )
        return self._client


def _translate(exc: BaseException, operation: str, bucket: str, key: str) -> BackendError:
    where = f"{operation} of s3://{bucket}/{key}"
    if isinstance(exc, boto_errors.ClientError):
        error = exc.response.get("Error", {}) if isinstance(exc.response, Mapping) else {}
        code = str(error.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _NOT_FOUND or status == 404:
            return ObjectNotFoundError(code, f"{where} failed: the bucket or object does not exist")
        if code in _DENIED or status == 403:
            return AccessError(code, f"{where} was denied: check the IAM policy and KMS key")
        message = scrub(str(error.get("Message", "")))[:200]
        throttled = code in THROTTLING_CODES
        retryable = throttled or code in _TRANSIENT or status >= 500
        return BackendError(
            code, f"{where} failed: {message}", retryable=retryable, throttled=throttled
        )
    if isinstance(exc, boto_errors.NoCredentialsError):
        return AccessError("NoCredentials", f"{where}: no AWS credentials found")
    return BackendError(
        type(exc).__name__, f"{where} failed: {scrub(str(exc))[:200]}", retryable=True
    )
