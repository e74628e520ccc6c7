"""Records every handled message as a JSON line in ``$LEDGER_PATH``: the payload (``seq``),
the worker's pid and the receive count. ``os.write`` on an ``O_APPEND`` descriptor: each
line lands whole, even from two processes, and survives a SIGKILL. ``$HANDLER_DELAY_S``
makes each call take that long."""

from __future__ import annotations

import json
import os

import anyio

from aiosqsq import App, Message

app = App()
_LEDGER = os.open(os.environ["LEDGER_PATH"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_DELAY_S = float(os.environ.get("HANDLER_DELAY_S", "0"))


@app.handler()
async def record(payload: str, message: Message) -> None:
    await anyio.sleep(_DELAY_S)
    line = {"seq": payload, "pid": os.getpid(), "receive_count": message.receive_count}
    os.write(_LEDGER, f"{json.dumps(line)}\n".encode())
