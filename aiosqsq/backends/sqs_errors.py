"""botocore's failures as aiosqsq's errors: the one translation of both SQS transports.

The lean transport (:mod:`aiosqsq.backends.sqs_lean`) raises botocore's exceptions, so
every call of :class:`~aiosqsq.backends.sqs.SQSBackend` meets :func:`translate`:

==========================================================  ====================================
SQS / botocore                                              raised
==========================================================  ====================================
``QueueDoesNotExist`` / ``NonExistentQueue``                :class:`QueueNotFoundError` (queue)
``TooManyEntriesInBatchRequest``, ``BatchEntryIdsNot...``,  :class:`BatchRequestError`, code
``EmptyBatchRequest``, ``BatchRequestTooLong``,             ``AWS.SimpleQueueService.<Code>``
``InvalidBatchEntryId``
throttling: a code of                                       :class:`BackendError`,
:data:`~aiosqsq.backends.error_codes.THROTTLING_CODES`      ``throttled=True`` (so retryable)
(``ThrottlingException``, ``RequestThrottled``,
``KmsThrottled``, ``OverLimit``, ...)
HTTP 5xx, ``InternalError``, ``QueueDeletedRecently``,      :class:`BackendError`,
connection errors and timeouts, a response that does not    ``retryable=True``
parse (:func:`malformed_response`)
access denied, expired/invalid credentials, no credentials  :class:`AccessError`, naming the
                                                            operation and the queue
anything else SQS refuses                                   :class:`BackendError` (its code)
==========================================================  ====================================

No exception text carries key material: server messages are scrubbed
(:func:`aiosqsq.redaction.scrub`) and auth failures never quote the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from botocore import exceptions as boto_errors  # type: ignore[import-untyped]

from aiosqsq.backends.error_codes import THROTTLING_CODES
from aiosqsq.backends.limits import CODE_PREFIX
from aiosqsq.backends.sqs_shapes import mapping, text
from aiosqsq.errors import AccessError, BackendError, BatchRequestError, QueueNotFoundError
from aiosqsq.redaction import scrub

# Error codes, without the "AWS.SimpleQueueService." prefix of the query protocol.
_NOT_FOUND: Final = frozenset({"QueueDoesNotExist", "NonExistentQueue"})
_BATCH: Final = frozenset(
    [
        "TooManyEntriesInBatchRequest",
        "BatchEntryIdsNotDistinct",
        "EmptyBatchRequest",
        "BatchRequestTooLong",
        "InvalidBatchEntryId",
    ]
)
# QueueDeletedRecently: SQS asks for 60 s before a deleted queue's name is reused.
_TRANSIENT: Final = frozenset(
    [
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "QueueDeletedRecently",
    ]
)
_DENIED: Final = frozenset({"AccessDenied", "AccessDeniedException", "KmsAccessDenied"})
_BAD_CREDENTIALS: Final = frozenset(
    [
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "MissingAuthenticationToken",
        "InvalidSecurity",
        "AuthFailure",
    ]
)


def translate(exc: Exception, operation: str, queue: str) -> BackendError:
    """``exc`` (a ``botocore.exceptions.ClientError`` or ``BotoCoreError`` raised by
    ``operation`` on ``queue``) as the error the table of this module names."""
    action = f"sqs:{operation} on queue {queue!r}"
    if isinstance(exc, boto_errors.ClientError):
        return _translate_client_error(exc, operation, queue, action)
    name = type(exc).__name__
    if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
        return AccessError(
            "NoCredentials",
            f"{action} failed: no usable AWS credentials; set QUEUE_AWS_ACCESS_KEY_ID and "
            "QUEUE_AWS_SECRET_ACCESS_KEY or configure the default AWS credential chain",
        )
    if isinstance(exc, boto_errors.CredentialRetrievalError):
        return BackendError(
            "CredentialRetrievalError",
            f"{action} failed: the default AWS credential chain could not fetch credentials",
            retryable=True,
        )
    if isinstance(exc, boto_errors.SSLError):
        return BackendError(
            "SSLError",
            f"{action} failed: TLS verification of the endpoint failed ({scrub(str(exc))})",
        )
    if isinstance(exc, boto_errors.ConnectionError | boto_errors.HTTPClientError):
        return BackendError(name, f"{action} failed: {scrub(str(exc))}", retryable=True)
    return BackendError(name, f"{action} failed: {scrub(str(exc))}")


def malformed_response(exc: ValueError, operation: str, queue: str) -> BackendError:
    """A response body the SDK could not decode (a proxy's error page): retryable."""
    return BackendError(
        "MalformedResponse",
        f"sqs:{operation} on queue {queue!r} failed: the response could not be parsed "
        f"({type(exc).__name__})",
        retryable=True,
    )


def _translate_client_error(exc: Any, operation: str, queue: str, action: str) -> BackendError:
    response = exc.response if isinstance(exc.response, Mapping) else {}
    error = mapping(response, "Error")
    code = text(error, "Code") or "Unknown"
    # botocore surfaces the query-protocol code (AWS.SimpleQueueService.NonExistentQueue)
    # when SQS sends it, and the JSON-protocol name (QueueDoesNotExist) otherwise.
    bare = {
        code.removeprefix(CODE_PREFIX),
        text(error, "QueryErrorCode").removeprefix(CODE_PREFIX),
    }
    status = mapping(response, "ResponseMetadata").get("HTTPStatusCode")
    if bare & _NOT_FOUND:
        return QueueNotFoundError(queue, operation)
    if bare & _BATCH:
        batch_code = sorted(bare & _BATCH)[0]
        return BatchRequestError(
            f"{CODE_PREFIX}{batch_code}", f"{operation}: {_server_message(error)}"
        )
    if "PurgeQueueInProgress" in bare:  # a 403, yet not about access: SQS's 60 s rule
        return BackendError(
            code,
            f"{action} was refused: SQS allows one purge of a queue every 60 seconds "
            f"({code}); the last purge may still be deleting messages: try again in a minute",
        )
    throttled = bool(bare & THROTTLING_CODES)
    transient = throttled or bool(bare & _TRANSIENT)
    if bare & _DENIED or (status == 403 and not transient and not bare & _BAD_CREDENTIALS):
        # a 403 that is not throttling (RequestThrottled, OverLimit) is an authorization
        # failure, even when its body cannot be parsed (moto's IAM errors are XML)
        return AccessError(
            code,
            f"{action} was denied ({code}): allow sqs:{operation} on this queue in the "
            "caller's IAM policy (and kms:Decrypt for an SSE-KMS queue)",
        )
    if bare & _BAD_CREDENTIALS:
        return AccessError(
            code,
            f"{action} was refused: the AWS credentials are invalid or expired ({code}); "
            "check QUEUE_AWS_ACCESS_KEY_ID, QUEUE_AWS_SECRET_ACCESS_KEY and "
            "QUEUE_AWS_SESSION_TOKEN, or the default credential chain",
        )
    retryable = transient or (isinstance(status, int) and status >= 500)
    return BackendError(
        code,
        f"{action} failed: {_server_message(error)}",
        retryable=retryable,
        throttled=throttled,
    )


def _server_message(error: Mapping[str, Any]) -> str:
    return scrub(text(error, "Message")) or "(no message)"
