"""An app with a strict pydantic payload that records each handler call in a ledger.

The handler takes :class:`Order` (``extra="forbid"``), so a body that is not such an
object must never reach it; its validator raises AttributeError, KeyError or TypeError
(which pydantic lets through) for skus starting ``raise-``. Every call appends JSON lines
to ``$LEDGER_PATH``: ``start`` when the handler begins, then ``ok`` when it returns,
``fail`` when it raises or ``cancelled`` when it is cancelled (its timeout). Besides the
fields every ledger line has (see ``ledger_writer.py``), each has ``sku`` and ``group``
(the body's), ``fifo_group`` (MessageGroupId) and ``attributes`` (message attribute names).

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

import os

import anyio
from pydantic import BaseModel, ConfigDict, field_validator

from aiosqsq import App, Message
from tests.faults.apps.ledger_writer import record


class Order(BaseModel):
    """The only payload the handler accepts."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    sku: str
    group: str = ""

    @field_validator("sku")
    @classmethod
    def _careless(cls, sku: str) -> str:
        """Validation code as careless applications write it: a sku starting ``raise-``
        makes it raise what pydantic does not turn into a ValidationError, its text
        quoting the value."""
        if sku.startswith("raise-attribute"):
            return None.strip() or sku  # type: ignore[attr-defined]  # AttributeError
        if sku.startswith("raise-key"):
            return {"known": sku}[sku]  # KeyError, quoting the sku
        if sku.startswith("raise-type"):
            raise TypeError(f"cannot price {sku}")
        return sku


def _seqs(name: str) -> frozenset[int]:
    return frozenset(int(part) for part in os.environ.get(name, "").split(",") if part)


app = App()
_FAIL = _seqs("STRICT_FAIL_SEQS")
_HANG = _seqs("STRICT_HANG_SEQS")
_FAIL_FIRST_SEQ, _, _FAIL_FIRST_N = os.environ.get("STRICT_FAIL_FIRST", "-1:0").partition(":")
_DELAY_S = float(os.environ.get("STRICT_DELAY_S", "0"))
_TIMEOUT = os.environ.get("STRICT_TIMEOUT_S")


def _record(event: str, order: Order, message: Message) -> None:
    record(
        event,
        order.seq,
        message,
        sku=order.sku,
        group=order.group,
        fifo_group=message.group_id,
        attributes=sorted(message.message_attributes),
    )


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
