"""What runs per message: middleware, envelope, decoding and the handler call, built once
per handler when the app starts (see :mod:`aiosqsq.middleware` for the order)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import anyio

from aiosqsq.backends.base import MAX_MESSAGE_BYTES, QueueMessage
from aiosqsq.codec import PayloadError
from aiosqsq.engine.batch import BatchProcess
from aiosqsq.engine.consumer import Process
from aiosqsq.engine.settle import SUCCEEDED, BadPayload, Failed, Outcome
from aiosqsq.envelopes import S3Record, Unwrapped, unwrap
from aiosqsq.errors import describe_error
from aiosqsq.handler import HandlerSpec
from aiosqsq.large_payload import LargePayloads, is_pointer_message
from aiosqsq.message import Lease, Message
from aiosqsq.middleware import MessageBatch, Middleware, chain

logger = logging.getLogger("aiosqsq.consumer")


_PARALLEL_FETCHES = 16  # S3 GETs at once for one batch of a batch handler


def build_process(
    spec: HandlerSpec,
    middleware: Sequence[Middleware],
    resources: Mapping[str, Any],
    *,
    payloads: LargePayloads | None = None,
) -> Process:
    """The engine's per-message call for a single-message handler; with ``payloads``, a
    pointer's payload is fetched from S3 first (see :func:`with_payloads`)."""
    process = _build_process(spec, middleware, resources, payloads)
    if payloads is None:
        return process
    return with_payloads(process, payloads, spec.max_payload_bytes)


def with_payloads(
    process: Process, payloads: LargePayloads, max_bytes: int | None = None
) -> Process:
    """``process`` given the payload in place of an S3 pointer, before middleware,
    decoding and the handler. The message already holds its handler slot, so no fetch
    starts without one. A pointer that will never resolve, or a payload over
    ``max_bytes`` (default QUEUE_LARGE_PAYLOAD_MAX_BYTES), raises PayloadError (the
    dead-letter queue, with the reason); a missing object with ignore_missing set
    returns (deleted, unhandled); throttling and network errors propagate (retried)."""

    async def fetching(queue_message: QueueMessage, lease: Lease) -> None:
        if is_pointer_message(queue_message.message_attributes):
            fetched = await payloads.fetch(queue_message, max_bytes)
            if fetched is None:
                return
            queue_message = fetched
        await process(queue_message, lease)

    return fetching


def _build_process(
    spec: HandlerSpec,
    middleware: Sequence[Middleware],
    resources: Mapping[str, Any],
    large: LargePayloads | None,
) -> Process:
    func, decoder, envelope = spec.func, spec.decoder, spec.envelope
    max_chars = _max_chars(spec, large)
    payload_name, message_name = spec.payload_name, spec.message_name
    base_kwargs = dict(resources)

    async def call(payload: Any, message: Message | None) -> None:
        kwargs = dict(base_kwargs)
        if payload_name is not None:
            kwargs[payload_name] = payload
        if message_name is not None:
            kwargs[message_name] = message
        await func(**kwargs)

    async def handle(queue_message: QueueMessage, message: Message | None) -> None:
        if envelope is None:
            await call(decoder.decode(queue_message.body, max_chars=max_chars), message)
            return
        unwrapped = unwrap(envelope, queue_message.body, max_chars=max_chars)
        if message is not None:
            message._unwrapped(unwrapped.metadata)
        if envelope != "s3":
            await call(unwrapped.payload(decoder, max_chars), message)
            return
        if _is_test_event(unwrapped, queue_message):
            return
        for record in unwrapped.records:  # one call per object; a failure retries them all
            await call(record, message)

    if not middleware and spec.message_name is None:

        async def process_plain(queue_message: QueueMessage, lease: Lease) -> None:
            await handle(queue_message, None)

        return process_plain

    layers = tuple(middleware)

    async def process(queue_message: QueueMessage, lease: Lease) -> None:
        message = Message.from_queue_message(queue_message, lease)
        if not layers:
            await handle(queue_message, message)
            return

        async def innermost() -> None:
            await handle(queue_message, message)

        await chain(layers, message, innermost)()

    return process


def build_batch_process(
    spec: HandlerSpec,
    middleware: Sequence[Middleware],
    resources: Mapping[str, Any],
    *,
    payloads: LargePayloads | None = None,
) -> BatchProcess:
    """The engine's per-batch call for a batch handler (see :data:`BatchProcess`); with
    ``payloads``, pointers' payloads are fetched from S3 first (see
    :func:`batch_with_payloads`)."""
    process = _build_batch_process(spec, middleware, resources, payloads)
    if payloads is None:
        return process
    return batch_with_payloads(process, payloads, spec.max_payload_bytes)


def batch_with_payloads(
    process: BatchProcess, payloads: LargePayloads, max_bytes: int | None = None
) -> BatchProcess:
    """``process`` given payloads in place of S3 pointers (up to 16 GETs at once): a
    message whose pointer will never resolve (or whose payload is over ``max_bytes``)
    is a bad payload, one whose fetch failed for now is retried, and neither is passed
    on; the rest keep their order."""

    async def fetching(
        queue_messages: Sequence[QueueMessage],
        leases: Sequence[Lease],
        outcomes: MutableMapping[int, Outcome],
    ) -> None:
        if not any(is_pointer_message(m.message_attributes) for m in queue_messages):
            await process(queue_messages, leases, outcomes)
            return
        resolved = await _fetch_all(payloads, max_bytes, queue_messages, outcomes)
        keep = [i for i in range(len(queue_messages)) if i not in outcomes]
        if not keep:
            return
        theirs: dict[int, Outcome] = {}
        try:
            await process([resolved[i] for i in keep], [leases[i] for i in keep], theirs)
        finally:
            for index, outcome in theirs.items():
                outcomes[keep[index]] = outcome

    return fetching


async def _fetch_all(
    payloads: LargePayloads,
    max_bytes: int | None,
    queue_messages: Sequence[QueueMessage],
    outcomes: MutableMapping[int, Outcome],
) -> list[QueueMessage]:
    """Each message with its payload fetched; an outcome set for those not to pass on."""
    resolved = list(queue_messages)
    limiter = anyio.CapacityLimiter(_PARALLEL_FETCHES)

    async def fetch(index: int, queue_message: QueueMessage) -> None:
        async with limiter:
            try:
                fetched = await payloads.fetch(queue_message, max_bytes)
            except PayloadError as error:
                outcomes[index] = BadPayload(error)
                return
            except Exception as exc:
                logger.error(
                    "fetching the large payload of message %s failed (%s); it is retried",
                    queue_message.message_id,
                    describe_error(exc),
                )
                outcomes[index] = Failed(error_class=type(exc).__name__)
                return
        if fetched is None:  # missing, and ignore_missing set: deleted unhandled
            outcomes[index] = SUCCEEDED
        else:
            resolved[index] = fetched

    async with anyio.create_task_group() as task_group:
        for index, queue_message in enumerate(queue_messages):
            if is_pointer_message(queue_message.message_attributes):
                task_group.start_soon(fetch, index, queue_message)
    return resolved


def _build_batch_process(
    spec: HandlerSpec,
    middleware: Sequence[Middleware],
    resources: Mapping[str, Any],
    large: LargePayloads | None,
) -> BatchProcess:
    func, decoder, envelope = spec.func, spec.decoder, spec.envelope
    max_chars = _max_chars(spec, large)
    payload_name, message_name = spec.payload_name, spec.message_name
    layers = tuple(middleware)
    # Message objects are made only for whoever sees them: middleware, the handler, an
    # envelope's metadata.
    wants_messages = bool(layers) or message_name is not None

    async def process(
        queue_messages: Sequence[QueueMessage],
        leases: Sequence[Lease],
        outcomes: MutableMapping[int, Outcome],
    ) -> None:
        messages = (
            MessageBatch(
                Message.from_queue_message(m, lease)
                for m, lease in zip(queue_messages, leases, strict=True)
            )
            if wants_messages
            else None
        )

        async def innermost() -> list[Message]:
            payloads: list[Any] = []
            owners: list[int] = []  # the index in the batch of each payload
            for index, queue_message in enumerate(queue_messages):
                try:
                    if envelope is None:
                        payloads.append(decoder.decode(queue_message.body, max_chars=max_chars))
                        owners.append(index)
                        continue
                    message = messages[index] if messages is not None else None
                    items = _payloads(spec, queue_message, message, max_chars)
                except PayloadError as error:
                    outcomes[index] = BadPayload(error)
                    continue
                payloads.extend(items)
                owners.extend([index] * len(items))
            if not payloads:
                return []
            kwargs = dict(resources)
            if payload_name is not None:
                kwargs[payload_name] = payloads
            if message_name is not None and messages is not None:
                kwargs[message_name] = [messages[index] for index in owners]
            returned = await func(**kwargs)
            if not returned:
                return []
            failed_ids = _failed_ids(returned, {m.message_id for m in queue_messages})
            failed: list[Message] = []
            for index in dict.fromkeys(owners):
                if queue_messages[index].message_id in failed_ids:
                    outcomes[index] = Failed(error_class="ReturnedAsFailed")
                    if messages is not None:
                        failed.append(messages[index])
            return failed

        if layers and messages is not None:
            await chain(layers, messages, innermost)()
        else:
            await innermost()

    return process


def _max_chars(spec: HandlerSpec, large: LargePayloads | None) -> int:
    """The longest body a handler decodes: SQS's limit, or one fetched from S3 (the
    handler's ``max_payload_bytes``, else QUEUE_LARGE_PAYLOAD_MAX_BYTES)."""
    if large is None:
        return MAX_MESSAGE_BYTES
    return max(MAX_MESSAGE_BYTES, spec.max_payload_bytes or large.max_bytes)


def _failed_ids(returned: Any, batch_ids: set[str]) -> set[str]:
    """The MessageIds a batch handler returned as failed. Raises TypeError for anything
    else (a payload, an id of no message of the batch): the whole batch then fails,
    rather than the messages it meant being deleted."""
    ids = set()
    for item in returned:
        message_id = item.message_id if isinstance(item, Message) else item
        if not isinstance(message_id, str) or message_id not in batch_ids:
            raise TypeError(
                "a batch handler returns the Messages (or MessageIds) of its batch that "
                f"failed, or None; it returned a {type(item).__name__} that is neither"
            )
        ids.add(message_id)
    return ids


def _payloads(
    spec: HandlerSpec, queue_message: QueueMessage, message: Message | None, max_chars: int
) -> list[Any]:
    """The payloads one enveloped message gives a batch handler: one, or one per S3
    record (none for S3's test event). Raises PayloadError."""
    assert spec.envelope is not None
    unwrapped = unwrap(spec.envelope, queue_message.body, max_chars=max_chars)
    if message is not None:
        message._unwrapped(unwrapped.metadata)
    if spec.envelope != "s3":
        return [unwrapped.payload(spec.decoder, max_chars)]
    if _is_test_event(unwrapped, queue_message):
        return []
    records: list[S3Record] = list(unwrapped.records)
    return records


def _is_test_event(unwrapped: Unwrapped, queue_message: QueueMessage) -> bool:
    if unwrapped.is_test_event:
        logger.info(
            "message %s on %s is S3's s3:TestEvent (sent when notifications are "
            "configured): deleted without calling the handler",
            queue_message.message_id,
            queue_message.queue_url,
        )
    return unwrapped.is_test_event
