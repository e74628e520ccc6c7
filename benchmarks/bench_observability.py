"""What observability costs: CPU per message of an SQS drain with metrics and tracing off,
with Prometheus metrics on, and with metrics and tracing on.

    .venv/bin/python benchmarks/bench_observability.py [--messages N] [--runs R]
        [--concurrency C] [--output PATH]

Each drain is a fresh process running ``App.run(burst=True)`` with a no-op handler on the
SQS backend (lean transport) against the canned SQS endpoint (``sqs_canned.py``), which
answers at once from its own process, so the consumer's CPU sets the pace and the figure
is the consumer's own cost (the endpoint's is not counted). Configurations:

* ``off``: ``QUEUE_METRICS=off QUEUE_TRACING=off``;
* ``metrics``: ``QUEUE_METRICS=on`` (prometheus-client), ``QUEUE_TRACING=off``;
* ``metrics+tracing``: both on, with the OpenTelemetry SDK's TracerProvider and
  MeterProvider installed (spans recorded and sampled, not exported).

Runs are interleaved after one unrecorded warm-up of each; the figure is the median of
the drains' process CPU (user + system) per message, with the per-run range. The endpoint
counts deletes: every message deleted exactly once, or the benchmark stops. Target:
metrics add at most 5% to the CPU per message. Results: ``results/observability.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_sqs import BenchmarkError, child_env, machine, start_server, stop_server  # noqa: E402

DEFAULT_OUTPUT = HERE / "results" / "observability.json"
CONFIGS = {
    "off": {"QUEUE_METRICS": "off", "QUEUE_TRACING": "off"},
    "metrics": {"QUEUE_METRICS": "on", "QUEUE_TRACING": "off"},
    "metrics+tracing": {"QUEUE_METRICS": "on", "QUEUE_TRACING": "on", "BENCH_OTEL_SDK": "1"},
}


def control(url: str, path: str, method: str = "GET") -> dict[str, Any]:
    request = urllib.request.Request(f"{url}{path}", data=b"", method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def drain_in_child(endpoint: str, queue_url: str, concurrency: int) -> None:
    """The child: drain the canned queue once; print its CPU and wall seconds as JSON."""
    import anyio

    if os.environ.get("BENCH_OTEL_SDK") == "1":
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
        metrics.set_meter_provider(MeterProvider())

    from aiosqsq import App, QueueSettings

    app = App(
        QueueSettings(
            backend="sqs",
            sqs_queue_url=queue_url,
            sqs_endpoint_url=endpoint,
            aws_region="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            concurrency=concurrency,
            wait_time_seconds=1,
            queue_stats_interval=0,
        )
    )

    @app.handler()
    async def nothing(payload: str) -> None:
        return None

    cpu, wall = time.process_time(), time.perf_counter()
    stats = anyio.run(partial(app.run, burst=True, handle_signals=False))
    print(
        json.dumps(
            {
                "cpu_s": time.process_time() - cpu,
                "wall_s": time.perf_counter() - wall,
                "succeeded": stats.succeeded,
            }
        )
    )


def drain(endpoint: str, config: str, messages: int, concurrency: int) -> dict[str, Any]:
    queue_url = control(endpoint, f"/__canned/reset?messages={messages}", "POST")["queue_url"]
    env = {**child_env(), **CONFIGS[config]}
    done = subprocess.run(
        [sys.executable, __file__, "--child", endpoint, queue_url, str(concurrency)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"the {config} drain failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    counts = control(endpoint, "/__canned/counts")
    if result["succeeded"] != messages or counts.get("deleted") != messages:
        raise BenchmarkError(f"the {config} drain handled {result} of {messages}: {counts}")
    result["cpu_us_per_message"] = result["cpu_s"] / messages * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--child", nargs=3, metavar=("ENDPOINT", "QUEUE_URL", "CONCURRENCY"))
    args = parser.parse_args()
    if args.child:
        endpoint, queue_url, concurrency = args.child
        drain_in_child(endpoint, queue_url, int(concurrency))
        return
    process, port = start_server("the canned endpoint", HERE / "sqs_canned.py")
    endpoint = f"http://127.0.0.1:{port}"
    runs: dict[str, list[dict[str, Any]]] = {config: [] for config in CONFIGS}
    try:
        for config in CONFIGS:  # warm-up, not recorded
            drain(endpoint, config, min(args.messages, 2_000), args.concurrency)
        for run in range(args.runs):
            for config in CONFIGS:
                result = drain(endpoint, config, args.messages, args.concurrency)
                runs[config].append(result)
                print(
                    f"run {run + 1}/{args.runs} {config:16} "
                    f"{result['cpu_us_per_message']:6.1f} us/message CPU, "
                    f"{args.messages / result['wall_s']:8.0f} messages/s",
                    flush=True,
                )
    finally:
        stop_server(process)
    summary = {}
    for config, results in runs.items():
        cpu = [r["cpu_us_per_message"] for r in results]
        summary[config] = {
            "cpu_us_per_message": statistics.median(cpu),
            "cpu_us_per_message_range": [min(cpu), max(cpu)],
            "messages_per_s": statistics.median(args.messages / r["wall_s"] for r in results),
        }
    base = summary["off"]["cpu_us_per_message"]
    for config in CONFIGS:
        summary[config]["cpu_vs_off"] = summary[config]["cpu_us_per_message"] / base
    print()
    print("| configuration | CPU us/message | vs off | messages/s |")
    print("| --- | ---: | ---: | ---: |")
    for config, figures in summary.items():
        low, high = figures["cpu_us_per_message_range"]
        print(
            f"| {config} | {figures['cpu_us_per_message']:.1f} ({low:.1f}-{high:.1f}) "
            f"| {figures['cpu_vs_off']:.3f}x | {figures['messages_per_s']:,.0f} |"
        )
    added = summary["metrics"]["cpu_vs_off"] - 1
    print(f"\nmetrics add {added:+.1%} CPU per message (target: at most +5%)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "observability overhead, SQS drain against the canned endpoint",
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "messages": args.messages,
                "runs": args.runs,
                "concurrency": args.concurrency,
                "summary": summary,
                "drains": runs,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
