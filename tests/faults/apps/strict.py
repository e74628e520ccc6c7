"""An app with a strict pydantic payload that records each handler call in a ledger.

The handler takes :class:`Order` (``extra="forbid"``), so a body that is not such an
object must never reach it. Every call appends JSON lines to ``$LEDGER_PATH``: ``start``
when the handler begins, then ``ok`` when it returns, ``fail`` when it raises or
``cancelled`` when it is cancelled (its timeout). Each line has ``event``, ``seq``,
``sku``, ``group`` (the body's), ``mid`` (MessageId), ``receive_count``, ``fifo_group``
(MessageGroupId), ``attributes`` (message attribute names), ``t`` (``time.time()``) and
``pid``. ``os.write`` on an ``O_APPEND`` descriptor: each line lands whole.

Knobs, from the environment:

* ``STRICT_FAIL_SEQS``: comma-separated seqs whose handler always raises;
* ``STRICT_FAIL_FIRST``: ``seq:n``, that seq raises on its first ``n`` receives;
* ``STRICT_HANG_SEQS``: seqs whose handler awaits forever (until cancelled);
* ``STRICT_TIMEOUT_S``: the handler's ``timeout_s`` (default none);
* ``STRICT_DELAY_S``: how long each other call takes (default 0).

A failing call raises an error that quotes ``repr(app)`` and ``repr(app.settings)``, as
careless application code might: neither may reveal a secret.
"""

from __future__ import annotations

import json
import os
import time

import anyio
from pydantic import BaseModel, ConfigDict

from aiosqsq import App, Message


class Order(BaseModel):
    """The only payload the handler accepts."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    sku: str
    group: str = ""


def _seqs(name: str) -> frozenset[int]:
    return frozenset(int(part) for part in os.environ.get(name, "").split(",") if part)


app = App()
_LEDGER = os.open(os.environ["LEDGER_PATH"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_FAIL = _seqs("STRICT_FAIL_SEQS")
_HANG = _seqs("STRICT_HANG_SEQS")
_FAIL_FIRST_SEQ, _, _FAIL_FIRST_N = os.environ.get("STRICT_FAIL_FIRST", "-1:0").partition(":")
_DELAY_S = float(os.environ.get("STRICT_DELAY_S", "0"))
_TIMEOUT = os.environ.get("STRICT_TIMEOUT_S")


def _record(event: str, order: Order, message: Message) -> None:
    line = {
        "event": event,
        "seq": order.seq,
        "sku": order.sku,
        "group": order.group,
        "mid": message.message_id,
        "receive_count": message.receive_count,
        "fifo_group": message.group_id,
        "attributes": sorted(message.message_attributes),
        "t": time.time(),
        "pid": os.getpid(),
    }
    os.write(_LEDGER, f"{json.dumps(line)}\n".encode())


def _fails(order: Order, message: Message) -> bool:
    if order.seq in _FAIL:
        return True
    return order.seq == int(_FAIL_FIRST_SEQ) and message.receive_count <= int(_FAIL_FIRST_N)


@app.handler(timeout_s=float(_TIMEOUT) if _TIMEOUT else None)
async def handle(order: Order, message: Message) -> None:
    _record("start", order, message)
    try:
        if order.seq in _HANG:
            await anyio.sleep_forever()
        if _DELAY_S:
            await anyio.sleep(_DELAY_S)
        if _fails(order, message):
            raise RuntimeError(f"order {order.seq} refused by {app!r} with {app.settings!r}")
    except anyio.get_cancelled_exc_class():
        _record("cancelled", order, message)
        raise
    except Exception:
        _record("fail", order, message)
        raise
    _record("ok", order, message)
