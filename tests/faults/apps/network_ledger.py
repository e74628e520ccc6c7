"""Records each handler call as JSON lines in ``$LEDGER_PATH``: ``start`` when it begins and
``ok`` when it returns, with the payload (``seq``), MessageId, receive count, pid and the
wall-clock time ``t``. ``os.write`` on an ``O_APPEND`` descriptor: each line lands whole,
even from two processes, and survives a SIGKILL. ``$HANDLER_DELAY_S`` makes each call take
that long; a call cancelled meanwhile (lease lost, shutdown) leaves a ``start`` only."""

from __future__ import annotations

import json
import os
import time

import anyio

from aiosqsq import App, Message

app = App()
_LEDGER = os.open(os.environ["LEDGER_PATH"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_DELAY_S = float(os.environ.get("HANDLER_DELAY_S", "0"))


def _record(event: str, seq: str, message: Message) -> None:
    line = {
        "event": event,
        "seq": seq,
        "mid": message.message_id,
        "receive_count": message.receive_count,
        "pid": os.getpid(),
        "t": time.time(),
    }
    os.write(_LEDGER, f"{json.dumps(line)}\n".encode())


@app.handler()
async def record(payload: str, message: Message) -> None:
    _record("start", payload, message)
    await anyio.sleep(_DELAY_S)
    _record("ok", payload, message)
