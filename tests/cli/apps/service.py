"""A service-shaped app for the end-to-end tests: a lifespan, a batch handler with partial
failures, an SNS-enveloped queue and an S3-notification queue. Every event is a JSON line
in ``$LEDGER_PATH`` (``os.write`` on ``O_APPEND``: whole lines, from any worker)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiosqsq import App, Message, S3Record


@dataclass
class Ledger:
    fd: int

    def write(self, **fields: object) -> None:
        os.write(self.fd, f"{json.dumps({'pid': os.getpid(), **fields})}\n".encode())


@asynccontextmanager
async def lifespan(app: App) -> AsyncIterator[Ledger]:
    ledger = Ledger(os.open(os.environ["LEDGER_PATH"], os.O_WRONLY | os.O_APPEND | os.O_CREAT))
    ledger.write(event="startup")
    yield ledger
    ledger.write(event="shutdown")
    os.close(ledger.fd)


app = App(lifespan=lifespan)


@app.handler(batch=True, max_batch_size=20, max_wait_s=0.2)
async def ingest(bodies: list[str], messages: list[Message], ledger: Ledger) -> list[Message]:
    ledger.write(event="batch", size=len(bodies))
    for body, message in zip(bodies, messages, strict=True):
        ledger.write(event="item", body=body, receive_count=message.receive_count)
    return [m for m in messages if m.body.startswith("fail") and m.receive_count == 1]


@app.handler(os.environ.get("SNS_QUEUE", "sns"), envelope="sns")
async def notified(order: dict[str, object], message: Message, ledger: Ledger) -> None:
    topic = message.envelope.topic_arn if message.envelope else None  # type: ignore[union-attr]
    ledger.write(event="sns", order=order, topic=topic)


@app.handler(os.environ.get("S3_QUEUE", "s3"), envelope="s3")
async def stored(record: S3Record, ledger: Ledger) -> None:
    ledger.write(event="s3", bucket=record.bucket, key=record.key)
