"""Drain throughput and CPU per message of aiosqsq on the memory backend, against a hand loop.

Per variant (a ``dict[str, int]`` payload, which aiosqsq parses and validates, and a raw
``str`` payload, which it passes as is) and per run, in one process and interleaved:

* ``aiosqsq``: ``App.run(burst=True)`` with a no-op handler drains N messages;
* ``baseline``: the smallest correct consumer of the same backend: receive 10, call the same
  no-op handler for each (parsing the body with orjson in the dict variant), delete the 10.

Each drain starts from a fresh ``MemoryBackend`` queue holding N small JSON bodies; filling
is not timed. Wall time (``perf_counter``) and process CPU time (``process_time``) cover the
drain only. The backend's own cost is in both figures, so aiosqsq's CPU per message minus the
baseline's is the framework's overhead. After every drain the counts are checked (every
message handled and deleted exactly once); a mismatch stops the benchmark.

    .venv/bin/python benchmarks/bench_memory.py [--messages N] [--runs R] [--concurrency C]
        [--output PATH]

This is a benchmark, not a test: it reports against the 20 us/message target and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import anyio
import orjson

import aiosqsq
from aiosqsq import App, QueueService, QueueSettings
from aiosqsq.backends.base import DeleteEntry, QueueDepth
from aiosqsq.backends.memory import MemoryBackend

Variant = Literal["dict", "str"]
Drainer = Literal["aiosqsq", "baseline"]
VARIANTS: tuple[Variant, ...] = ("dict", "str")
DRAINERS: tuple[Drainer, ...] = ("aiosqsq", "baseline")
TARGET_OVERHEAD_US = 20.0  # the budget of framework CPU per message
BUSY_SHARE = 0.1  # other processes' share of the CPUs above which the run is flagged
SPEED_SPREAD = 1.15  # slowest / fastest spin() above which the run is flagged
DEFAULT_OUTPUT = Path(__file__).parent / "results" / "memory.json"
EMPTY = QueueDepth(visible=0, in_flight=0, delayed=0)
_ENTRY_IDS = [str(i) for i in range(10)]  # SQS caps a batch at 10 entries


class CountMismatch(RuntimeError):
    """A drain did not handle and delete every message exactly once."""


class KeptOpenBackend(MemoryBackend):
    """A MemoryBackend that outlives ``App.run()`` (which closes its backend), so that the
    queue can be checked after the drain. Only ``aclose`` differs: both consumers pay the
    same backend costs."""

    async def aclose(self) -> None:
        pass


class NoOp:
    """The handlers both consumers call: they only count their calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def on_dict(self, payload: dict[str, int]) -> None:
        self.calls += 1

    async def on_str(self, payload: str) -> None:
        self.calls += 1


@dataclass(frozen=True, slots=True)
class Drain:
    wall_s: float
    cpu_s: float


def settings(concurrency: int) -> QueueSettings:
    # Every value that shapes the engine is explicit: no QUEUE_* variable or .env applies.
    return QueueSettings(
        _env_file=None,
        backend="memory",
        concurrency=concurrency,
        pollers=None,
        max_messages=10,
        wait_time_seconds=0,
        visibility_timeout=None,
        retry_base_delay=0,
    )


async def fill(messages: int, concurrency: int) -> tuple[KeptOpenBackend, str]:
    """A fresh backend whose default queue (with its DLQ, as the App creates it) holds
    ``messages`` small JSON bodies; returns it and the queue URL."""
    backend = KeptOpenBackend()
    service = QueueService(settings(concurrency), backend=backend)
    await service.enqueue_batch([{"id": i, "shard": i % 16} for i in range(messages)])
    return backend, await service.queue_url()


async def drain_aiosqsq(
    variant: Variant, backend: MemoryBackend, messages: int, concurrency: int
) -> Drain:
    app = App(settings(concurrency), backend=backend)
    handler = NoOp()
    app.handler()(handler.on_dict if variant == "dict" else handler.on_str)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    stats = await app.run(burst=True, handle_signals=False)
    drain = Drain(time.perf_counter() - wall, time.process_time() - cpu)
    expected = dict(received=messages, succeeded=messages, retried=0, dead_lettered=0)
    expected |= dict(released=0, lease_lost=0, in_flight=0)
    found = {name: getattr(stats, name) for name in expected}
    if found != expected or handler.calls != messages:
        raise CountMismatch(f"aiosqsq {variant}: {stats.summary()} handler_calls={handler.calls}")
    return drain


async def drain_baseline(
    variant: Variant, backend: MemoryBackend, queue_url: str, messages: int
) -> Drain:
    handler = NoOp()
    received = deleted = 0
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    while batch := await backend.receive(queue_url, max_messages=10, wait_time_s=0):
        if variant == "dict":
            for message in batch:
                await handler.on_dict(orjson.loads(message.body))
        else:
            for message in batch:
                await handler.on_str(message.body)
        entries = [DeleteEntry(_ENTRY_IDS[i], m.receipt_handle) for i, m in enumerate(batch)]
        result = await backend.delete_batch(queue_url, entries)
        if result.failed:
            raise CountMismatch(f"baseline {variant}: delete failed: {result.failed[0]}")
        received += len(batch)
        deleted += len(result.successful)
    drain = Drain(time.perf_counter() - wall, time.process_time() - cpu)
    if not received == deleted == handler.calls == messages:
        raise CountMismatch(
            f"baseline {variant}: received={received} deleted={deleted} "
            f"handler_calls={handler.calls}, expected {messages} each"
        )
    return drain


async def check_empty(backend: KeptOpenBackend, queue_url: str, label: str) -> None:
    """Nothing left in the queue nor in its dead-letter queue; then close the backend."""
    dlq_url = (await backend.get_queue_info(queue_url)).dead_letter_queue_url
    for url in (queue_url, dlq_url):
        if url is not None and (depth := await backend.get_queue_depth(url)) != EMPTY:
            raise CountMismatch(f"{label}: {url} is not empty after the drain: {depth}")
    await MemoryBackend.aclose(backend)


async def measure(drainer: Drainer, variant: Variant, messages: int, concurrency: int) -> Drain:
    backend, queue_url = await fill(messages, concurrency)
    if drainer == "aiosqsq":
        drain = await drain_aiosqsq(variant, backend, messages, concurrency)
    else:
        drain = await drain_baseline(variant, backend, queue_url, messages)
    await check_empty(backend, queue_url, f"{drainer} {variant}")
    return drain


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def summarise(drains: list[Drain], messages: int) -> dict[str, Any]:
    return {
        "messages_per_s": spread([messages / d.wall_s for d in drains]),
        "cpu_us_per_message": spread([d.cpu_s / messages * 1e6 for d in drains]),
        "wall_us_per_message": spread([d.wall_s / messages * 1e6 for d in drains]),
        "runs": [{"wall_s": d.wall_s, "cpu_s": d.cpu_s} for d in drains],
    }


def machine() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "packages": {name: version(name) for name in ("aiosqsq", "anyio", "orjson", "pydantic")},
    }


def machine_cpu_s() -> float | None:
    """CPU seconds every process on the machine has used since boot (Linux), else None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    busy = sum(int(value) for value in fields) - int(fields[3]) - int(fields[4])  # idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


Snapshot = tuple[float | None, float, float]  # machine CPU s, own CPU s, wall s


def snapshot() -> Snapshot:
    return machine_cpu_s(), time.process_time(), time.perf_counter()


def others_share(before: Snapshot, after: Snapshot) -> float | None:
    """Other processes' share of the usable CPUs between two snapshots. They inflate our CPU
    time too (shared caches and cores), so a busy run is flagged."""
    if before[0] is None or after[0] is None:
        return None
    own_s, wall_s = after[1] - before[1], after[2] - before[2]
    others_s = max(0.0, after[0] - before[0] - own_s)
    return others_s / (wall_s * len(os.sched_getaffinity(0)))


def source_commit() -> dict[str, Any]:
    """The git commit checked out, and whether aiosqsq/ differs from it (None outside git)."""
    package = Path(aiosqsq.__file__).parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=package, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--", ".")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(status)}


def source_digest() -> str:
    """sha256 of the aiosqsq sources measured: the figures belong to this exact code."""
    digest = hashlib.sha256()
    package = Path(aiosqsq.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def spin() -> float:
    """CPU seconds of a fixed pure-Python workload (~10 ms): how fast this CPU runs now.

    A neighbour on the same host (shared cores and caches) slows us down without showing in
    this machine's process list; the spread of these timings across the run reveals it."""
    start = time.process_time()
    table: dict[int, int] = {}
    for i in range(100_000):
        table[i & 1023] = table.get(i & 1023, 0) + i
    return time.process_time() - start


async def benchmark(
    messages: int, runs: int, concurrency: int
) -> tuple[dict[str, dict[str, Any]], list[float]]:
    """Per-variant results, and the :func:`spin` timing taken before each drain."""
    # Warm-up, not recorded: first calls, caches and the allocator's pools.
    for variant in VARIANTS:
        for drainer in DRAINERS:
            await measure(drainer, variant, min(messages, 2_000), concurrency)
    drains: dict[tuple[Variant, Drainer], list[Drain]] = {}
    spins: list[float] = []
    for run in range(runs):
        for variant in VARIANTS:
            for drainer in DRAINERS:
                spins.append(spin())
                drain = await measure(drainer, variant, messages, concurrency)
                drains.setdefault((variant, drainer), []).append(drain)
        print(f"run {run + 1}/{runs} done", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        framework = summarise(drains[variant, "aiosqsq"], messages)
        baseline = summarise(drains[variant, "baseline"], messages)
        framework_us = framework["cpu_us_per_message"]["median"]
        baseline_us = baseline["cpu_us_per_message"]["median"]
        overhead_us = framework_us - baseline_us
        paired = [
            (a.cpu_s - b.cpu_s) / messages * 1e6
            for a, b in zip(drains[variant, "aiosqsq"], drains[variant, "baseline"], strict=True)
        ]
        results[variant] = {
            "aiosqsq": framework,
            "baseline": baseline,
            "overhead_cpu_us_per_message": overhead_us,
            "overhead_cpu_us_per_message_per_run": paired,
            "cpu_ratio_aiosqsq_to_baseline": framework_us / baseline_us,
            "throughput_ratio_aiosqsq_to_baseline": (
                framework["messages_per_s"]["median"] / baseline["messages_per_s"]["median"]
            ),
            "target_overhead_cpu_us_per_message": TARGET_OVERHEAD_US,
            "target_met": overhead_us <= TARGET_OVERHEAD_US,
        }
    return results, spins


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'variant':<8}{'drainer':<10}{'msg/s':>10}{'CPU us/msg':>12}  (min-max)",
    ]
    for variant, result in results.items():
        for drainer in DRAINERS:
            rate = result[drainer]["messages_per_s"]["median"]
            cpu = result[drainer]["cpu_us_per_message"]
            lines.append(
                f"{variant:<8}{drainer:<10}{rate:>10,.0f}{cpu['median']:>12.1f}"
                f"  ({cpu['min']:.1f}-{cpu['max']:.1f})"
            )
        verdict = "met" if result["target_met"] else "NOT met"
        lines.append(
            f"{variant:<8}{'overhead':<10}{'':>10}{result['overhead_cpu_us_per_message']:>+12.1f}"
            f"  ratio {result['cpu_ratio_aiosqsq_to_baseline']:.2f}x, target <= "
            f"{TARGET_OVERHEAD_US:g} us/msg {verdict}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="per drain (default 20000)")
    parser.add_argument("--runs", type=int, default=5, help="drains per consumer and variant")
    parser.add_argument(
        "--concurrency", type=int, default=10, help="QUEUE_CONCURRENCY of the app (default 10)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON")
    args = parser.parse_args()
    if args.messages < 1 or args.runs < 1 or args.concurrency < 1:
        parser.error("--messages, --runs and --concurrency must be >= 1")

    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    before = snapshot()
    results, spins = anyio.run(benchmark, args.messages, args.runs, args.concurrency)
    busy = others_share(before, snapshot())
    cpu_speed_spread = max(spins) / min(spins)
    report = {
        "benchmark": "memory backend drain, no-op handler",
        "command": shlex.join(["python", *sys.argv]),
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "messages_per_run": args.messages,
        "runs": args.runs,
        "concurrency": args.concurrency,
        "summary_statistic": "median over runs (min and max beside it)",
        "aiosqsq_source_sha256": source_digest(),
        "aiosqsq_git": source_commit(),
        "machine": machine(),
        "load_average_1min_before": load_before,
        "other_processes_cpu_share_during_run": busy,
        "cpu_speed_spread": cpu_speed_spread,  # slowest / fastest spin() timing
        "spin_ms_before_each_drain": [round(s * 1e3, 2) for s in spins],
        "variants": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    host = report["machine"]
    print(f"machine: {host['cpu_model']}, {host['usable_cores']} cores, {host['python']}")
    if busy is not None and busy > BUSY_SHARE:
        print(
            f"warning: other processes used {busy:.0%} of the machine's CPU during "
            "the run: the figures may be inflated; run again on a quiet machine",
            file=sys.stderr,
        )
    if cpu_speed_spread > SPEED_SPREAD:
        print(
            f"warning: the CPU ran up to {cpu_speed_spread - 1:.0%} slower at times during "
            "the run (a busy neighbour?): the figures may be noisy; run again",
            file=sys.stderr,
        )
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
