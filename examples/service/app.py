"""A small service on aiosqsq: a lifespan that owns the resources, middleware around every
handler, an order handler, a router of e-mail handlers in another module, and a batch
handler that writes events in one statement per batch.

    aiosqsq run examples.service.app:app --local     # on an embedded SQS (moto)
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel

from aiosqsq import App, CallNext, Message, MessageBatch, Retry
from examples.service.emails import Email, router
from examples.service.resources import Mailer, Resources, Warehouse

log = logging.getLogger("examples.service")


@asynccontextmanager
async def lifespan(app: App) -> AsyncIterator[Resources]:
    resources = Resources(mailer=Mailer(), warehouse=Warehouse())
    yield resources  # app.state, and injected into handlers that ask for Resources
    await resources.mailer.aclose()


app = App(lifespan=lifespan)
app.include_router(router)


@app.middleware
async def timing(message: Message | MessageBatch, call_next: CallNext) -> Any:
    """Around every handler call; a batch handler's middleware gets the whole batch."""
    started = time.perf_counter()
    try:
        return await call_next()
    finally:
        what = f"{len(message)} messages" if isinstance(message, MessageBatch) else "1 message"
        log.info("handled %s on %s in %.1f ms", what, message.queue, _ms_since(started))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1e3


class Order(BaseModel):
    id: int
    sku: str
    email: str


@app.handler()  # the default queue (QUEUE_SQS_QUEUE_URL, "default" locally)
async def fulfil(order: Order, res: Resources) -> None:
    if order.sku == "backorder":
        raise Retry(delay_s=60)  # visible again in a minute
    await app.send(Email(to=order.email, subject=f"order {order.id} shipped"), "emails")


class Event(BaseModel):
    kind: str
    value: float


@app.handler("events", batch=True, max_batch_size=100, max_wait_s=0.5)
async def ingest(events: list[Event], messages: list[Message], res: Resources) -> Iterable[Message]:
    good = [(e, m) for e, m in zip(events, messages, strict=True) if e.value >= 0]
    await res.warehouse.insert_many([e.model_dump() for e, _ in good])
    return [m for e, m in zip(events, messages, strict=True) if e.value < 0]  # retried
