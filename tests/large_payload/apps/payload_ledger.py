"""Records every handled payload as a JSON line in ``$LEDGER_PATH``: its id, size and
SHA-256, the message attributes the handler saw, and whether any middleware or handler
was shown an S3 pointer instead of the payload. ``BATCH=1`` makes the handler a batch
handler."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from aiosqsq import App, CallNext, Message

app = App()
_LEDGER = os.open(os.environ["LEDGER_PATH"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_POINTER = '["software.amazon.payloadoffloading'


def _record(payload: dict[str, Any], message: Message, seen_pointer: bool) -> None:
    line = {
        "id": payload["id"],
        "size": len(message.body.encode()),
        "sha256": hashlib.sha256(message.body.encode()).hexdigest(),
        "attributes": sorted(message.message_attributes),
        "pointer_seen": seen_pointer or message.body.startswith(_POINTER),
        "receive_count": message.receive_count,
    }
    os.write(_LEDGER, f"{json.dumps(line)}\n".encode())


_seen_pointer: set[str] = set()


@app.middleware
async def watch(message: Any, call_next: CallNext) -> Any:
    for each in message if isinstance(message, list) else [message]:
        if each.body.startswith(_POINTER):
            _seen_pointer.add(each.message_id)
    return await call_next()


if os.environ.get("BATCH") == "1":

    @app.handler(batch=True, max_batch_size=20, max_wait_s=0.2)
    async def record_batch(payloads: list[dict[str, Any]], messages: list[Message]) -> None:
        for payload, message in zip(payloads, messages, strict=True):
            _record(payload, message, message.message_id in _seen_pointer)

else:

    @app.handler()
    async def record(payload: dict[str, Any], message: Message) -> None:
        _record(payload, message, message.message_id in _seen_pointer)
