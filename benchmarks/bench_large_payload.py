"""What large payloads through S3 cost: messages/s and CPU per message, sending and
consuming, with and without offload, against moto (its SQS and its S3) on 127.0.0.1.

    .venv/bin/python benchmarks/bench_large_payload.py [--messages N] [--runs R] [--output PATH]

Variants (payload size, offloaded or not):

* ``inline-1KiB`` / ``s3-1KiB``: a small JSON body, inline and always through S3
  (``QUEUE_LARGE_PAYLOAD_ALWAYS``): the fixed cost of a PUT, a GET and a DeleteObjects;
* ``inline-900KiB`` / ``s3-900KiB``: a body just under SQS's 1 MiB, inline and through S3;
* ``s3-2MiB``: a 2 MiB body, which only fits through S3.

Each run sends N messages with ``App.send_batch`` (the producer's figures; the first
message is sent alone before, to make the connections), then drains them with
``App.run(burst=True)`` and a handler that decodes the JSON payload (the consumer's,
from the first handler call to the last: startup and the burst's end left out), cleanup
on, so a consumed S3 message costs a GET and its share of a DeleteObjects. Rates are over
N - 1 messages. Wall time (perf_counter) and CPU (process_time) of this process, per
phase; moto's own CPU (its process's utime + stime from /proc) is reported beside it,
since the server's work is part of what S3 costs here. Variants are interleaved, R runs
each; medians. Every run checks that each payload was handled once, intact.

This is a benchmark, not a test: it prints and writes its figures, and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for tests.moto_server

import boto3  # type: ignore[import-untyped]  # noqa: E402

from aiosqsq import App, QueueSettings  # noqa: E402
from tests.moto_server import start_moto_server  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "large_payload.json"
KIB = 1024
VARIANTS: dict[str, tuple[int, bool]] = {  # name: (payload bytes, through S3)
    "inline-1KiB": (KIB, False),
    "s3-1KiB": (KIB, True),
    "inline-900KiB": (900 * KIB, False),
    "s3-900KiB": (900 * KIB, True),
    "s3-2MiB": (2048 * KIB, True),
}


def server_cpu_s(pid: int) -> float:
    """utime + stime of the moto server process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settings(endpoint: str, queue_url: str, bucket: str, offload: bool) -> QueueSettings:
    return QueueSettings(
        backend="sqs",
        sqs_queue_url=queue_url,
        sqs_endpoint_url=endpoint,
        aws_region="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        wait_time_seconds=0,
        large_payload_bucket=bucket,
        large_payload_always=offload,
        large_payload_cleanup=True,
        s3_endpoint_url=endpoint,
    )


async def one_run(
    endpoint: str, server_pid: int, bucket: str, variant: str, messages: int
) -> dict[str, float]:
    size, offload = VARIANTS[variant]
    blob = "x" * (size - 24)  # {"n":123,"blob":"..."} close to ``size`` bytes
    payloads = [{"n": i, "blob": blob} for i in range(messages)]
    name = f"bench-{uuid.uuid4().hex[:8]}"
    creator = App(settings(endpoint, "default", bucket, offload))
    url = await creator.service.backend.create_queue(name, {"MaximumMessageSize": "1048576"})
    await creator.aclose()

    producer = App(settings(endpoint, url, bucket, offload))
    await producer.send(payloads[0])  # the connections are made (not measured)
    figures: dict[str, float] = {}
    wall, cpu, server = time.perf_counter(), time.process_time(), server_cpu_s(server_pid)
    await producer.send_batch(payloads[1:])
    figures["send_wall_s"] = time.perf_counter() - wall
    figures["send_cpu_s"] = time.process_time() - cpu
    figures["send_server_cpu_s"] = server_cpu_s(server_pid) - server
    await producer.aclose()

    consumer = App(settings(endpoint, url, bucket, offload))
    handled: list[int] = []
    window: dict[str, float] = {}

    @consumer.handler()
    async def handle(payload: dict[str, Any]) -> None:
        if not window:  # the first message: the consuming window starts
            window.update(
                wall=time.perf_counter(), cpu=time.process_time(), server=server_cpu_s(server_pid)
            )
        assert len(payload["blob"]) == len(blob)
        handled.append(payload["n"])
        if len(handled) == messages:
            window.update(
                wall_end=time.perf_counter(),
                cpu_end=time.process_time(),
                server_end=server_cpu_s(server_pid),
            )

    await consumer.run(burst=True, handle_signals=False)
    # from the first handler call to the last: startup and the burst's end left out, so
    # the first message's receive and fetch are not counted either (messages - 1 counted)
    figures["consume_wall_s"] = window["wall_end"] - window["wall"]
    figures["consume_cpu_s"] = window["cpu_end"] - window["cpu"]
    figures["consume_server_cpu_s"] = window["server_end"] - window["server"]
    if sorted(handled) != list(range(messages)):
        raise SystemExit(f"{variant}: handled {len(handled)} of {messages}, or some twice")
    cleaner = App(settings(endpoint, url, bucket, offload))
    await cleaner.service.backend.delete_queue(url)
    await cleaner.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    server = start_moto_server()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
        for _ in range(args.runs):
            for variant in VARIANTS:
                runs[variant].append(
                    anyio.run(
                        one_run,
                        server.endpoint_url,
                        server.process.pid,
                        bucket,
                        variant,
                        args.messages,
                    )
                )
        left = s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    finally:
        server.stop()
    results: dict[str, Any] = {
        "messages": args.messages,
        "runs": args.runs,
        "objects_left_after_cleanup": left,
        "variants": {},
    }
    n = args.messages - 1  # the first send warms the connections and is not counted
    print(
        f"{'variant':<14} {'send msg/s':>10} {'send CPU ms/msg':>16} {'consume msg/s':>14} "
        f"{'consume CPU ms/msg':>19} {'moto CPU ms/msg':>16}"
    )
    for variant, measured in runs.items():
        med = {key: statistics.median(run[key] for run in measured) for key in measured[0]}
        row = {
            "send_messages_per_s": n / med["send_wall_s"],
            "send_cpu_ms_per_message": 1e3 * med["send_cpu_s"] / n,
            "consume_messages_per_s": n / med["consume_wall_s"],
            "consume_cpu_ms_per_message": 1e3 * med["consume_cpu_s"] / n,
            "moto_cpu_ms_per_message": 1e3
            * (med["send_server_cpu_s"] + med["consume_server_cpu_s"])
            / n,
            "medians": med,
        }
        results["variants"][variant] = row
        print(
            f"{variant:<14} {row['send_messages_per_s']:>10.1f} "
            f"{row['send_cpu_ms_per_message']:>16.2f} {row['consume_messages_per_s']:>14.1f} "
            f"{row['consume_cpu_ms_per_message']:>19.2f} {row['moto_cpu_ms_per_message']:>16.2f}"
        )
    print(f"objects left in the bucket after cleanup: {left}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
