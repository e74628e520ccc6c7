"""The demo: an order pipeline on the embedded memory backend, no AWS account needed.

It sends a few hundred orders, consumes them with live progress, and shows each fate:
most orders succeed; some fail once and are retried; one always fails and is moved to
the dead-letter queue by the queue's redrive policy; one is not JSON and goes to the
dead-letter queue at once, without reaching the handler. Run it with ``scripts/demo``
(or ``python -m examples.demo --messages 300``); ``--local`` runs the same over an embedded
SQS server (moto) on 127.0.0.1, through the real SQS backend.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from typing import Any

import anyio
from pydantic import BaseModel, Field

from aiosqsq import App, Message, QueueBackend, QueueSettings, Retry
from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.cli.local_server import LocalSQS

ALWAYS_FAILS = 13  # the payment gateway rejects this order every time


class Order(BaseModel):
    id: int
    sku: str
    quantity: int = Field(gt=0)


def build_app(queues: QueueBackend, **settings: Any) -> App:
    app = App(
        QueueSettings(
            sqs_queue_url="orders",
            **settings,
            concurrency=16,
            retry_base_delay=0.05,  # seconds: short so the demo shows the redrive quickly
            retry_max_delay=0.2,
            shutdown_timeout=5,
        ),
        backend=queues,  # ours, so it stays open after run() for reading the DLQ
    )

    @app.handler(timeout_s=5)
    async def fulfil(order: Order, message: Message) -> None:
        await anyio.sleep(random.uniform(0.001, 0.01))  # the "work"
        if order.id == ALWAYS_FAILS:
            raise RuntimeError("payment gateway rejected the card")
        if order.id % 40 == 7 and message.receive_count == 1:
            raise Retry(delay_s=0.1)  # e.g. the warehouse API asked us to come back later

    return app


async def progress(app: App, total: int, done: anyio.Event) -> None:
    """Redraw one status line until the drain is done."""
    live = sys.stderr.isatty()
    while not done.is_set():
        stats = app.statistics()
        line = (
            f"handled {stats.succeeded:>4}/{total}  retried {stats.retried:>3}  "
            f"dead-lettered {stats.dead_lettered}  in flight {stats.in_flight:>3}"
        )
        print(f"\r{line}" if live else line, end="" if live else "\n", file=sys.stderr)
        with anyio.move_on_after(0.1 if live else 0.5):
            await done.wait()
    if live:
        print(file=sys.stderr)


async def main(messages: int, local: bool) -> int:
    if not local:
        return await demo(MemoryBackend(), messages, backend="memory")
    server = LocalSQS()  # moto on 127.0.0.1: the real SQS path, no AWS account
    print(f"embedded SQS server (moto) at {server.endpoint_url}")
    settings: dict[str, Any] = {
        "backend": "sqs",
        "sqs_endpoint_url": server.endpoint_url,
        "aws_region": "us-east-1",
        "aws_access_key_id": "aiosqsq-local",  # the emulator's: moto takes any key
        "aws_secret_access_key": "aiosqsq-local",
        "wait_time_seconds": 1,
    }
    try:
        backend = SQSBackend(QueueSettings(sqs_queue_url="orders", **settings))
        dlq = await backend.get_queue_info(await backend.create_queue("orders-dlq"))
        redrive = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 5}
        await backend.create_queue("orders", {"RedrivePolicy": json.dumps(redrive)})
        return await demo(backend, messages, **settings)
    finally:
        server.stop()


async def demo(queues: QueueBackend, messages: int, **settings: Any) -> int:
    backend = queues
    app = build_app(backend, **settings)
    orders = [
        Order(id=i, sku=f"SKU-{i % 17:03d}", quantity=1 + i % 3).model_dump()
        for i in range(messages)
    ]
    await app.send_batch(orders)
    await app.send("{this is not an order")  # poison: never reaches the handler
    print(f"sent {messages} orders and 1 malformed message to the 'orders' queue")

    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(progress, app, messages, done)
        url = await app.service.queue_url()
        while True:  # a burst ends when nothing is visible; retries come back later
            stats = await app.run(burst=True)
            depth = await backend.get_queue_depth(url)
            if depth.visible == depth.in_flight == depth.delayed == 0:
                break
            await anyio.sleep(0.05)
        done.set()

    print(f"summary: {stats.summary()}")
    info = await backend.get_queue_info(await app.service.queue_url())
    assert info.dead_letter_queue_url is not None
    dead = await backend.receive(info.dead_letter_queue_url, max_messages=10, wait_time_s=0)
    print(f"dead-letter queue {info.dead_letter_queue_url}: {len(dead)} message(s)")
    for message in dead:
        error = message.message_attributes.get("aiosqsq-error")
        reason = error.get("StringValue") if error else None
        reason = reason or f"redriven by SQS after {info.max_receive_count} receives"
        print(f"  {message.message_id}  {message.body[:40]!r}  reason: {reason}")
    await backend.aclose()

    expected_ok = messages - (1 if messages > ALWAYS_FAILS else 0)
    if stats.succeeded != expected_ok or len(dead) != 1 + (messages > ALWAYS_FAILS):
        print("unexpected outcome: see the log above", file=sys.stderr)
        return 1
    return 0


class _OneLineFormatter(logging.Formatter):
    """The demo's failures are expected: show their log lines without tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_info = record.exc_text = None
        return super().format(record)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="orders to send (default 300)")
    parser.add_argument(
        "--local",
        action="store_true",
        help="run over an embedded SQS server (moto) on 127.0.0.1 instead of in memory",
    )
    args = parser.parse_args()
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    sys.exit(anyio.run(main, args.messages, args.local))


if __name__ == "__main__":
    cli()
