"""Where aiosqsq's CPU goes in one memory-backend drain: cProfile, per message.

    .venv/bin/python benchmarks/profile_memory.py [--messages N] [--variant dict|str]
        [--concurrency C] [--top K] [--match REGEX] [--dump PATH]

Runs one drain as ``bench_memory.py`` does, under cProfile, and prints the functions with
the most cumulative time per message (those whose file matches ``--match``; by default
aiosqsq's and anyio's). cProfile slows pure-Python code about threefold, and the calls it
times are the shortest ones: read the column as a ranking and as proportions, and take
absolute costs from ``bench_memory.py``. ``--dump`` keeps the raw profile for ``pstats``
or snakeviz.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import re
import time
from pathlib import Path

import anyio
from bench_memory import NoOp, Variant, check_empty, fill, measure, settings

from aiosqsq import App


async def profile(
    variant: Variant, messages: int, concurrency: int
) -> tuple[cProfile.Profile, float]:
    """The profile of one drain, and its CPU seconds under the profiler."""
    await measure("aiosqsq", variant, min(messages, 2_000), concurrency)  # warm-up
    backend, queue_url = await fill(messages, concurrency)
    app = App(settings(concurrency), backend=backend)
    handler = NoOp()
    app.handler()(handler.on_dict if variant == "dict" else handler.on_str)
    profiler = cProfile.Profile()
    gc.collect()
    cpu = time.process_time()
    profiler.enable()
    await app.run(burst=True, handle_signals=False)
    profiler.disable()
    cpu = time.process_time() - cpu
    await check_empty(backend, queue_url, f"aiosqsq {variant}")
    if handler.calls != messages:
        raise RuntimeError(f"the handler ran {handler.calls} times for {messages} messages")
    return profiler, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--variant", choices=["dict", "str"], default="dict")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default=r"/aiosqsq/|/anyio/", help="regex on the file path")
    parser.add_argument("--dump", type=Path, help="write the raw profile here")
    args = parser.parse_args()

    profiler, cpu_s = anyio.run(profile, args.variant, args.messages, args.concurrency)
    if args.dump is not None:
        profiler.dump_stats(args.dump)
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    match = re.compile(args.match)
    rows = sorted(
        (
            (cumulative, calls, f"{Path(file).name}:{line} {function}", file)
            for (file, line, function), (_, calls, _, cumulative, _) in table.items()
        ),
        reverse=True,
    )
    per_message = 1e6 / args.messages
    print(f"CPU under cProfile: {cpu_s * per_message:.1f} us/message ({args.variant} variant)")
    print(f"{'cum us/msg':>10} {'calls/msg':>9}  function")
    shown = 0
    for cumulative, calls, name, file in rows:
        if shown < args.top and match.search(file):
            print(f"{cumulative * per_message:>10.1f} {calls / args.messages:>9.2f}  {name}")
            shown += 1


if __name__ == "__main__":
    main()
