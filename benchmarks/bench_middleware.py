"""CPU per message of middleware and of batch handlers, on the memory backend.

    .venv/bin/python benchmarks/bench_middleware.py [--messages N] [--runs R] [--output PATH]

Each drain fills a fresh MemoryBackend queue with N small JSON bodies (not timed) and
drains it with ``App.serve(burst=True)``: a no-op handler taking a ``dict[str, int]``
payload, with 0, 1 and 4 pass-through middleware, and a no-op batch handler
(``list[dict[str, int]]``, 2 batches in flight) gathering batches of 10 and of 100.
Process CPU time
(``process_time``) over the drain, divided by N. Variants are interleaved, R runs each;
medians and the per-run spread are reported, and the cost of one middleware is the
slope between 0 and 4 middleware. Every drain checks that each message was handled once.

This is a benchmark, not a test: it prints and writes its figures, and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from aiosqsq import App, CallNext, Message, QueueSettings  # noqa: E402
from aiosqsq.backends.memory import MemoryBackend  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "middleware.json"
VARIANTS = ("single", "single+1mw", "single+4mw", "batch10", "batch100")


async def _pass(message: Message, call_next: CallNext) -> Any:
    return await call_next()


def build(variant: str, backend: MemoryBackend, handled: list[int]) -> App:
    # 100 single calls or 2 batches in flight: a batch handler holds its concurrency
    # times its batch size (plus one batch gathering), so both hold 100-300 messages
    concurrency = 2 if variant.startswith("batch") else 100
    app = App(
        QueueSettings(backend="memory", sqs_queue_url="bench", concurrency=concurrency),
        backend=backend,
    )
    for _ in range({"single+1mw": 1, "single+4mw": 4}.get(variant, 0)):
        app.middleware(_pass)
    if variant.startswith("batch"):
        size = int(variant.removeprefix("batch"))

        @app.handler(batch=True, max_batch_size=size, max_wait_s=0)
        async def ingest(payloads: list[dict[str, int]]) -> None:
            handled.extend(p["n"] for p in payloads)

    else:

        @app.handler
        async def handle(payload: dict[str, int]) -> None:
            handled.append(payload["n"])

    return app


async def drain(variant: str, messages: int) -> float:
    backend = MemoryBackend()
    filler = App(QueueSettings(backend="memory", sqs_queue_url="bench"), backend=backend)
    await filler.send_batch([{"n": i} for i in range(messages)])
    handled: list[int] = []
    app = build(variant, backend, handled)
    gc.collect()
    started = time.process_time()
    await app.serve(burst=True)
    cpu_s = time.process_time() - started
    if sorted(handled) != list(range(messages)):
        raise SystemExit(f"{variant}: {len(handled)} handled of {messages}")
    return cpu_s / messages * 1e6


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for run in range(args.runs + 1):  # the first round warms up and is not kept
        order = VARIANTS[run % len(VARIANTS) :] + VARIANTS[: run % len(VARIANTS)]
        for variant in order:
            us = await drain(variant, args.messages)
            if run:
                results[variant].append(us)
    summary = {
        v: {"median_us": statistics.median(r), "min_us": min(r), "max_us": max(r)}
        for v, r in results.items()
    }
    per_layer = [
        (four - none) / 4
        for four, none in zip(results["single+4mw"], results["single"], strict=True)
    ]
    summary["one_middleware"] = {
        "median_us": statistics.median(per_layer),
        "min_us": min(per_layer),
        "max_us": max(per_layer),
    }
    for name, row in summary.items():
        print(
            f"{name:<15} {row['median_us']:7.2f} us/message "
            f"({row['min_us']:.2f}-{row['max_us']:.2f})"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"messages": args.messages, "runs": results, "summary": summary}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    anyio.run(main, parser.parse_args())
