"""An app that records each handler call's life in a ledger, for the fault tests.

Every call appends JSON lines to ``$LEDGER_PATH``: ``start`` when the handler begins,
then ``ok`` when it returns or ``fail`` when it is cancelled (shutdown grace expired,
lease lost) or raises. Each line has ``event``, ``seq`` (from the body ``{"seq": n}``),
``mid`` (MessageId), ``receive_count``, ``t`` (``time.time()``) and ``pid``.

``os.write`` on an ``O_APPEND`` descriptor: each line lands whole, even from two
processes, and is in the kernel's page cache once written, so it survives a SIGKILL.

A call lasts a uniform random time in ``[$HANDLER_MIN_S, $HANDLER_MAX_S]`` (default 0).
"""

from __future__ import annotations

import json
import os
import random
import time

import anyio

from aiosqsq import App, Message

app = App()
_LEDGER = os.open(os.environ["LEDGER_PATH"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_MIN_S = float(os.environ.get("HANDLER_MIN_S", "0"))
_MAX_S = max(_MIN_S, float(os.environ.get("HANDLER_MAX_S", str(_MIN_S))))


def _record(event: str, seq: int, message: Message, **extra: str) -> None:
    line = {
        "event": event,
        "seq": seq,
        "mid": message.message_id,
        "receive_count": message.receive_count,
        "t": time.time(),
        "pid": os.getpid(),
        **extra,
    }
    os.write(_LEDGER, f"{json.dumps(line)}\n".encode())


@app.handler()
async def lifecycle(payload: dict[str, int], message: Message) -> None:
    seq = payload["seq"]
    _record("start", seq, message)
    try:
        duration_s = random.uniform(_MIN_S, _MAX_S)
        if duration_s > 0:
            await anyio.sleep(duration_s)
    except BaseException as exc:  # cancellation included: record it, then let it go on
        _record("fail", seq, message, error=type(exc).__name__)
        raise
    _record("ok", seq, message)
