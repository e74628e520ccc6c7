"""The consumer's own ceiling: aiosqsq (lean and botocore transports) and a hand loop
against a canned SQS endpoint that answers at once (``sqs_canned.py``); and producers.

    .venv/bin/python benchmarks/bench_sqs_ceiling.py [--messages N] [--runs R] [--k K]
        [--concurrency C] [--output PATH]

moto serves one request at a time, so on ``bench_sqs.py`` every consumer waits for the
server and messages/s says more about moto than about the consumer. Here the endpoint
(its own process, on the other core) hands out full batches of 10 as fast as it is asked
and accepts every delete, so each consumer runs as fast as its own CPU lets it: messages/s
on one consumer process is its ceiling, and CPU per message its cost.

Each drain is one process of ``sqs_consumers.py`` (``aiosqsq`` with
``--transport lean|botocore``, concurrency C; ``hand`` with K concurrent long polls),
measured in its window (after its client is built, to the N-th successful delete). The
endpoint counts every delete by the message its receipt handle names, so a message never
deleted (a loss) or deleted twice (a duplicate) shows; the consumer records every body it
handled, so a message handled twice shows too. Producers: ``produce-aiosqsq`` (the SQS
backend's ``send_batch``, both transports) and ``produce-hand`` (aiobotocore's
``send_message_batch``) send N messages in batches of 10, K batches in flight; the
endpoint counts the entries. Runs are interleaved, after one unrecorded warm-up of each;
figures are medians with the per-run range. Results: ``results/sqs_ceiling.json``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import shlex
import statistics
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sqs_profile  # noqa: E402
from bench_sqs import (  # noqa: E402
    BenchmarkError,
    child_env,
    machine,
    process_cpu_s,
    source_digest,
    spin,
    start_server,
    stop_server,
)

DEFAULT_OUTPUT = HERE / "results" / "sqs_ceiling.json"
WARMUP_MESSAGES = 2_000


@dataclass(frozen=True, slots=True)
class Runner:
    kind: str  # a sqs_consumers.py consumer: aiosqsq, hand, produce-aiosqsq, produce-hand
    transport: str = "lean"
    k: int = 16
    metrics: str = "on"  # aiosqsq's QUEUE_METRICS

    @property
    def label(self) -> str:
        if self.kind.endswith("aiosqsq"):
            off = ", metrics off" if self.metrics == "off" else ""
            return f"{self.kind} {self.transport}{off}"
        return f"{self.kind} K={self.k}"

    @property
    def producer(self) -> bool:
        return self.kind.startswith("produce")


class CannedEndpoint:
    """``sqs_canned.py`` as a child process."""

    def __init__(self) -> None:
        self.process, port = start_server("the canned endpoint", HERE / "sqs_canned.py")
        self.url = f"http://127.0.0.1:{port}"

    def control(self, path: str, method: str = "GET") -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}{path}", data=b"", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            counts: dict[str, Any] = json.loads(response.read())
            return counts

    def stop(self) -> None:
        stop_server(self.process)


async def run_once(
    endpoint: CannedEndpoint,
    runner: Runner,
    args: argparse.Namespace,
    messages: int,
    samples: Path | None = None,
) -> dict[str, Any]:
    """One drain (or send) of ``messages`` by ``runner``: its figures. With ``samples``,
    the process samples its window's stacks into that file."""
    queue_url = endpoint.control(
        f"/__canned/reset?messages={0 if runner.producer else messages}", "POST"
    )["queue_url"]
    server_before = process_cpu_s(endpoint.process.pid)
    with tempfile.TemporaryDirectory(prefix="sqs-ceiling-") as scratch:
        ids_path = Path(scratch) / "handled.bin"
        command = [
            sys.executable,
            str(HERE / "sqs_consumers.py"),
            runner.kind,
            "--endpoint",
            endpoint.url,
            "--queue-url",
            queue_url,
            "--messages",
            str(messages),
            "--ids-out",
            str(ids_path),
            "--concurrency",
            str(args.concurrency),
            "--k",
            str(runner.k),
            "--transport",
            runner.transport,
            "--metrics",
            runner.metrics,
            "--wait-time-s",
            "1",
            "--timeout-s",
            str(args.drain_timeout_s),
        ]
        if samples is not None:
            command += ["--sample-cpu", str(samples)]
        child = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
            cwd=HERE.parent,
        )
        stdout, stderr = await asyncio.wait_for(
            child.communicate(), timeout=args.drain_timeout_s + 30
        )
        if child.returncode != 0 or not stdout.strip():
            tail = stderr.decode(errors="replace")[-3000:]
            raise BenchmarkError(f"{runner.label} exited {child.returncode}:\n{tail}")
        report: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        handled = array.array("i")
        handled.frombytes(ids_path.read_bytes())
    server_cpu_s = process_cpu_s(endpoint.process.pid) - server_before
    counts = endpoint.control("/__canned/counts")
    unique = set(handled)
    requests: dict[str, int] = counts["requests"]
    hot = {a: n for a, n in requests.items() if a not in ("GetQueueAttributes", "GetQueueUrl")}
    return {
        "runner": runner.label,
        "completed": report["completed"],
        "messages_per_s": messages / report["wall_s"],
        "cpu_us_per_message": report["cpu_s"] / messages * 1e6,
        "server_cpu_us_per_message": server_cpu_s / messages * 1e6,
        "requests": requests,
        "requests_per_message": sum(hot.values()) / messages,
        "handled": len(handled),
        "duplicates": len(handled) - len(unique),
        "losses": messages - len(unique & set(range(messages))),
        # the endpoint's own count: every message deleted (sent) exactly once
        "server_not_settled": (messages - counts["sent"])
        if runner.producer
        else counts["never_deleted"],
        "server_duplicate_deletes": counts["delete_duplicates"],
        "server_bad_handles": counts["bad_handles"],
        "consumer_report": report,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(name: str) -> dict[str, float]:
        values = [r[name] for r in runs]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "messages_per_s": spread("messages_per_s"),
        "cpu_us_per_message": spread("cpu_us_per_message"),
        "requests_per_message": spread("requests_per_message"),
        "server_cpu_us_per_message": spread("server_cpu_us_per_message"),
        "duplicates": sum(r["duplicates"] + r["server_duplicate_deletes"] for r in runs),
        "losses": sum(r["losses"] + r["server_not_settled"] for r in runs),
        "bad_handles": sum(r["server_bad_handles"] for r in runs),
        "runs": runs,
    }


async def benchmark(
    endpoint: CannedEndpoint, runners: list[Runner], args: argparse.Namespace
) -> tuple[dict[str, dict[str, Any]], list[float]]:
    for runner in runners:  # warm-up, not recorded
        await run_once(endpoint, runner, args, min(args.messages, WARMUP_MESSAGES))
    results: dict[str, list[dict[str, Any]]] = {r.label: [] for r in runners}
    spins: list[float] = []
    for run in range(args.runs):
        order = runners[run % len(runners) :] + runners[: run % len(runners)]
        for runner in order:
            spins.append(spin())
            result = await run_once(endpoint, runner, args, args.messages)
            results[runner.label].append(result)
            print(
                f"run {run + 1}/{args.runs} {runner.label:<24} "
                f"{result['messages_per_s']:8.0f} msg/s {result['cpu_us_per_message']:6.1f} us/msg "
                f"{result['requests_per_message']:.3f} req/msg",
                file=sys.stderr,
            )
    return {label: summarise(runs) for label, runs in results.items()}, spins


async def profile(
    endpoint: CannedEndpoint,
    runners: list[Runner],
    args: argparse.Namespace,
    summaries: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """One more drain of each consumer, its stacks sampled on its CPU clock, split by
    library (``sqs_profile.py``) and scaled to the median CPU per message measured."""
    profiles: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sqs-ceiling-profile-") as scratch:
        for runner in runners:
            if runner.producer:
                continue
            dump = Path(scratch) / f"{runner.kind}-{runner.transport}.txt"
            result = await run_once(endpoint, runner, args, args.messages, samples=dump)
            measured = summaries[runner.label]["cpu_us_per_message"]["median"]
            profiles[runner.label] = sqs_profile.split(
                dump, args.messages, result["consumer_report"]["cpu_s"], measured
            )
    return profiles


def table(summaries: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'runner':<24}{'msg/s (min-max)':>26}{'CPU us/msg (min-max)':>24}{'req/msg':>9}"
        f"{'server us/msg':>14}{'dup':>5}{'lost':>5}"
    ]
    for label, s in summaries.items():
        rate, cpu = s["messages_per_s"], s["cpu_us_per_message"]
        lines.append(
            f"{label:<24}{rate['median']:>10,.0f} ({rate['min']:,.0f}-{rate['max']:,.0f})"
            f"{cpu['median']:>12.1f} ({cpu['min']:.1f}-{cpu['max']:.1f})"
            f"{s['requests_per_message']['median']:>9.3f}"
            f"{s['server_cpu_us_per_message']['median']:>14.1f}"
            f"{s['duplicates']:>5}{s['losses']:>5}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="N per drain (10000)")
    parser.add_argument("--runs", type=int, default=5, help="drains per runner (5)")
    parser.add_argument("--k", type=int, default=16, help="the hand loop's polls (16)")
    parser.add_argument("--producer-k", type=int, default=8, help="batches in flight (8)")
    parser.add_argument("--concurrency", type=int, default=100, help="aiosqsq's (100)")
    parser.add_argument("--no-producers", action="store_true", help="consumers only")
    parser.add_argument("--profile", action="store_true", help="then profile each consumer")
    parser.add_argument(
        "--metrics-off",
        action="store_true",
        help="also drain with aiosqsq lean with QUEUE_METRICS=off (what the metrics cost)",
    )
    parser.add_argument("--drain-timeout-s", type=float, default=300.0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON")
    args = parser.parse_args()
    runners = [
        Runner("aiosqsq", "lean"),
        Runner("aiosqsq", "botocore"),
        Runner("hand", k=args.k),
    ]
    if args.metrics_off:
        runners.insert(1, Runner("aiosqsq", "lean", metrics="off"))
    if not args.no_producers:
        runners += [
            Runner("produce-aiosqsq", "lean", args.producer_k),
            Runner("produce-aiosqsq", "botocore", args.producer_k),
            Runner("produce-hand", k=args.producer_k),
        ]
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    endpoint = CannedEndpoint()
    profiles: dict[str, Any] | None = None
    try:
        summaries, spins = asyncio.run(benchmark(endpoint, runners, args))
        if args.profile:
            profiles = asyncio.run(profile(endpoint, runners, args, summaries))
    finally:
        endpoint.stop()
    report = {
        "benchmark": "SQS consumers and producers against a canned endpoint on loopback",
        "command": shlex.join(["python", *sys.argv]),
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "messages_per_run": args.messages,
        "runs": args.runs,
        "aiosqsq_concurrency": args.concurrency,
        "summary_statistic": "median over runs (min and max beside it)",
        "aiosqsq_source_sha256": source_digest(),
        "machine": machine(),
        "load_average_1min_before": load_before,
        "cpu_speed_spread": max(spins) / min(spins),
        "runners": summaries,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(summaries))
    if profiles is not None:
        profile_output = args.output.with_name(f"{args.output.stem}_profile.json")
        profile_output.write_text(json.dumps(profiles, indent=2) + "\n")
        print(sqs_profile.describe(profiles))
        print(f"profile: {profile_output}")
    print(f"CPU speed spread {report['cpu_speed_spread']:.2f}; results: {args.output}")
    failed = [label for label, s in summaries.items() if s["losses"] or s["duplicates"]]
    if failed:
        print(f"error: lost or duplicated messages: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
