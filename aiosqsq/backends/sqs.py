"""The SQS backend: :class:`~aiosqsq.backends.base.QueueBackend` on Amazon SQS.

With :mod:`aiosqsq.backends.sqs_lean`, the only modules of aiosqsq that import
aioboto3/aiobotocore/botocore. One long-lived client per backend (created on first use,
closed by :meth:`SQSBackend.aclose`) shares one aiohttp connection pool between pollers,
acker, heartbeat and producer. The calls made per message go through the lean transport
on that pool when ``SQSConfig.transport`` is ``lean`` (the default), every other call
through the client; the lean transport raises botocore's exceptions, so both paths meet
in :func:`_translate`.

Errors are translated in one place, :func:`_translate`:

==========================================================  ====================================
SQS / botocore                                              raised
==========================================================  ====================================
``QueueDoesNotExist`` / ``NonExistentQueue``                :class:`QueueNotFoundError` (queue)
``TooManyEntriesInBatchRequest``, ``BatchEntryIdsNot...``,  :class:`BatchRequestError`, code
``EmptyBatchRequest``, ``BatchRequestTooLong``,             ``AWS.SimpleQueueService.<Code>``
``InvalidBatchEntryId``
throttling, ``OverLimit``, HTTP 5xx, connection errors and  :class:`BackendError`,
timeouts                                                    ``retryable=True``
access denied, expired/invalid credentials, no credentials  :class:`BackendError`,
                                                            ``retryable=False``, naming the
                                                            operation and the queue
anything else SQS refuses                                   :class:`BackendError` (its code)
==========================================================  ====================================

No exception text or log line carries key material: server messages are scrubbed, auth
failures never quote the server, and botocore's own DEBUG wire logs pass through a filter
that masks access key ids, session tokens, signatures and other long tokens
(:mod:`aiosqsq.redaction`).

Batches are checked before they are sent, by the same rules as the memory backend
(:mod:`aiosqsq.backends.limits`), so every endpoint refuses a malformed batch alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import aioboto3  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from botocore import exceptions as boto_errors  # type: ignore[import-untyped]
from botocore.context import get_context  # type: ignore[import-untyped]

from aiosqsq.backends.base import (
    BatchFailure,
    BatchResult,
    DeleteEntry,
    MessageAttributes,
    MessageAttributeValue,
    QueueDepth,
    QueueInfo,
    QueueMessage,
    SendEntry,
    VisibilityEntry,
)
from aiosqsq.backends.limits import CODE_PREFIX, check_batch, check_send_batch
from aiosqsq.backends.object_store import is_loopback_url
from aiosqsq.backends.queue_address import is_queue_url, queue_name
from aiosqsq.backends.sqs_config import SQSConfig, SQSConfigSource
from aiosqsq.backends.sqs_lean import OPERATIONS as LEAN_OPERATIONS
from aiosqsq.backends.sqs_lean import LeanTransport
from aiosqsq.errors import (
    AccessError,
    BackendError,
    BatchRequestError,
    ConfigurationError,
    QueueNotFoundError,
)
from aiosqsq.redaction import install_log_redaction, scrub

logger = logging.getLogger(__name__)

DEFAULT_REGION: Final = "us-east-1"  # only when no region is configured anywhere
# SQS long polls last up to 20 s; the read timeout must outlast them or every idle poll
# would end in a ReadTimeoutError (and, with a response lost, hidden messages: F14).
READ_TIMEOUT_S: Final = 25.0
# A loopback or regional endpoint connects in milliseconds; fail fast and let botocore's
# retry (and the engine's backoff) try again rather than hang a heartbeat.
CONNECT_TIMEOUT_S: Final = 3.0
# botocore's "standard" mode retries throttling, 5xx and connection errors with jittered
# backoff. The engine has its own backoff loop, so botocore gets few attempts: a call that
# keeps failing surfaces within seconds instead of stacking retries on retries.
MAX_ATTEMPTS: Final = 3

# The system attributes every receive asks for (MessageSystemAttributeNames replaces the
# deprecated AttributeNames in the botocore model this was written against).
SYSTEM_ATTRIBUTES: Final = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "ApproximateFirstReceiveTimestamp",
    "MessageGroupId",
    "SequenceNumber",
    "AWSTraceHeader",
    "SenderId",
)

_USER_AGENT_CACHE_SIZE: Final = 64  # distinct feature-id sets; a handful in practice

_AWS_QUEUE_HOST = re.compile(r"sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?")

# Error codes, without the "AWS.SimpleQueueService." prefix of the query protocol.
_NOT_FOUND = frozenset({"QueueDoesNotExist", "NonExistentQueue"})
_BATCH = frozenset(
    [
        "TooManyEntriesInBatchRequest",
        "BatchEntryIdsNotDistinct",
        "EmptyBatchRequest",
        "BatchRequestTooLong",
        "InvalidBatchEntryId",
    ]
)
_THROTTLED = frozenset(
    [
        "ThrottlingException",
        "Throttling",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "KmsThrottled",
        "OverLimit",
    ]
)
# QueueDeletedRecently: SQS asks for 60 s before a deleted queue's name is reused.
_TRANSIENT = frozenset(
    [
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "QueueDeletedRecently",
    ]
)
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "KmsAccessDenied"})
_BAD_CREDENTIALS = frozenset(
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


class SQSBackend:
    """Amazon SQS (or moto, LocalStack, ElasticMQ at ``QUEUE_SQS_ENDPOINT_URL``).

    Credentials are ``QUEUE_AWS_ACCESS_KEY_ID``/``QUEUE_AWS_SECRET_ACCESS_KEY`` (and
    ``QUEUE_AWS_SESSION_TOKEN``) when given, read only when the client is built; otherwise
    the default AWS credential chain (environment, profile, container or instance role),
    whose temporary credentials botocore refreshes. The region is ``QUEUE_AWS_REGION``, else
    the region in an ``sqs.<region>.amazonaws.com`` queue URL, else the AWS configuration
    (``AWS_REGION``, ``AWS_DEFAULT_REGION``, profile), else ``us-east-1``.

    ``max_connections`` bounds the connection pool: size it for every poller's long poll
    plus the acker, the heartbeat and the producer, or deletes and visibility extensions
    queue behind 20 s polls (aiohttp's pool wait has no timeout).

    :meth:`receive` is not cancel-safe: a long poll cancelled mid-flight may already have
    hidden messages on the server, which come back after their visibility timeout.
    After :meth:`aclose`, every call raises :class:`BackendError` (code ``BackendClosed``).
    """

    receive_is_cancel_safe: bool = False

    def __init__(self, config: SQSConfig | SQSConfigSource, *, max_connections: int = 50) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections={max_connections!r}: expected an integer >= 1")
        if not isinstance(config, SQSConfig):
            config = config.sqs_config()  # QueueSettings, or anything else that builds one
        self._endpoint_url = _checked_endpoint(config.endpoint_url)
        _check_credentials(config)
        self._config = config
        self._max_connections = max_connections
        self._session = aioboto3.Session()
        self._region, self._region_source = _resolve_region(config, self._session)
        self._client: Any = None
        self._lean: LeanTransport | None = None
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        endpoint = self._endpoint_url or "AWS"
        return f"SQSBackend(endpoint={endpoint!r}, region={self._region!r})"

    @property
    def region(self) -> str:
        return self._region

    @property
    def config(self) -> SQSConfig:
        """What this backend was configured with (secrets stay masked in its repr)."""
        return self._config

    def ensure_connections(self, needed: int) -> None:
        """Size the pool for ``needed`` concurrent requests before the client opens.

        Raises :class:`~aiosqsq.errors.ConfigurationError` when the client is already open
        with a smaller pool: long polls would then starve deletes and visibility changes.
        """
        if needed <= self._max_connections:
            return
        if self._client is None:
            self._max_connections = needed
            return
        raise ConfigurationError(
            f"the handlers need up to {needed} concurrent SQS requests (long polls plus "
            f"deletes, visibility changes and sends) but the SQS client was opened with "
            f"{self._max_connections} connections: lower QUEUE_POLLERS, or start consuming "
            "before sending with the same app"
        )

    async def __aenter__(self) -> SQSBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- queues --------------------------------------------------------------------------

    async def get_queue_url(self, name_or_url: str) -> str:
        """A URL is checked (GetQueueAttributes) and returned as is; an ARN or a name goes
        through GetQueueUrl. Raises :class:`QueueNotFoundError` naming ``name_or_url``."""
        if is_queue_url(name_or_url):
            await self._call(
                "GetQueueAttributes", name_or_url, QueueUrl=name_or_url, AttributeNames=["QueueArn"]
            )
            return name_or_url
        if name_or_url.startswith("arn:"):
            return await self._url_for_arn(name_or_url)
        response = await self._call("GetQueueUrl", name_or_url, QueueName=name_or_url)
        return _text(response, "QueueUrl")

    async def get_queue_info(self, queue_url: str) -> QueueInfo:
        attributes = await self._attributes(
            queue_url,
            (
                "QueueArn",
                "VisibilityTimeout",
                "FifoQueue",
                "RedrivePolicy",
                "MessageRetentionPeriod",
            ),
        )
        arn = attributes.get("QueueArn", "")
        name = queue_name(arn or queue_url)
        target_arn, max_receive_count = _redrive_policy(queue_url, attributes.get("RedrivePolicy"))
        dead_letter_queue_url = None
        if target_arn is not None:
            try:
                dead_letter_queue_url = await self._url_for_arn(target_arn)
            except AccessError:
                # sqs:GetQueueUrl on the dead-letter queue is not in a consumer's least
                # privileges: a queue of the same account and region has the same URL but
                # for its name
                dead_letter_queue_url = _sibling_url(queue_url, arn, target_arn)
                if dead_letter_queue_url is None:
                    raise
            except QueueNotFoundError:
                logger.warning(
                    "queue %s: its RedrivePolicy names dead-letter queue %s, which does not "
                    "exist; messages over maxReceiveCount cannot be moved",
                    queue_url,
                    target_arn,
                )
        return QueueInfo(
            url=queue_url,
            name=name,
            arn=arn,
            visibility_timeout_s=float(attributes.get("VisibilityTimeout", "30")),
            fifo=attributes.get("FifoQueue", "false").lower() == "true",
            dead_letter_queue_url=dead_letter_queue_url,
            max_receive_count=max_receive_count,
            message_retention_s=float(attributes.get("MessageRetentionPeriod", "345600")),
        )

    async def get_queue_depth(self, queue_url: str) -> QueueDepth:
        attributes = await self._attributes(
            queue_url,
            (
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ),
        )
        return QueueDepth(
            visible=int(attributes.get("ApproximateNumberOfMessages", "0")),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", "0")),
        )

    async def create_queue(self, name: str, attributes: Mapping[str, str] | None = None) -> str:
        """CreateQueue: returns the URL; an existing queue with the same attributes is found,
        one with different attributes raises :class:`BackendError` (``QueueAlreadyExists``,
        ``QueueNameExists`` in the JSON protocol's words)."""
        response = await self._call(
            "CreateQueue", name, QueueName=name, Attributes=dict(attributes or {})
        )
        return _text(response, "QueueUrl")

    async def delete_queue(self, queue_url: str) -> None:
        await self._call("DeleteQueue", queue_url, QueueUrl=queue_url)

    # --- messages ------------------------------------------------------------------------

    async def receive(
        self,
        queue_url: str,
        *,
        max_messages: int,
        wait_time_s: float,
        visibility_timeout_s: float | None = None,
        attempt_id: str | None = None,
    ) -> list[QueueMessage]:
        """ReceiveMessage. SQS takes whole seconds: ``wait_time_s`` and
        ``visibility_timeout_s`` are rounded up (rounding a wait down could turn a long poll
        into a short one; rounding a visibility timeout down could expire it early)."""
        params: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": math.ceil(wait_time_s),
            "MessageSystemAttributeNames": list(SYSTEM_ATTRIBUTES),
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout_s is not None:
            params["VisibilityTimeout"] = math.ceil(visibility_timeout_s)
        if attempt_id is not None:
            params["ReceiveRequestAttemptId"] = attempt_id  # FIFO: a retry gets the same batch
        response = await self._call("ReceiveMessage", queue_url, **params)
        return [_queue_message(queue_url, raw) for raw in _items(response, "Messages")]

    async def delete_batch(self, queue_url: str, entries: Sequence[DeleteEntry]) -> BatchResult:
        check_batch("DeleteMessageBatch", entries)
        response = await self._call(
            "DeleteMessageBatch",
            queue_url,
            QueueUrl=queue_url,
            Entries=[{"Id": entry.id, "ReceiptHandle": entry.receipt_handle} for entry in entries],
        )
        return _batch_result(response)

    async def change_visibility_batch(
        self, queue_url: str, entries: Sequence[VisibilityEntry]
    ) -> BatchResult:
        """ChangeMessageVisibilityBatch; timeouts are rounded up to whole seconds."""
        check_batch("ChangeMessageVisibilityBatch", entries)
        response = await self._call(
            "ChangeMessageVisibilityBatch",
            queue_url,
            QueueUrl=queue_url,
            Entries=[
                {
                    "Id": entry.id,
                    "ReceiptHandle": entry.receipt_handle,
                    "VisibilityTimeout": math.ceil(entry.visibility_timeout_s),
                }
                for entry in entries
            ],
        )
        return _batch_result(response)

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        """SendMessageBatch. ``delay_s=0`` leaves ``DelaySeconds`` out, so the queue's own
        delay applies (and FIFO queues, which refuse per-message delays, accept it)."""
        check_send_batch(entries)
        response = await self._call(
            "SendMessageBatch",
            queue_url,
            QueueUrl=queue_url,
            Entries=[_send_entry(entry) for entry in entries],
        )
        return _batch_result(response, message_ids=True)

    async def aclose(self) -> None:
        """Close the client and its connections; idempotent. Calls still in flight fail."""
        self._closed = True
        async with self._lock:
            self._client = None
            self._lean = None
            await self._stack.aclose()

    # --- plumbing ------------------------------------------------------------------------

    async def _attributes(self, queue_url: str, names: Sequence[str]) -> dict[str, str]:
        response = await self._call(
            "GetQueueAttributes", queue_url, QueueUrl=queue_url, AttributeNames=list(names)
        )
        return {str(key): str(value) for key, value in _mapping(response, "Attributes").items()}

    async def _url_for_arn(self, arn: str) -> str:
        # arn:<partition>:sqs:<region>:<account>:<name>
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[2] != "sqs":
            raise BackendError(
                "InvalidAddress",
                f"{arn!r} is not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)",
            )
        response = await self._call(
            "GetQueueUrl", arn, QueueName=parts[5], QueueOwnerAWSAccountId=parts[4]
        )
        return _text(response, "QueueUrl")

    async def _call(self, operation: str, queue: str, **params: Any) -> Mapping[str, Any]:
        """Run one SQS operation, translating every botocore failure (see the module doc)."""
        try:
            client = self._client if self._client is not None else await self._open()
            lean = self._lean
            if lean is not None and operation in LEAN_OPERATIONS:
                response: Any = await lean.call(operation, params)
            else:
                response = await getattr(client, _snake_case(operation))(**params)
        except (boto_errors.ClientError, boto_errors.BotoCoreError) as exc:
            raise _translate(exc, operation, queue) from None
        except ValueError as exc:  # a body the SDK cannot decode (a proxy's error page)
            raise BackendError(
                "MalformedResponse",
                f"sqs:{operation} on queue {queue!r} failed: the response could not be parsed "
                f"({type(exc).__name__})",
                retryable=True,
            ) from None
        return response if isinstance(response, Mapping) else {}

    async def _open(self) -> Any:
        async with self._lock:
            if self._closed:
                raise BackendError("BackendClosed", f"{self!r} is closed")
            if self._client is None:
                install_log_redaction()
                config = client_config(
                    read_timeout_s=READ_TIMEOUT_S, max_connections=self._max_connections
                )
                self._client = await self._stack.enter_async_context(
                    self._session.client(
                        "sqs",
                        region_name=self._region,
                        endpoint_url=self._endpoint_url,
                        config=config,
                        # None, not True: verification stays on, and botocore then trusts
                        # the AWS_CA_BUNDLE (or ca_bundle profile) roots when they are set
                        verify=None,
                        **self._credentials(),
                    )
                )
                install_log_redaction()  # botocore imports some modules only now
                _cache_user_agent(self._client)
                if self._config.transport == "lean":
                    self._lean = await LeanTransport.for_client(
                        self._client, max_attempts=MAX_ATTEMPTS
                    )
                logger.info(
                    "SQS client ready: endpoint %s, region %s (%s), %s transport, "
                    "credentials from %s",
                    self._endpoint_url or "AWS",
                    self._region,
                    self._region_source,
                    "lean" if self._lean is not None else "botocore",
                    "QUEUE_AWS_*" if self._config.access_key_id else "the default chain",
                )
            return self._client

    def _credentials(self) -> dict[str, str]:
        credentials = self._config.client_credentials()
        if "aws_session_token" in credentials:
            logger.warning(
                "QUEUE_AWS_SESSION_TOKEN is set: these temporary credentials cannot be "
                "refreshed, and calls fail with ExpiredToken once they expire; prefer the "
                "default credential chain (container or instance role) for long runs"
            )
        return credentials


def _cache_user_agent(client: Any) -> None:
    """Build each distinct User-Agent header once instead of twice per request.

    botocore assembles the header from scratch for every request, twice (about 60 µs each
    here, a tenth of a consumer's CPU): from the SDK, OS and Python versions, the client's
    configuration, all fixed for the client's life, and the feature ids that the client and
    the request's context have registered. So the string is remembered per set of feature
    ids: the header sent is the one botocore would have built. When botocore's internals are
    not those this was written against, nothing is changed.
    """
    creator: Any = getattr(client, "_user_agent_creator", None)
    build = getattr(creator, "to_string", None)
    if not callable(build) or not hasattr(creator, "_client_features"):
        return
    built: dict[frozenset[str], str] = {}

    def to_string() -> str:
        context = get_context()
        client_features = creator._client_features
        key = frozenset(context.features if context is not None else ())
        if client_features:
            key |= client_features
        header = built.get(key)
        if header is None:
            if len(built) >= _USER_AGENT_CACHE_SIZE:
                built.clear()
            header = built[key] = build()
        return header

    creator.to_string = to_string  # also reached by botocore's request-created handler


# --- configuration ---------------------------------------------------------------------


def _checked_endpoint(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            "QUEUE_SQS_ENDPOINT_URL is invalid (value hidden): it must not contain a user "
            "name or password, expected a URL such as https://sqs.eu-west-1.amazonaws.com"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"QUEUE_SQS_ENDPOINT_URL={url!r} is invalid: expected a URL such as "
            "https://sqs.eu-west-1.amazonaws.com or http://127.0.0.1:5000"
        )
    if parts.scheme == "http" and not is_loopback_url(url):
        raise ConfigurationError(
            f"QUEUE_SQS_ENDPOINT_URL={url!r} is invalid: plain http is allowed only for a "
            "loopback host (127.0.0.0/8, localhost, ::1); use https"
        )
    return url


def client_config(*, read_timeout_s: float, max_connections: int, **extra: Any) -> Any:
    """The aiobotocore client configuration every aiosqsq client shares (SQS, S3):
    timeouts, pool size and botocore's standard retries; ``extra`` per service."""
    return AioConfig(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=read_timeout_s,
        max_pool_connections=max_connections,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        **extra,
    )


def _check_credentials(config: SQSConfig) -> None:
    has_key = config.access_key_id is not None
    has_secret = config.secret_access_key is not None
    if has_key != has_secret:
        raise ConfigurationError(
            "QUEUE_AWS_ACCESS_KEY_ID and QUEUE_AWS_SECRET_ACCESS_KEY must be set together "
            "(or neither, to use the default AWS credential chain)"
        )
    if config.session_token is not None and not has_key:
        raise ConfigurationError(
            "QUEUE_AWS_SESSION_TOKEN needs QUEUE_AWS_ACCESS_KEY_ID and "
            "QUEUE_AWS_SECRET_ACCESS_KEY as well"
        )


def _resolve_region(config: SQSConfig, session: Any) -> tuple[str, str]:
    if config.region:
        return config.region, "QUEUE_AWS_REGION"
    if config.queue_url and is_queue_url(config.queue_url):
        match = _AWS_QUEUE_HOST.fullmatch(urlsplit(config.queue_url).hostname or "")
        if match:
            return match.group(1), "the queue URL"
    configured = session.region_name
    if isinstance(configured, str) and configured:
        return configured, "the AWS configuration"
    return DEFAULT_REGION, "default: no region configured"


# --- request and response shapes -------------------------------------------------------


def _send_entry(entry: SendEntry) -> dict[str, Any]:
    raw: dict[str, Any] = {"Id": entry.id, "MessageBody": entry.body}
    if entry.delay_s:
        raw["DelaySeconds"] = entry.delay_s
    if entry.message_attributes:
        raw["MessageAttributes"] = {
            name: dict(value) for name, value in entry.message_attributes.items()
        }
    if entry.group_id is not None:
        raw["MessageGroupId"] = entry.group_id
    if entry.deduplication_id is not None:
        raw["MessageDeduplicationId"] = entry.deduplication_id
    return raw


def _queue_message(queue_url: str, raw: Mapping[str, Any]) -> QueueMessage:
    # Run for every message received: positional arguments and plain copies (see
    # _string_map) keep it to about a microsecond.
    message_attributes = raw.get("MessageAttributes")
    return QueueMessage(
        queue_url,
        _text(raw, "MessageId"),
        _text(raw, "ReceiptHandle"),
        _text(raw, "Body"),
        _string_map(raw.get("Attributes")),
        _message_attributes(message_attributes)
        if message_attributes and isinstance(message_attributes, Mapping)
        else {},
    )


def _string_map(value: object) -> dict[str, str]:
    """``value`` as a new dict of strings; botocore's parsed maps already hold only strings,
    so that is a plain copy after a check."""
    if not isinstance(value, Mapping):
        return {}
    copied = dict(value)
    for key, item in copied.items():
        if type(key) is not str or type(item) is not str:
            return {str(k): str(v) for k, v in copied.items()}
    return copied


def _message_attributes(raw: Mapping[str, Any]) -> MessageAttributes:
    attributes: dict[str, MessageAttributeValue] = {}
    for name, value in raw.items():
        if not isinstance(value, Mapping):
            continue
        attribute = MessageAttributeValue(DataType=str(value.get("DataType", "String")))
        if isinstance(value.get("StringValue"), str):
            attribute["StringValue"] = value["StringValue"]
        if isinstance(value.get("BinaryValue"), bytes | bytearray):
            attribute["BinaryValue"] = bytes(value["BinaryValue"])
        attributes[str(name)] = attribute
    return attributes


def _batch_result(response: Mapping[str, Any], *, message_ids: bool = False) -> BatchResult:
    successful = _items(response, "Successful")
    return BatchResult(
        successful=tuple(_text(entry, "Id") for entry in successful),
        failed=tuple(
            BatchFailure(
                id=_text(entry, "Id"),
                code=_text(entry, "Code"),
                message=scrub(_text(entry, "Message")),
                sender_fault=entry.get("SenderFault") is True,
            )
            for entry in _items(response, "Failed")
        ),
        message_ids=(
            {_text(entry, "Id"): _text(entry, "MessageId") for entry in successful}
            if message_ids
            else {}
        ),
    )


def _sibling_url(queue_url: str, queue_arn: str, other_arn: str) -> str | None:
    """The URL of the queue ``other_arn`` when it is in ``queue_arn``'s partition, region
    and account and ``queue_url`` has SQS's ``.../ACCOUNT/NAME`` form; else None."""
    ours, theirs = queue_arn.split(":", 5), other_arn.split(":", 5)
    if len(ours) != 6 or len(theirs) != 6 or ours[:5] != theirs[:5]:
        return None
    base, account, name = queue_url.rstrip("/").rsplit("/", 2)
    if (account, name) != (ours[4], ours[5]):
        return None
    return f"{base}/{account}/{theirs[5]}"


def _redrive_policy(queue_url: str, policy: str | None) -> tuple[str | None, int | None]:
    """(deadLetterTargetArn, maxReceiveCount) from a RedrivePolicy, or (None, None)."""
    if not policy:
        return None, None
    try:
        parsed = json.loads(policy)
        target = parsed["deadLetterTargetArn"]
        count = int(parsed["maxReceiveCount"])  # SQS returns it as a string or a number
    except (ValueError, TypeError, KeyError):
        logger.warning("queue %s: its RedrivePolicy is not valid JSON of SQS's shape", queue_url)
        return None, None
    return (target if isinstance(target, str) else None), count


@functools.cache  # a dozen operation names, looked up on every call: no regex per request
def _snake_case(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _mapping(value: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    item = value.get(key)
    return item if isinstance(item, Mapping) else {}


def _items(value: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    item = value.get(key)
    if not isinstance(item, list):
        return []
    return [entry for entry in item if isinstance(entry, Mapping)]


def _text(value: Mapping[str, Any], key: str) -> str:
    item = value.get(key)
    return item if isinstance(item, str) else ""


# --- errors ----------------------------------------------------------------------------


def _translate(exc: Exception, operation: str, queue: str) -> BackendError:
    """The one place where botocore's failures become aiosqsq's (module docstring)."""
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


def _translate_client_error(exc: Any, operation: str, queue: str, action: str) -> BackendError:
    response = exc.response if isinstance(exc.response, Mapping) else {}
    error = _mapping(response, "Error")
    code = _text(error, "Code") or "Unknown"
    # botocore surfaces the query-protocol code (AWS.SimpleQueueService.NonExistentQueue)
    # when SQS sends it, and the JSON-protocol name (QueueDoesNotExist) otherwise.
    bare = {
        code.removeprefix(CODE_PREFIX),
        _text(error, "QueryErrorCode").removeprefix(CODE_PREFIX),
    }
    status = _mapping(response, "ResponseMetadata").get("HTTPStatusCode")
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
    throttled = bare & (_THROTTLED | _TRANSIENT)
    if bare & _DENIED or (status == 403 and not throttled and not bare & _BAD_CREDENTIALS):
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
    retryable = bool(throttled) or (isinstance(status, int) and status >= 500)
    return BackendError(code, f"{action} failed: {_server_message(error)}", retryable=retryable)


def _server_message(error: Mapping[str, Any]) -> str:
    return scrub(_text(error, "Message")) or "(no message)"
