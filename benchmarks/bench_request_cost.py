"""SQS requests per message when draining with fast handlers, at several concurrencies.

    .venv/bin/python benchmarks/bench_request_cost.py [--messages N] [--runs R]
        [--concurrency 8,32,100] [--fail-rate 0.01] [--output PATH]

Each drain: a fresh queue (visibility timeout 60 s) on a moto server on 127.0.0.1
(``tests/moto_server.py``), N messages sent first (not counted), then an aiosqsq App in
this process drains it in burst mode with a handler that does nothing but fail a share
of messages once (``Retry(0)`` on their first receive). Every call the consumer makes
is counted at the backend (ReceiveMessage, DeleteMessageBatch,
ChangeMessageVisibilityBatch) and divided by N. Each concurrency is drained with the
fill wait on (the default: a receive waits briefly for a full batch of free slots) and
off (``fill_wait_s=0``: a receive asks for whatever is free), interleaved, ``R`` runs.

The floor: a receive of 10 and a delete batch of 10 per ten messages (0.2), plus the
failures' redeliveries and their visibility changes. Below 10 slots a receive can ask
for at most the concurrency C: the floor there is 1/C + 1/10 (0.225 at C=8).

This is a benchmark, not a test: it prints and writes its figures, and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for tests.moto_server

from aiosqsq import App, Message, QueueService, QueueSettings, Retry  # noqa: E402
from aiosqsq.backends.base import (  # noqa: E402
    BatchResult,
    DeleteEntry,
    QueueBackend,
    QueueMessage,
    VisibilityEntry,
)
from aiosqsq.engine.config import DEFAULT_FILL_WAIT_S, ConsumerConfig  # noqa: E402
from aiosqsq.handler import HandlerSpec  # noqa: E402
from tests.moto_server import start_moto_server  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "request_cost.json"


class CountingBackend:
    """Delegates to a real backend and counts the consumer's per-message calls."""

    def __init__(self, inner: QueueBackend) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self.delivered = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def receive(self, queue_url: str, **options: Any) -> list[QueueMessage]:
        self.calls["ReceiveMessage"] += 1
        messages = await self._inner.receive(queue_url, **options)
        self.delivered += len(messages)
        return messages

    async def delete_batch(self, queue_url: str, entries: Sequence[DeleteEntry]) -> BatchResult:
        self.calls["DeleteMessageBatch"] += 1
        return await self._inner.delete_batch(queue_url, entries)

    async def change_visibility_batch(
        self, queue_url: str, entries: Sequence[VisibilityEntry]
    ) -> BatchResult:
        self.calls["ChangeMessageVisibilityBatch"] += 1
        return await self._inner.change_visibility_batch(queue_url, entries)


class _App(App):
    """An App whose consumers run with a given fill wait (the A/B switch)."""

    def __init__(self, *args: Any, fill_wait_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fill_wait_s = fill_wait_s

    def consumer_config(self, spec: HandlerSpec) -> ConsumerConfig:
        return dataclasses.replace(super().consumer_config(spec), fill_wait_s=self._fill_wait_s)


async def drain(
    settings: QueueSettings, messages: int, concurrency: int, fail_rate: float, fill_wait_s: float
) -> dict[str, Any]:
    async with QueueService(settings) as service:
        name = f"cost-{uuid.uuid4().hex[:8]}"
        url = await service.backend.create_queue(name, {"VisibilityTimeout": "60"})
        await service.enqueue_batch([str(i) for i in range(messages)], url)
        counting = CountingBackend(service.backend)
        app = _App(
            settings.model_copy(update={"concurrency": concurrency, "sqs_queue_url": url}),
            backend=counting,
            fill_wait_s=fill_wait_s,
        )
        handled: Counter[str] = Counter()
        threshold = int(fail_rate * 2**32)

        @app.handler()
        async def handle(body: str, message: Message) -> None:
            if message.receive_count == 1 and zlib.crc32(body.encode()) < threshold:
                raise Retry(0)
            handled[body] += 1

        started = time.perf_counter()
        await app.run(burst=True, handle_signals=False)
        elapsed_s = time.perf_counter() - started
        await service.backend.delete_queue(url)
    requests = sum(counting.calls.values())
    return {
        "concurrency": concurrency,
        "fill_wait_s": fill_wait_s,
        "messages": messages,
        "deliveries": counting.delivered,
        "calls": dict(counting.calls),
        "requests_per_message": requests / messages,
        "messages_per_receive": counting.delivered / max(1, counting.calls["ReceiveMessage"]),
        "duplicates": sum(n - 1 for n in handled.values() if n > 1),
        "lost": messages - len(handled),
        "seconds": elapsed_s,
    }


async def main(args: argparse.Namespace) -> None:
    server = start_moto_server()
    try:
        settings = QueueSettings(
            backend="sqs",
            sqs_queue_url="unused",
            sqs_endpoint_url=server.endpoint_url,
            aws_region="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            wait_time_seconds=1,
            retry_base_delay=0,
        )
        results: list[dict[str, Any]] = []
        for run in range(args.runs):
            for concurrency in args.concurrency:
                for fill_wait_s in (DEFAULT_FILL_WAIT_S, 0.0):
                    result = await drain(
                        settings, args.messages, concurrency, args.fail_rate, fill_wait_s
                    )
                    result["run"] = run
                    results.append(result)
                    print(
                        f"run {run} C={concurrency:<3} fill_wait={fill_wait_s:<4g} "
                        f"requests/message={result['requests_per_message']:.3f} "
                        f"per receive={result['messages_per_receive']:.1f} "
                        f"dup={result['duplicates']} lost={result['lost']} "
                        f"{result['seconds']:.1f} s",
                        flush=True,
                    )
    finally:
        server.stop()
    summary = []
    for concurrency in args.concurrency:
        for fill_wait_s in (DEFAULT_FILL_WAIT_S, 0.0):
            rows = [
                r
                for r in results
                if r["concurrency"] == concurrency and r["fill_wait_s"] == fill_wait_s
            ]
            values = [r["requests_per_message"] for r in rows]
            summary.append(
                {
                    "concurrency": concurrency,
                    "fill_wait_s": fill_wait_s,
                    "requests_per_message_median": statistics.median(values),
                    "requests_per_message_min": min(values),
                    "requests_per_message_max": max(values),
                    "duplicates": sum(r["duplicates"] for r in rows),
                    "lost": sum(r["lost"] for r in rows),
                }
            )
    print(json.dumps(summary, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"summary": summary, "drains": results}, indent=2) + "\n")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=_ints, default=[8, 32, 100])
    parser.add_argument("--fail-rate", type=float, default=0.01)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    anyio.run(main, parser.parse_args())
