"""The adaptive concurrency limit against fixed ones, on moto with SQS-like latency.

    .venv/bin/python benchmarks/bench_adaptive.py [--messages N] [--runs R]
        [--latency-ms 15] [--output PATH]

A moto server (``tests/moto_server.py``) behind the fault suite's TCP proxy
(``tests/faults/tcp_proxy.py``), which delays every chunk by half of ``--latency-ms`` each
way: each SQS request takes that much longer, as SQS's own 10-20 ms round trip does.
Every drain is its own process (``consume`` below, or ``sqs_consumers.py hand``), on a
fresh queue filled with N messages before it starts (not timed); drains are interleaved
run by run. Scenarios (the handler each consumer runs):

1. ``noop``: a no-op handler; aiosqsq with default settings (adaptive) against the
   hand-written aiobotocore loop with 16 receive loops; also without added latency.
2. ``sleep50``: ``await asyncio.sleep(0.05)``; adaptive against a sweep of fixed
   concurrencies.
3. ``knee``: a downstream whose latency (50 ms) grows in proportion to the calls in
   flight beyond 40; adaptive against fixed ones; the limit's settled range and the
   handler's p99 latency.
4. ``failing``: 50 ms calls, 30% of them failing for 10 s from the 3rd second; the
   limit's trace, how soon it dropped and recovered, losses.

Figures per drain: messages/s and CPU µs per message in the consumer's window (from
its first receive until N messages succeeded), the limit sampled every 0.1 s. Medians
and min-max over runs. Writes ``results/adaptive.json``; ``--plot`` draws
``results/adaptive.png`` from it (needs matplotlib: ``pip install '.[bench]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(REPO_ROOT))

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
KNEE = 40
CALL_S = 0.05
FAIL_FROM_S, FAIL_FOR_S, FAIL_SHARE = 3.0, 10.0, 0.3
DEFAULT_OUTPUT = HERE / "results" / "adaptive.json"


# --- the consumer process -----------------------------------------------------------


class Downstream:
    """The handlers' downstream: ``CALL_S`` per call; with a knee, slower in proportion
    to the calls in flight beyond it; failing ``FAIL_SHARE`` of calls while told to."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.in_flight = 0
        self.calls = 0
        self.latencies: list[float] = []
        self.failing_since: float | None = None
        self.started = time.monotonic()

    async def call(self) -> None:
        if self.kind == "noop":
            return
        self.in_flight += 1
        self.calls += 1
        number = self.calls
        began = time.perf_counter()
        try:
            latency = CALL_S
            if self.kind == "knee" and self.in_flight > KNEE:
                latency *= self.in_flight / KNEE
            await asyncio.sleep(latency)
            if self.kind == "failing":
                now = time.monotonic() - self.started
                if FAIL_FROM_S <= now < FAIL_FROM_S + FAIL_FOR_S and number % 10 < 3:
                    raise ConnectionError("the downstream failed")
        finally:
            self.in_flight -= 1
            self.latencies.append(time.perf_counter() - began)


async def consume(args: argparse.Namespace) -> dict[str, Any]:
    from aiosqsq import App, QueueSettings

    settings = QueueSettings(
        _env_file=None,
        backend="sqs",
        sqs_queue_url=args.queue_url,
        sqs_endpoint_url=args.endpoint,
        aws_region=REGION,
        concurrency=args.concurrency or None,
        wait_time_seconds=1,
        retry_base_delay=0.5,
        retry_max_delay=2,
        metrics="off",
        tracing="off",
        **CREDENTIALS,
    )
    app = App(settings)
    downstream = Downstream(args.handler)
    succeeded = 0
    handled: list[str] = []
    window: dict[str, float] = {}
    trace: list[tuple[float, int]] = []
    in_flight: list[tuple[float, int]] = []  # the downstream's calls in flight

    def observe(fate: str, message: Any) -> None:
        nonlocal succeeded
        if fate == "succeeded":
            succeeded += 1
            handled.append(message.body)
            if succeeded == 1:
                window["start"] = time.perf_counter()
                window["cpu"] = time.process_time()
            if succeeded >= args.messages and "end" not in window:
                window["end"] = time.perf_counter()
                window["cpu_end"] = time.process_time()
                app.stop()

    app.add_observer(observe)

    @app.handler()
    async def handle(body: str) -> None:
        await downstream.call()

    async def sample() -> None:
        began = time.monotonic()
        while True:
            at = round(time.monotonic() - began, 2)
            trace.append((at, app.statistics().concurrency_limit))
            in_flight.append((at, downstream.in_flight))
            await asyncio.sleep(0.1)

    sampler = asyncio.ensure_future(sample())
    try:
        async with asyncio.timeout(args.timeout_s):
            stats = await app.run(handle_signals=False)
    finally:
        sampler.cancel()
    latencies = sorted(downstream.latencies)
    return {
        "completed": "end" in window,
        "wall_s": window.get("end", 0) - window.get("start", 0),
        "cpu_s": window.get("cpu_end", 0) - window.get("cpu", 0),
        "succeeded": succeeded,
        "distinct": len(set(handled)),
        "retried": stats.retried,
        "limit_changes": stats.limit_changes,
        "p50_latency_ms": latencies[len(latencies) // 2] * 1e3 if latencies else 0,
        "p99_latency_ms": latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else 0,
        "trace": trace,
        "in_flight": in_flight,
    }


def adapting_cost_us(calls: int = 200_000) -> dict[str, float]:
    """CPU µs per message of what adapting adds to a handler call: the gate (acquire and
    release of the limit, which a pinned limit also passes) and the adaptive limit's
    bookkeeping (two clock readings and :meth:`AdaptiveLimit.finished`), in a loop."""
    from aiosqsq.engine.adaptive import AdaptiveLimit
    from aiosqsq.engine.config import LimitBounds
    from aiosqsq.engine.limiter import ConcurrencyLimit

    async def loop(adapt: bool) -> float:
        gate = ConcurrencyLimit(10)
        adaptive = AdaptiveLimit(gate, LimitBounds(1, 200, 10), clock=time.monotonic)
        clock = time.monotonic
        began = time.process_time()
        for _ in range(calls):
            await gate.acquire()
            if adapt:
                started = clock()
                adaptive.finished(clock() - started, failed=False)
            gate.release()
        return (time.process_time() - began) / calls * 1e6

    async def both() -> dict[str, float]:
        return {"gate_us": await loop(False), "gate_and_adapting_us": await loop(True)}

    return asyncio.run(both())


# --- the benchmark ------------------------------------------------------------------


async def fill(client: Any, messages: int) -> str:
    name = f"adaptive-{uuid.uuid4().hex[:8]}"
    url: str = (await client.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"}))[
        "QueueUrl"
    ]
    batches = [range(s, min(messages, s + 10)) for s in range(0, messages, 10)]
    for offset in range(0, len(batches), 4):
        await asyncio.gather(
            *(
                client.send_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "MessageBody": str(n)} for i, n in enumerate(batch)],
                )
                for batch in batches[offset : offset + 4]
            )
        )
    return url


def drain(consumer: str, endpoint: str, url: str, handler: str, messages: int) -> dict[str, Any]:
    """One drain in its own process: ``adaptive``, ``fixed=C`` or ``hand16``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "AWS_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    with tempfile.TemporaryDirectory() as scratch:
        if consumer == "hand16":
            command = [
                *("sqs_consumers.py", "hand", "--k", "16", "--endpoint", endpoint),
                *("--queue-url", url, "--messages", str(messages)),
                *("--ids-out", str(Path(scratch) / "ids")),
            ]
        else:
            concurrency = consumer.partition("=")[2] or "0"
            command = [
                *("bench_adaptive.py", "consume", "--endpoint", endpoint, "--queue-url", url),
                *("--messages", str(messages), "--handler", handler),
                *("--concurrency", concurrency),
            ]
        done = subprocess.run(
            [sys.executable, *command],
            cwd=HERE,
            env=env,
            capture_output=True,
            timeout=600,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{consumer} failed:\n{done.stderr.decode(errors='replace')[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    report["messages"] = messages
    report["messages_per_s"] = messages / report["wall_s"] if report["wall_s"] else 0
    report["cpu_us_per_message"] = report["cpu_s"] / messages * 1e6
    return report


SCENARIOS: dict[str, tuple[str, list[str], bool]] = {
    # name: (handler, consumers, with added latency)
    "noop": ("noop", ["adaptive", "hand16", "fixed=100", "fixed=160"], True),
    "noop-0ms": ("noop", ["adaptive", "hand16"], False),
    "sleep50": ("sleep50", ["adaptive", "fixed=50", "fixed=100", "fixed=200"], True),
    "knee": ("knee", ["adaptive", "fixed=20", "fixed=40", "fixed=80"], True),
    "failing": ("failing", ["adaptive"], True),
}


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import aioboto3  # type: ignore[import-untyped]

    from tests.faults.tcp_proxy import TcpProxy
    from tests.moto_server import start_moto_server

    moto = start_moto_server()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        port = int(moto.endpoint_url.rsplit(":", 1)[1])
        with TcpProxy(port) as proxy:
            session = aioboto3.Session()
            async with session.client(
                "sqs", region_name=REGION, endpoint_url=moto.endpoint_url, **CREDENTIALS
            ) as client:
                for run_index in range(args.runs):
                    for name, (handler, consumers, latency) in SCENARIOS.items():
                        if args.scenarios and name not in args.scenarios:
                            continue
                        count = args.messages * (3 if handler == "failing" else 1)
                        order = (
                            consumers[run_index % len(consumers) :]
                            + consumers[: run_index % len(consumers)]
                        )
                        for consumer in order:
                            url = await fill(client, count)
                            proxy.latency_s = args.latency_ms / 2000 if latency else 0.0
                            report = await asyncio.to_thread(
                                drain, consumer, proxy.endpoint_url, url, handler, count
                            )
                            proxy.latency_s = 0.0
                            await client.delete_queue(QueueUrl=url)
                            results.setdefault(name, {}).setdefault(consumer, []).append(report)
                            print(
                                f"run {run_index + 1} {name:9} {consumer:10} "
                                f"{report['messages_per_s']:7.0f} msg/s "
                                f"{report['cpu_us_per_message']:5.0f} us/msg "
                                f"limit at end {report.get('trace', [[0, '-']])[-1][1]}",
                                flush=True,
                            )
    finally:
        moto.stop()
    return results


def report(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, consumers in results.items():
        scenario: dict[str, Any] = {}
        for consumer, runs in consumers.items():
            entry: dict[str, Any] = {
                "messages_per_s": summary([r["messages_per_s"] for r in runs]),
                "messages_per_s_per_run": [round(r["messages_per_s"]) for r in runs],
                "cpu_us_per_message": summary([r["cpu_us_per_message"] for r in runs]),
            }
            if consumer != "hand16":
                entry["p99_latency_ms"] = summary([r["p99_latency_ms"] for r in runs])
                entry["lost"] = sum(r["messages"] - r["distinct"] for r in runs)
                settled = [
                    limit for r in runs for at, limit in r["trace"] if at >= r["trace"][-1][0] / 2
                ]
                entry["limit_second_half"] = {"min": min(settled), "max": max(settled)}
                calls = [
                    n for r in runs for at, n in r["in_flight"] if at >= r["in_flight"][-1][0] / 2
                ]
                entry["calls_in_flight_second_half_mean"] = round(statistics.fmean(calls), 1)
                entry["traces"] = [r["trace"] for r in runs]
            if name == "failing":
                entry["drop_s"] = [_drop_s(r["trace"]) for r in runs]
                entry["recovery_s"] = [_recovery_s(r["trace"]) for r in runs]
            scenario[consumer] = entry
        out[name] = scenario
    return out


def _before_failures(trace: list[tuple[float, int]]) -> int:
    return max([limit for at, limit in trace if at < FAIL_FROM_S] or [0])


def _drop_s(trace: list[tuple[float, int]]) -> float | None:
    """Seconds from the first failure until the limit was half what it was before."""
    before = _before_failures(trace)
    for at, limit in trace:
        if at >= FAIL_FROM_S and limit <= before / 2:
            return round(at - FAIL_FROM_S, 2)
    return None


def _recovery_s(trace: list[tuple[float, int]]) -> float | None:
    """Seconds from the last failure until the limit was back to 90% of before."""
    before, end = _before_failures(trace), FAIL_FROM_S + FAIL_FOR_S
    for at, limit in trace:
        if at >= end and limit >= 0.9 * before:
            return round(at - end, 2)
    return None


def describe(data: dict[str, Any]) -> str:
    lines = []
    for name, consumers in data["scenarios"].items():
        best = max(
            (c for c in consumers if c != "adaptive"),
            key=lambda c: consumers[c]["messages_per_s"]["median"],
            default=None,
        )
        for consumer, entry in consumers.items():
            rate, cpu = entry["messages_per_s"], entry["cpu_us_per_message"]
            extra = ""
            if "limit_second_half" in entry:
                half = entry["limit_second_half"]
                extra += f" limit {half['min']}-{half['max']}"
                extra += f" (calls in flight {entry['calls_in_flight_second_half_mean']})"
                extra += f" p99 {entry['p99_latency_ms']['median']:.0f} ms lost {entry['lost']}"
            if "drop_s" in entry:
                extra += f" drop {entry['drop_s']} s recovery {entry['recovery_s']} s"
            lines.append(
                f"{name:9} {consumer:10} {rate['median']:6.0f} msg/s ({rate['min']:.0f}-"
                f"{rate['max']:.0f}) {cpu['median']:5.0f} us/msg ({cpu['min']:.0f}-"
                f"{cpu['max']:.0f}){extra}"
            )
        if best is not None and "adaptive" in consumers:
            ratio = (
                consumers["adaptive"]["messages_per_s"]["median"]
                / consumers[best]["messages_per_s"]["median"]
            )
            lines.append(f"{name:9} adaptive / {best}: {ratio:.2f}x")
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in ("noop", "noop-0ms", "sleep50", "knee") if s in data["scenarios"]]
    fig, axes = plt.subplots(1, len(scenarios) + 1, figsize=(4 * (len(scenarios) + 1), 3.6))
    for axis, name in zip(axes, scenarios, strict=False):
        consumers = data["scenarios"][name]
        labels = list(consumers)
        medians = [consumers[c]["messages_per_s"]["median"] for c in labels]
        rates = [consumers[c]["messages_per_s"] for c in labels]
        lows = [rate["median"] - rate["min"] for rate in rates]
        highs = [rate["max"] - rate["median"] for rate in rates]
        colours = ["tab:green" if c == "adaptive" else "tab:grey" for c in labels]
        axis.bar(labels, medians, yerr=[lows, highs], color=colours, capsize=3)
        axis.set_title(name)
        axis.set_ylabel("messages/s (median, min-max)")
        axis.tick_params(axis="x", rotation=30)
    failing = data["scenarios"].get("failing", {}).get("adaptive")
    if failing:
        axis = axes[-1]
        for trace in failing["traces"]:
            axis.plot([t for t, _ in trace], [limit for _, limit in trace], color="tab:green")
        axis.axvspan(FAIL_FROM_S, FAIL_FROM_S + FAIL_FOR_S, color="tab:red", alpha=0.15)
        axis.set_title("failing 30% (shaded): the limit")
        axis.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    consumer = sub.add_parser("consume")
    consumer.add_argument("--endpoint", required=True)
    consumer.add_argument("--queue-url", required=True)
    consumer.add_argument("--messages", type=int, required=True)
    consumer.add_argument("--handler", choices=["noop", "sleep50", "knee", "failing"])
    consumer.add_argument("--concurrency", type=int, default=0, help="0: adaptive")
    consumer.add_argument("--timeout-s", type=float, default=300)
    consumer.add_argument("--debug", action="store_true", help="log the limit's changes")
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=15.0)
    parser.add_argument("--scenarios", nargs="*", default=[])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--plot", action="store_true", help="only draw the chart")
    parser.add_argument("--cost", action="store_true", help="only measure adapting's cost")
    args = parser.parse_args()
    if args.command == "consume":
        if args.debug:  # the limit's changes, with their reasons, on stderr
            logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)d %(message)s")
            logging.getLogger("aiosqsq.consumer").setLevel(logging.DEBUG)
        print(json.dumps(asyncio.run(consume(args))))
        return
    if args.cost:
        print(adapting_cost_us())
        return
    if args.plot:
        plot(json.loads(args.output.read_text()), args.output.with_suffix(".png"))
        return
    started = datetime.now(UTC)
    results = asyncio.run(run(args))
    data = {
        "benchmark": "adaptive concurrency on moto behind a latency proxy",
        "date": started.isoformat(timespec="seconds"),
        "messages_per_drain": args.messages,
        "runs": args.runs,
        "added_latency_ms_per_request": args.latency_ms,
        "load_average_1min": os.getloadavg()[0],
        "scenarios": report(results),
        "adapting_cost": adapting_cost_us(),
    }
    args.output.write_text(json.dumps(data, indent=1) + "\n")
    print(describe(data))
    print(f"adapting's own cost per message (µs of CPU): {data['adapting_cost']}")
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
