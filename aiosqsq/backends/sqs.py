"""The SQS backend: :class:`~aiosqsq.backends.base.QueueBackend` on Amazon SQS.

With :mod:`~aiosqsq.backends.sqs_lean` and :mod:`~aiosqsq.backends.sqs_errors`, the only
modules of aiosqsq that import aioboto3/aiobotocore/botocore for SQS. One long-lived
client per backend (created on first use, closed by :meth:`SQSBackend.aclose`) serves
pollers, acker, heartbeat and producer. The calls made per message go through the lean
transport when ``SQSConfig.transport`` is ``lean`` (the default), on HTTP/1.1 connections
of its own (as many as the client's pool; through a proxy, on the client's aiohttp pool),
every other call through the client; the lean transport raises
botocore's exceptions, so both paths meet in one translation,
:func:`aiosqsq.backends.sqs_errors.translate` (its docstring has the table of what becomes
what; throttling comes back with ``throttled=True``). Request and response shapes are in
:mod:`~aiosqsq.backends.sqs_shapes`, the checks of the configuration in
:mod:`~aiosqsq.backends.sqs_connection`.

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
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import aioboto3  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from botocore import exceptions as boto_errors  # type: ignore[import-untyped]
from botocore.context import get_context  # type: ignore[import-untyped]

from aiosqsq.backends.base import (
    BatchResult,
    DeleteEntry,
    QueueDepth,
    QueueInfo,
    QueueMessage,
    SendEntry,
    VisibilityEntry,
)
from aiosqsq.backends.limits import check_batch, check_send_batch
from aiosqsq.backends.queue_address import is_queue_url, queue_name
from aiosqsq.backends.sqs_config import SQSConfig, SQSConfigSource
from aiosqsq.backends.sqs_connection import check_credentials, checked_endpoint, resolve_region
from aiosqsq.backends.sqs_errors import malformed_response, translate
from aiosqsq.backends.sqs_lean import OPERATIONS as LEAN_OPERATIONS
from aiosqsq.backends.sqs_lean import LeanTransport
from aiosqsq.backends.sqs_shapes import (
    batch_result,
    items,
    mapping,
    queue_message,
    redrive_policy,
    send_entry,
    sibling_url,
    text,
)
from aiosqsq.errors import AccessError, BackendError, ConfigurationError, QueueNotFoundError
from aiosqsq.redaction import install_log_redaction

logger = logging.getLogger(__name__)

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
    queue behind 20 s polls (waiting for a pooled connection has no timeout).

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
        self._endpoint_url = checked_endpoint(config.endpoint_url)
        check_credentials(config)
        self._config = config
        self._max_connections = max_connections
        self._session = aioboto3.Session()
        self._region, self._region_source = resolve_region(config, self._session)
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
    def transport(self) -> str:
        """What sends the calls, once the client is open: ``lean`` (our HTTP/1.1
        client), ``lean through aiohttp`` (a proxy applies), or ``botocore``."""
        if self._lean is None:
            return "botocore"
        return "lean" if self._lean.http_client == "http11" else "lean through aiohttp"

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
        return text(response, "QueueUrl")

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
        target_arn, max_receive_count = self._redrive_policy(queue_url, attributes)
        dead_letter_queue_url = None
        if target_arn is not None:
            try:
                dead_letter_queue_url = await self._url_for_arn(target_arn)
            except AccessError:
                # sqs:GetQueueUrl on the dead-letter queue is not in a consumer's least
                # privileges: a queue of the same account and region has the same URL but
                # for its name
                dead_letter_queue_url = sibling_url(queue_url, arn, target_arn)
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
        return text(response, "QueueUrl")

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
        return [queue_message(queue_url, raw) for raw in items(response, "Messages")]

    async def delete_batch(self, queue_url: str, entries: Sequence[DeleteEntry]) -> BatchResult:
        check_batch("DeleteMessageBatch", entries)
        response = await self._call(
            "DeleteMessageBatch",
            queue_url,
            QueueUrl=queue_url,
            Entries=[{"Id": entry.id, "ReceiptHandle": entry.receipt_handle} for entry in entries],
        )
        return batch_result(response)

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
        return batch_result(response)

    async def send_batch(self, queue_url: str, entries: Sequence[SendEntry]) -> BatchResult:
        """SendMessageBatch. ``delay_s=0`` leaves ``DelaySeconds`` out, so the queue's own
        delay applies (and FIFO queues, which refuse per-message delays, accept it)."""
        check_send_batch(entries)
        response = await self._call(
            "SendMessageBatch",
            queue_url,
            QueueUrl=queue_url,
            Entries=[send_entry(entry) for entry in entries],
        )
        return batch_result(response, message_ids=True)

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
        return {str(key): str(value) for key, value in mapping(response, "Attributes").items()}

    @staticmethod
    def _redrive_policy(
        queue_url: str, attributes: Mapping[str, str]
    ) -> tuple[str | None, int | None]:
        try:
            return redrive_policy(attributes.get("RedrivePolicy"))
        except ValueError:
            logger.warning(
                "queue %s: its RedrivePolicy is not valid JSON of SQS's shape", queue_url
            )
            return None, None

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
        return text(response, "QueueUrl")

    async def _call(self, operation: str, queue: str, **params: Any) -> Mapping[str, Any]:
        """Run one SQS operation, translating every botocore failure (see the module doc)."""
        try:
            client = self._client if self._client is not None else await self._open()
            lean = self._lean
            if lean is not None and operation in LEAN_OPERATIONS:
                response: Any = await lean.call(operation, params)
            else:
                response = await getattr(client, method_name(operation))(**params)
        except (boto_errors.ClientError, boto_errors.BotoCoreError) as exc:
            raise translate(exc, operation, queue) from None
        except ValueError as exc:  # a body the SDK cannot decode (a proxy's error page)
            raise malformed_response(exc, operation, queue) from None
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
                    if self._lean is not None:
                        self._stack.push_async_callback(self._lean.aclose)
                logger.info(
                    "SQS client ready: endpoint %s, region %s (%s), %s transport, "
                    "credentials from %s",
                    self._endpoint_url or "AWS",
                    self._region,
                    self._region_source,
                    self.transport,
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


@functools.cache  # a dozen operation names, looked up on every call: no regex per request
def method_name(operation: str) -> str:
    """The aioboto3 client method of an AWS operation: ``GetQueueUrl`` -> ``get_queue_url``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
