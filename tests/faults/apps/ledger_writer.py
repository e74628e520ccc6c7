"""The ledger a fault-test app appends to: one JSON line per step of a handler call, in
``$LEDGER_PATH`` (read back by ``tests/faults/ledger.py``).

Each line has ``event``, ``seq`` (from the body), ``mid`` (MessageId), ``receive_count``,
``t`` (``time.time()``), ``pid``, then the app's own fields. ``os.write`` on an
``O_APPEND`` descriptor: each line lands whole, even from two processes, and is in the
kernel's page cache once written, so it survives a SIGKILL.
"""

from __future__ import annotations

import json
import os
import time

from aiosqsq import Message

_LEDGER = os.open(os.environ["LEDGER_PATH"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def record(event: str, seq: int, message: Message, **fields: object) -> None:
    """Append one line: ``event`` of the call on ``message`` (body ``seq``), and ``fields``."""
    line = {
        "event": event,
        "seq": seq,
        "mid": message.message_id,
        "receive_count": message.receive_count,
        "t": time.time(),
        "pid": os.getpid(),
        **fields,
    }
    os.write(_LEDGER, f"{json.dumps(line)}\n".encode())
