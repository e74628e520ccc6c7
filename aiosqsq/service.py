"""``QueueService``: drive a queue by hand (enqueue, dequeue, ack, nack).

The backend is chosen from settings (``QUEUE_BACKEND``), with the required settings
checked before anything is sent. :class:`~aiosqsq.App` is built on the same service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

from aiosqsq.backends import create_backend
from aiosqsq.backends.base import (
    MAX_DELAY_S,
    MAX_MESSAGE_ATTRIBUTES,
    MAX_MESSAGE_BYTES,
    BatchResult,
    DeleteEntry,
    MessageAttributes,
    MessageAttributeValue,
    QueueBackend,
    QueueInfo,
    QueueMessage,
    SendEntry,
    VisibilityEntry,
    message_size,
)
from aiosqsq.backends.limits import pack
from aiosqsq.backends.provisioning import create_with_dead_letter_queue
from aiosqsq.backends.queue_address import is_queue_url, queue_name
from aiosqsq.codec import encode
from aiosqsq.errors import (
    BackendError,
    ConfigurationError,
    MessageRefusedError,
    PayloadTooLargeError,
    QueueNotFoundError,
)
from aiosqsq.large_payload import USER_ATTRIBUTES, LargePayloads
from aiosqsq.producer import Producer
from aiosqsq.settings import QueueSettings

_MAX_CACHED_URLS = 1024  # queue name -> URL lookups kept (GetQueueUrl saved)


class QueueService:
    """One backend, shared by producers and consumers of an app.

    ``queue`` arguments take a name or a URL; ``None`` is the default queue
    (``QUEUE_SQS_QUEUE_URL``, or ``"default"`` on the memory backend). On the memory
    backend a queue is created on first use, with a dead-letter queue ``<name>-dlq``.
    """

    def __init__(
        self, settings: QueueSettings | None = None, *, backend: QueueBackend | None = None
    ) -> None:
        self.settings = settings if settings is not None else QueueSettings()
        self._owns_backend = backend is None  # a backend passed in is the caller's to close
        self.backend = (
            backend
            if backend is not None
            else create_backend(self.settings.backend, self.settings.sqs_config())
        )
        self._urls: dict[str, str] = {}
        self._producer = Producer(self.backend)
        #: Bodies over QUEUE_LARGE_PAYLOAD_THRESHOLD go to S3 (None: off, no bucket set).
        self.large_payloads = LargePayloads.from_settings(self.settings, self.backend)

    def __repr__(self) -> str:
        return f"QueueService(backend={self.settings.backend!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend if this service created it (not one passed in)."""
        if self.large_payloads is not None:
            await self.large_payloads.aclose()
        if self._owns_backend:
            await self.backend.aclose()

    async def queue_url(self, queue: str | None = None) -> str:
        """The URL of ``queue`` (a name or URL; None: the default queue)."""
        name = queue or self.settings.default_queue
        url = self._urls.get(name)
        if url is None:
            try:
                url = await self.backend.get_queue_url(name)
            except QueueNotFoundError:
                if self.settings.backend != "memory":
                    raise
                # an SQS URL on the memory backend (a test of an SQS app): its queue name
                url = await self._create_memory_queue(
                    queue_name(name) if is_queue_url(name) else name
                )
            self._remember(name, url)
        return url

    def _remember(self, name: str, url: str) -> None:
        if len(self._urls) >= _MAX_CACHED_URLS:  # a producer to ever new queues stays bounded
            del self._urls[next(iter(self._urls))]
        self._urls[name] = url

    async def queue_info(self, queue: str | None = None) -> QueueInfo:
        """The attributes of ``queue`` (a name or URL; None: the default queue).

        A queue URL not seen before is not checked on its own first, as :meth:`queue_url`
        would: its GetQueueAttributes call fails alike for a missing queue, so a consumer
        starts with one call instead of two.
        """
        name = queue or self.settings.default_queue
        if name not in self._urls and self.settings.backend != "memory" and is_queue_url(name):
            info = await self.backend.get_queue_info(name)
            self._remember(name, name)
            return info
        return await self.backend.get_queue_info(await self.queue_url(queue))

    async def _create_memory_queue(self, name: str) -> str:
        url, _ = await create_with_dead_letter_queue(
            self.backend, name, visibility_timeout_s=self.settings.visibility_timeout
        )
        return url

    async def enqueue(
        self,
        payload: Any,
        queue: str | None = None,
        *,
        delay_s: int = 0,
        attributes: Mapping[str, str | int | float | bytes] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        offload: bool | None = None,
    ) -> str:
        """Send one message; return its MessageId.

        Concurrent calls are coalesced into SendMessageBatch requests (see
        :mod:`aiosqsq.producer`). With large payloads on (QUEUE_LARGE_PAYLOAD_BUCKET), a
        body over the threshold goes to S3; ``offload`` True or False decides for this
        send instead. Raises :class:`~aiosqsq.errors.PayloadTooLargeError` before
        sending if the message is over 1 MiB (and not offloaded),
        :class:`~aiosqsq.errors.ConfigurationError` for ``offload=True`` without a
        bucket, :class:`~aiosqsq.errors.MessageRefusedError` if SQS refuses it for its
        content (its S3 object, if any, is deleted), and
        :class:`~aiosqsq.errors.BackendError` if the request fails otherwise.
        """
        self._check_offload(offload)
        entry = self._entry(payload, delay_s, attributes, group_id, deduplication_id)
        url = await self.queue_url(queue)  # before a PUT: a missing queue leaves no object
        if self.large_payloads is None:
            return await self._producer.send(url, entry)
        entry = await self.large_payloads.offload(entry, offload)
        try:
            return await self._producer.send(url, entry)
        except MessageRefusedError:  # refused for its content: no attempt was taken
            await self.large_payloads.discard([entry])
            raise

    async def enqueue_batch(
        self,
        payloads: Sequence[Any],
        queue: str | None = None,
        *,
        delay_s: int = 0,
        attributes: Mapping[str, str | int | float | bytes] | None = None,
        group_id: str | None = None,
        each_attributes: Sequence[Mapping[str, str | int | float | bytes] | None] | None = None,
        offload: bool | None = None,
    ) -> list[str]:
        """Send many messages in batches of up to 10 entries and 1 MiB; return their
        MessageIds in order. ``each_attributes`` gives each payload attributes of its own
        (instead of ``attributes`` for all); ``offload`` as for :meth:`enqueue`.

        Raises :class:`~aiosqsq.errors.PayloadTooLargeError` before sending anything if
        one body is over 1 MiB, the first failed PUT of a large payload (nothing sent, no
        object left), and :class:`~aiosqsq.errors.BackendError` naming the first entry SQS
        did not take (:class:`~aiosqsq.errors.MessageRefusedError` when refused for its
        content); the batches before it were sent.
        """
        self._check_offload(offload)
        if each_attributes is None:
            each_attributes = [attributes] * len(payloads)
        entries = [
            self._entry(payload, delay_s, own, group_id, None)
            for payload, own in zip(payloads, each_attributes, strict=True)
        ]
        url = await self.queue_url(queue)  # before a PUT: a missing queue leaves no object
        if self.large_payloads is not None:  # offloaded and inline ones mixed, then packed
            entries = await self.large_payloads.offload_all(entries, offload)
        batches = [
            [replace(entry, id=str(i)) for i, entry in enumerate(batch)]
            for batch in pack(entries)  # 10 entries and 1 MiB per request, SQS's caps
        ]
        ids: list[str] = []
        for number, batch in enumerate(batches):
            try:
                result = await self.backend.send_batch(url, batch)
            except BackendError:
                # this batch may have been taken (a lost answer): its objects stay
                await self._discard(batches[number + 1 :])
                raise
            missing = [entry for entry in batch if entry.id not in result.message_ids]
            if missing:
                # objects only of what SQS refused for its content: nothing else is sure
                refused = {failure.id for failure in result.failed if failure.sender_fault}
                await self._discard([[e for e in batch if e.id in refused], *batches[number + 1 :]])
                raise _send_failed(result, missing[0].id, queue or url)
            ids.extend(result.message_ids[entry.id] for entry in batch)
        return ids

    async def _discard(self, batches: Sequence[Sequence[SendEntry]]) -> None:
        """Delete the S3 objects of offloaded entries SQS did not take."""
        if self.large_payloads is not None:
            await self.large_payloads.discard(entry for batch in batches for entry in batch)

    def _check_offload(self, offload: bool | None) -> None:
        if offload and self.large_payloads is None:
            raise ConfigurationError(
                "offload=True needs large payloads on: set QUEUE_LARGE_PAYLOAD_BUCKET to the "
                "S3 bucket that holds them"
            )

    def _entry(
        self,
        payload: Any,
        delay_s: int,
        attributes: Mapping[str, str | int | float | bytes] | None,
        group_id: str | None,
        deduplication_id: str | None,
    ) -> SendEntry:
        if self.large_payloads is None:
            return build_send_entry("0", payload, delay_s, attributes, group_id, deduplication_id)
        return build_send_entry(  # offload() checks the size once the body is a pointer
            "0",
            payload,
            delay_s,
            attributes,
            group_id,
            deduplication_id,
            max_attributes=USER_ATTRIBUTES,
            max_bytes=None,
        )

    async def dequeue(
        self,
        queue: str | None = None,
        *,
        max_messages: int | None = None,
        wait_time_s: float | None = None,
    ) -> list[QueueMessage]:
        """Receive up to ``max_messages`` messages, long polling up to ``wait_time_s``
        (defaults: QUEUE_MAX_MESSAGES and QUEUE_WAIT_TIME_SECONDS). Each stays hidden for
        the visibility timeout: :meth:`ack` or :meth:`nack` it before then."""
        return await self.backend.receive(
            await self.queue_url(queue),
            max_messages=max_messages or self.settings.max_messages,
            wait_time_s=self.settings.wait_time_seconds if wait_time_s is None else wait_time_s,
            visibility_timeout_s=self.settings.visibility_timeout,
        )

    async def ack(self, message: QueueMessage) -> None:
        """Delete ``message`` (it was handled)."""
        result = await self.backend.delete_batch(
            message.queue_url, [DeleteEntry("0", message.receipt_handle)]
        )
        _raise_first(result.failed, "delete", message)

    async def nack(self, message: QueueMessage, delay_s: float = 0) -> None:
        """Make ``message`` visible again after ``delay_s`` seconds (not deleted)."""
        result = await self.backend.change_visibility_batch(
            message.queue_url, [VisibilityEntry("0", message.receipt_handle, delay_s)]
        )
        _raise_first(result.failed, "visibility change", message)


def build_send_entry(
    entry_id: str,
    payload: Any,
    delay_s: int,
    attributes: Mapping[str, str | int | float | bytes] | None,
    group_id: str | None,
    deduplication_id: str | None,
    *,
    max_attributes: int = MAX_MESSAGE_ATTRIBUTES,
    max_bytes: int | None = MAX_MESSAGE_BYTES,
) -> SendEntry:
    """A checked :class:`SendEntry`: encodes the payload and the attributes.

    ``max_attributes`` is 9 with large payloads on (one is reserved for the size
    attribute); ``max_bytes`` None leaves the size to the large-payload offload.
    """
    if not 0 <= delay_s <= MAX_DELAY_S:
        raise ValueError(f"delay_s={delay_s!r}: SQS allows 0 to {MAX_DELAY_S} seconds")
    body = encode(payload)
    if attributes and len(attributes) > max_attributes:
        reserved = (
            ""
            if max_attributes == MAX_MESSAGE_ATTRIBUTES
            else f" of its {MAX_MESSAGE_ATTRIBUTES} with large payloads on (one is reserved "
            "for the payload's size attribute)"
        )
        raise ValueError(
            f"the message has {len(attributes)} message attributes; SQS allows "
            f"{max_attributes}{reserved} (send middleware counts: it may have added some)"
        )
    message_attributes = encode_attributes(attributes or {})
    size = message_size(body, message_attributes)
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLargeError(
            f"message of {size} bytes (body and attributes) is over SQS's limit of "
            f"{MAX_MESSAGE_BYTES} bytes: store the payload elsewhere (e.g. S3) and send a reference"
        )
    return SendEntry(entry_id, body, delay_s, message_attributes, group_id, deduplication_id)


def encode_attributes(attributes: Mapping[str, str | int | float | bytes]) -> MessageAttributes:
    """Plain values to SQS message attributes: str -> String, numbers -> Number, bytes -> Binary."""
    encoded: dict[str, MessageAttributeValue] = {}
    for name, value in attributes.items():
        if isinstance(value, bytes):
            encoded[name] = {"DataType": "Binary", "BinaryValue": value}
        elif isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError(f"attribute {name!r}: expected str, int, float or bytes")
        elif isinstance(value, str):
            encoded[name] = {"DataType": "String", "StringValue": value}
        else:
            encoded[name] = {"DataType": "Number", "StringValue": str(value)}
    return encoded


def _raise_first(failed: Sequence[Any], action: str, message: QueueMessage) -> None:
    if failed:
        failure = failed[0]
        raise BackendError(
            failure.code, f"{action} of message {message.message_id} failed: {failure.message}"
        )


def _send_failed(result: BatchResult, entry_id: str, queue: str) -> BackendError:
    """The error for the entry ``entry_id`` that ``result`` has no MessageId for:
    :class:`MessageRefusedError` when SQS refused it for its content."""
    for failure in result.failed:
        if failure.id == entry_id:
            message = f"sending to {queue} failed: {failure.message}"
            if failure.sender_fault:
                return MessageRefusedError(failure.code, message)
            return BackendError(failure.code, message, retryable=True)
    return BackendError(
        "SendFailed", f"sending to {queue}: SQS returned no outcome for a message", retryable=True
    )
