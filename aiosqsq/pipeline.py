"""What runs per message: middleware, envelope, decoding and the handler call, built once
per handler when the app starts (see :mod:`aiosqsq.middleware` for the order)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from aiosqsq.backends.base import QueueMessage
from aiosqsq.codec import PayloadError
from aiosqsq.engine.batch import BatchProcess
from aiosqsq.engine.consumer import Process
from aiosqsq.engine.settle import BadPayload, Failed, Outcome
from aiosqsq.envelopes import S3Record, Unwrapped, unwrap
from aiosqsq.handler import HandlerSpec
from aiosqsq.message import Lease, Message
from aiosqsq.middleware import MessageBatch, Middleware, chain

logger = logging.getLogger("aiosqsq.consumer")


def build_process(
    spec: HandlerSpec, middleware: Sequence[Middleware], resources: Mapping[str, Any]
) -> Process:
    """The engine's per-message call for a single-message handler."""
    func, decoder, envelope = spec.func, spec.decoder, spec.envelope
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
            await call(decoder.decode(queue_message.body), message)
            return
        unwrapped = unwrap(envelope, queue_message.body)
        if message is not None:
            message._unwrapped(unwrapped.metadata)
        if envelope != "s3":
            await call(unwrapped.payload(decoder), message)
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
    spec: HandlerSpec, middleware: Sequence[Middleware], resources: Mapping[str, Any]
) -> BatchProcess:
    """The engine's per-batch call for a batch handler (see :data:`BatchProcess`)."""
    func, decode, envelope = spec.func, spec.decoder.decode, spec.envelope
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
                        payloads.append(decode(queue_message.body))
                        owners.append(index)
                        continue
                    message = messages[index] if messages is not None else None
                    items = _payloads(spec, queue_message, message)
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
            failed_ids = {
                item.message_id if isinstance(item, Message) else str(item) for item in returned
            }
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


def _payloads(
    spec: HandlerSpec, queue_message: QueueMessage, message: Message | None
) -> list[Any]:
    """The payloads one enveloped message gives a batch handler: one, or one per S3
    record (none for S3's test event). Raises PayloadError."""
    assert spec.envelope is not None
    unwrapped = unwrap(spec.envelope, queue_message.body)
    if message is not None:
        message._unwrapped(unwrapped.metadata)
    if spec.envelope != "s3":
        return [unwrapped.payload(spec.decoder)]
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
