"""Payloads past SQS's size limit, kept in S3 and sent as a pointer, in the wire format of
AWS's extended clients (Java, Python, Spring Cloud AWS), so either side may be theirs.

On the wire an offloaded message is::

    body:       ["software.amazon.payloadoffloading.PayloadS3Pointer",
                 {"s3BucketName": "<bucket>", "s3Key": "<key>"}]
    attribute:  ExtendedPayloadSize (Number) = the payload's size in bytes

(``SQSLargePayloadSize`` with ``QUEUE_LARGE_PAYLOAD_SIZE_ATTRIBUTE``, for Java consumers
that expect the legacy name). A received message is a pointer when it carries either
attribute; either pointer class is accepted (legacy:
``com.amazon.sqs.javamessaging.MessageS3Pointer``).

:class:`LargePayloads` is the policy: which bodies to offload (over
``QUEUE_LARGE_PAYLOAD_THRESHOLD``, or all), how a pointer is fetched (checked against its
size attribute and ``QUEUE_LARGE_PAYLOAD_MAX_BYTES`` before anything is loaded), and the
cleanup of objects whose message was deleted. The store itself is an
:class:`~aiosqsq.backends.object_store.ObjectStore`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

import anyio

from aiosqsq.backends.base import (
    MAX_MESSAGE_BYTES,
    MessageAttributes,
    QueueBackend,
    QueueMessage,
    SendEntry,
    message_size,
)
from aiosqsq.backends.object_store import (
    MAX_DELETE_KEYS,
    ObjectNotFoundError,
    ObjectStore,
    ObjectTooLargeError,
    create_object_store,
    is_loopback_url,
)
from aiosqsq.codec import PayloadError
from aiosqsq.errors import AccessError, BackendError, PayloadTooLargeError

if TYPE_CHECKING:
    from aiosqsq.settings import QueueSettings

logger = logging.getLogger("aiosqsq.large_payload")

POINTER_CLASS: Final = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY_POINTER_CLASS: Final = "com.amazon.sqs.javamessaging.MessageS3Pointer"
SIZE_ATTRIBUTE: Final = "ExtendedPayloadSize"
LEGACY_SIZE_ATTRIBUTE: Final = "SQSLargePayloadSize"
SIZE_ATTRIBUTES: Final = (SIZE_ATTRIBUTE, LEGACY_SIZE_ATTRIBUTE)
#: Message attributes a sender may use when large payloads are on: one of SQS's 10 is
#: reserved for the size attribute.
USER_ATTRIBUTES: Final = 9
_PARALLEL_PUTS: Final = 8
_SHOWN_CHARS: Final = 100


@dataclass(frozen=True, slots=True)
class PayloadPointer:
    """Where an offloaded payload is: ``s3://bucket/key``."""

    bucket: str
    key: str

    def body(self, pointer_class: str = POINTER_CLASS) -> str:
        """The message body that points here, as the AWS extended clients write it."""
        return json.dumps([pointer_class, {"s3BucketName": self.bucket, "s3Key": self.key}])

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_pointer_message(attributes: MessageAttributes) -> bool:
    """Whether a received message's attributes mark its body as an S3 pointer."""
    return SIZE_ATTRIBUTE in attributes or LEGACY_SIZE_ATTRIBUTE in attributes


def parse_pointer(body: str) -> PayloadPointer:
    """The pointer in ``body``; raises :class:`PayloadError` saying what is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _bad("PayloadPointerError", "the body is not JSON (truncated?)") from None
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[1], dict)):
        raise _bad("PayloadPointerError", "the body is not [class, {s3BucketName, s3Key}]")
    if data[0] not in (POINTER_CLASS, LEGACY_POINTER_CLASS):
        raise _bad(
            "PayloadPointerError",
            f"unknown pointer class {_shown(data[0])}: expected {POINTER_CLASS} or "
            f"{LEGACY_POINTER_CLASS}",
        )
    fields = data[1]
    for name in ("s3BucketName", "s3Key"):
        if not isinstance(fields.get(name), str) or not fields[name]:
            raise _bad("PayloadPointerError", f"{name} is missing or not a non-empty string")
    return PayloadPointer(fields["s3BucketName"], fields["s3Key"])


def claimed_size(attributes: MessageAttributes) -> int:
    """The payload size the size attribute states; raises :class:`PayloadError` when it is
    not a whole number of bytes."""
    name = SIZE_ATTRIBUTE if SIZE_ATTRIBUTE in attributes else LEGACY_SIZE_ATTRIBUTE
    text = attributes[name].get("StringValue", "")
    if not (text.isascii() and text.isdigit()) or len(text) > 15:  # "²".isdigit() too
        raise _bad("PayloadPointerError", f"the {name} attribute is not a whole number of bytes")
    return int(text)


class LargePayloads:
    """Offloads bodies to an :class:`ObjectStore`, fetches them back, and cleans up.

    Off (``None`` in the app) unless ``QUEUE_LARGE_PAYLOAD_BUCKET`` is set. The counters
    ``offloaded``, ``fetched``, ``deleted`` and ``delete_failures`` count objects.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        bucket: str,
        threshold: int = MAX_MESSAGE_BYTES,
        always: bool = False,
        prefix: str = "",
        cleanup: bool = False,
        max_bytes: int = 64 * 1024 * 1024,
        size_attribute: str = SIZE_ATTRIBUTE,
        kms_key_id: str | None = None,
        ignore_missing: bool = False,
    ) -> None:
        if size_attribute not in SIZE_ATTRIBUTES:
            raise ValueError(
                f"size_attribute {size_attribute!r}: expected one of {SIZE_ATTRIBUTES}"
            )
        self.store = store
        self.bucket = bucket
        self.threshold = threshold
        self.always = always
        self.prefix = prefix
        self.cleanup = cleanup
        self.max_bytes = max_bytes
        self.size_attribute = size_attribute
        self.kms_key_id = kms_key_id
        self.ignore_missing = ignore_missing
        self.offloaded = self.fetched = self.deleted = self.delete_failures = 0

    def __repr__(self) -> str:
        return f"LargePayloads(bucket={self.bucket!r}, store={self.store!r})"

    @classmethod
    def from_settings(cls, settings: QueueSettings, backend: QueueBackend) -> LargePayloads | None:
        """The policy ``settings`` ask for, storing where ``backend`` connects (S3 for the
        SQS backend, with its credentials and region; at QUEUE_S3_ENDPOINT_URL, else at
        a loopback QUEUE_SQS_ENDPOINT_URL, else AWS); None when no bucket is set."""
        if not settings.large_payload_bucket:
            return None
        region = getattr(backend, "region", None)
        endpoint = settings.s3_endpoint_url
        local = settings.sqs_endpoint_url
        if endpoint is None and local is not None and is_loopback_url(local):
            endpoint = local  # moto and LocalStack serve S3 on the same port (run --local)
        store = create_object_store(
            settings.backend,
            settings.sqs_config(),
            region=region if isinstance(region, str) else settings.aws_region,
            endpoint_url=endpoint,
        )
        return cls(
            store,
            bucket=settings.large_payload_bucket,
            threshold=settings.large_payload_threshold,
            always=settings.large_payload_always,
            prefix=settings.large_payload_prefix,
            cleanup=settings.large_payload_cleanup,
            max_bytes=settings.large_payload_max_bytes,
            size_attribute=settings.large_payload_size_attribute,
            kms_key_id=settings.large_payload_kms_key_id,
            ignore_missing=settings.large_payload_ignore_missing,
        )

    async def open(self) -> None:
        """Connect to the store now: a consumer does it before it starts receiving, so
        that building the S3 client (which blocks the event loop for about a second while
        botocore loads S3's model) does not stall messages in flight."""
        await self.store.open()

    async def aclose(self) -> None:
        await self.store.aclose()

    # -- producing ----------------------------------------------------------------------

    def wants(self, entry: SendEntry, offload: bool | None = None) -> bool:
        """Whether ``entry`` goes to S3: ``offload`` (a send's own choice) when given,
        else QUEUE_LARGE_PAYLOAD_ALWAYS or its size over the threshold."""
        if offload is not None:
            return offload
        return self.always or message_size(entry.body, entry.message_attributes) > (self.threshold)

    async def offload(self, entry: SendEntry, offload: bool | None = None) -> SendEntry:
        """``entry`` as it is, or, when :meth:`wants` it, with its body put in the bucket
        and replaced by a pointer.

        Raises :class:`PayloadTooLargeError` for a body over ``max_bytes`` (no consumer
        would load it) or a pointer message still over SQS's 1 MiB (its attributes), and
        :class:`~aiosqsq.errors.BackendError` if the PUT fails.
        """
        if not self.wants(entry, offload):
            return _inline(entry)
        data = entry.body.encode("utf-8", "surrogatepass")
        if len(data) > self.max_bytes:
            raise PayloadTooLargeError(
                f"payload of {len(data)} bytes is over QUEUE_LARGE_PAYLOAD_MAX_BYTES "
                f"({self.max_bytes}): consumers would refuse it; raise the limit on both sides"
            )
        pointer = PayloadPointer(self.bucket, f"{self.prefix}{uuid.uuid4()}")
        await self.store.put(pointer.bucket, pointer.key, data, kms_key_id=self.kms_key_id)
        self.offloaded += 1
        attributes: MessageAttributes = {
            **entry.message_attributes,
            self.size_attribute: {"DataType": "Number", "StringValue": str(len(data))},
        }
        body = pointer.body()
        if message_size(body, attributes) > MAX_MESSAGE_BYTES:
            raise PayloadTooLargeError(
                f"message attributes of {message_size('', attributes)} bytes leave no room for "
                f"the S3 pointer within SQS's limit of {MAX_MESSAGE_BYTES} bytes"
            )
        return replace(entry, body=body, message_attributes=attributes)

    async def offload_all(
        self, entries: Sequence[SendEntry], offload: bool | None = None
    ) -> list[SendEntry]:
        """:meth:`offload` for each entry, up to 8 PUTs at once; in order. When one
        fails, the others finish, the objects they put are deleted (nothing will point to
        them), and the first failure in order is raised."""
        done = list(entries)
        failures: dict[int, Exception] = {}
        limiter = anyio.CapacityLimiter(_PARALLEL_PUTS)

        async def one(index: int, entry: SendEntry) -> None:
            async with limiter:
                try:
                    done[index] = await self.offload(entry, True)
                except Exception as exc:
                    failures[index] = exc

        try:
            async with anyio.create_task_group() as task_group:
                for index, entry in enumerate(entries):
                    if self.wants(entry, offload):
                        task_group.start_soon(one, index, entry)
                    else:
                        _inline(entry)  # raises for a body too large to stay inline
        except BaseException:
            await self._discard_new(done, entries)
            raise
        if failures:
            await self._discard_new(done, entries)
            raise failures[min(failures)]
        return done

    async def _discard_new(self, done: Sequence[SendEntry], entries: Sequence[SendEntry]) -> None:
        """Delete the objects of the entries of ``done`` that differ from ``entries``
        (offloaded, never to be sent), shielded from a cancellation."""
        with anyio.CancelScope(shield=True):
            await self.discard(
                new for new, old in zip(done, entries, strict=True) if new is not old
            )

    # -- consuming ----------------------------------------------------------------------

    async def fetch(
        self, message: QueueMessage, max_bytes: int | None = None
    ) -> QueueMessage | None:
        """``message`` with its payload in place of the pointer and the size attribute
        removed (for a message that :func:`is_pointer_message`). ``max_bytes`` (a
        handler's own limit) replaces ``self.max_bytes`` when given.

        Raises :class:`PayloadError` for a pointer that will never resolve: malformed, to
        another bucket than ours (a queue's senders choose the pointers: aiosqsq reads
        only its own bucket), a size over ``max_bytes`` (not loaded), a missing or denied
        object, a size that does not match the attribute, a payload that is not UTF-8.
        Returns None for a missing object when ``ignore_missing`` is set (the message is
        then deleted unhandled).
        Throttling and network errors propagate (the message is retried).
        """
        size = claimed_size(message.message_attributes)
        pointer = parse_pointer(message.body)
        if pointer.bucket != self.bucket:
            raise _bad(
                "PayloadPointerError",
                f"the pointer names bucket {_shown(pointer.bucket)}, not "
                f"QUEUE_LARGE_PAYLOAD_BUCKET ({_shown(self.bucket)}): not read",
            )
        limit = self.max_bytes if max_bytes is None else max_bytes
        if size > limit:
            setting = (
                "QUEUE_LARGE_PAYLOAD_MAX_BYTES"
                if max_bytes is None
                else "the handler's max_payload_bytes"
            )
            raise _bad(
                "PayloadTooLarge",
                f"the payload of {size} bytes is over {setting} ({limit}): not loaded",
            )
        try:
            data = await self.store.get(pointer.bucket, pointer.key, max_bytes=size)
        except ObjectNotFoundError:
            if self.ignore_missing:
                logger.warning(
                    "message %s on %s points to %s, which does not exist: deleted without "
                    "calling the handler (QUEUE_LARGE_PAYLOAD_IGNORE_MISSING)",
                    message.message_id,
                    message.queue_url,
                    _shown(str(pointer)),
                )
                return None
            raise _bad(
                "PayloadObjectMissing",
                f"{_shown(str(pointer))} does not exist (deleted, expired or never stored)",
            ) from None
        except AccessError as exc:
            raise _bad(
                "PayloadObjectDenied", f"reading {_shown(str(pointer))} was denied ({exc.code})"
            ) from None
        except ObjectTooLargeError:
            raise _bad(
                "PayloadSizeMismatch",
                f"{_shown(str(pointer))} is larger than the {size} bytes its size attribute "
                "states: not loaded",
            ) from None
        except BackendError as exc:
            if exc.retryable:
                raise
            raise _bad(
                "PayloadFetchFailed", f"reading {_shown(str(pointer))} failed ({exc.code})"
            ) from None
        if len(data) != size:
            raise _bad(
                "PayloadSizeMismatch",
                f"{_shown(str(pointer))} has {len(data)} bytes; its size attribute states {size}",
            )
        try:
            body = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("PayloadPointerError", f"{_shown(str(pointer))} is not UTF-8 text") from None
        self.fetched += 1
        attributes = {
            name: value
            for name, value in message.message_attributes.items()
            if name not in SIZE_ATTRIBUTES
        }
        return replace(message, body=body, message_attributes=attributes)

    # -- cleanup ------------------------------------------------------------------------

    async def delete_objects(self, messages: Sequence[QueueMessage]) -> None:
        """Delete the objects of pointer messages that were deleted from their queue, in
        DeleteObjects requests of up to 1,000 keys: only in the bucket and under the prefix
        configured (a queue's senders choose the pointers; they choose nothing else).
        Never raises: a failure is logged and counted in ``delete_failures``, and not
        retried (the object stays, an orphan a bucket lifecycle rule can expire)."""
        await self._delete_pointed(
            (message.body, message.message_attributes) for message in messages
        )

    async def discard(self, entries: Iterable[SendEntry]) -> None:
        """Delete the objects of offloaded entries SQS did not take (refused, or never
        sent), as :meth:`delete_objects` does; inline entries are skipped. Never raises."""
        await self._delete_pointed((entry.body, entry.message_attributes) for entry in entries)

    async def _delete_pointed(self, bodies: Iterable[tuple[str, MessageAttributes]]) -> None:
        keys: dict[str, list[str]] = defaultdict(list)
        for body, attributes in bodies:
            if not is_pointer_message(attributes):
                continue
            try:
                pointer = parse_pointer(body)
            except PayloadError:
                continue  # nothing of ours to delete
            if pointer.bucket == self.bucket and pointer.key.startswith(self.prefix):
                keys[pointer.bucket].append(pointer.key)
        for bucket, bucket_keys in keys.items():
            for start in range(0, len(bucket_keys), MAX_DELETE_KEYS):
                chunk = bucket_keys[start : start + MAX_DELETE_KEYS]
                await self._delete_chunk(bucket, chunk)

    async def _delete_chunk(self, bucket: str, keys: list[str]) -> None:
        try:
            failures = await self.store.delete(bucket, keys)
        except Exception as exc:  # any failure: logged and counted, the message is gone
            self.delete_failures += len(keys)
            logger.warning(
                "deleting %d large-payload object(s) from bucket %s failed (%s: %s); they "
                "stay in the bucket",
                len(keys),
                _shown(bucket),
                type(exc).__name__,
                _shown(str(exc)),
            )
            return
        self.deleted += len(keys) - len(failures)
        if failures:
            self.delete_failures += len(failures)
            logger.warning(
                "deleting %d of %d large-payload object(s) from bucket %s failed (first: "
                "%s, %s); they stay in the bucket",
                len(failures),
                len(keys),
                _shown(bucket),
                _shown(failures[0].key),
                _shown(failures[0].code),
            )


@dataclass(frozen=True, slots=True)
class PointerInfo:
    """What an operator sees of a pointer message: where its payload is, the object's
    size, or why neither is known (``problem``)."""

    pointer: str | None
    size: int | None
    problem: str | None


async def describe_pointer(store: ObjectStore, message: QueueMessage) -> PointerInfo | None:
    """The pointer of ``message`` and its object's size (a HEAD request, the object is not
    read); None when the message is no pointer. Never raises for a bad pointer or object:
    ``problem`` says what is wrong."""
    if not is_pointer_message(message.message_attributes):
        return None
    try:
        pointer = parse_pointer(message.body)
    except PayloadError as error:
        return PointerInfo(None, None, error.reason)
    try:
        size = await store.size(pointer.bucket, pointer.key)
    except ObjectNotFoundError:
        return PointerInfo(str(pointer), None, "the object does not exist")
    except BackendError as exc:
        return PointerInfo(str(pointer), None, f"cannot read the object's size ({exc.code})")
    return PointerInfo(str(pointer), size, None)


def _inline(entry: SendEntry) -> SendEntry:
    """``entry`` kept in SQS: it must fit SQS's 1 MiB. Raises PayloadTooLargeError."""
    size = message_size(entry.body, entry.message_attributes)
    if size > MAX_MESSAGE_BYTES:
        raise PayloadTooLargeError(
            f"message of {size} bytes (body and attributes) is over SQS's limit of "
            f"{MAX_MESSAGE_BYTES} bytes and is not offloaded (offload=False, or under "
            "QUEUE_LARGE_PAYLOAD_THRESHOLD)"
        )
    return entry


def _bad(error_class: str, reason: str) -> PayloadError:
    return PayloadError(error_class, f"large payload: {reason}")


def _shown(value: object) -> str:
    """Text from a queue, safe to log or put in a reason: bounded and escaped."""
    text = value if isinstance(value, str) else type(value).__name__
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "..."
    return repr(text)  # repr escapes control characters
