"""An app that records each handler call's life in a ledger, for the fault tests.

Every call appends lines to ``$LEDGER_PATH`` (see ``ledger_writer.py``): ``start`` when the
handler begins, then ``ok`` when it returns or ``fail`` when it is cancelled (shutdown
grace expired, lease lost) or raises, with the exception's class in ``error``. ``seq`` is
the body's ``{"seq": n}``.

A call lasts a uniform random time in ``[$HANDLER_MIN_S, $HANDLER_MAX_S]`` (default 0).
"""

from __future__ import annotations

import os
import random

import anyio

from aiosqsq import App, Message
from tests.faults.apps.ledger_writer import record

app = App()
_MIN_S = float(os.environ.get("HANDLER_MIN_S", "0"))
_MAX_S = max(_MIN_S, float(os.environ.get("HANDLER_MAX_S", str(_MIN_S))))


@app.handler()
async def lifecycle(payload: dict[str, int], message: Message) -> None:
    seq = payload["seq"]
    record("start", seq, message)
    try:
        duration_s = random.uniform(_MIN_S, _MAX_S)
        if duration_s > 0:
            await anyio.sleep(duration_s)
    except BaseException as exc:  # cancellation included: record it, then let it go on
        record("fail", seq, message, error=type(exc).__name__)
        raise
    record("ok", seq, message)
