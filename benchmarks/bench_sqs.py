"""Drain N messages from SQS (moto server over loopback): aiosqsq against a hand-written loop.

    .venv/bin/python benchmarks/bench_sqs.py [--messages N] [--runs R] [--ks 1,4,16]
        [--concurrency C] [--backlog B] [--wait-time-s W] [--profile] [--output PATH]
        [--hand-attributes K] [--aiosqsq-pollers P,...] [--aiosqsq-source DIR,...]

Processes, all on 127.0.0.1:

* the moto server (``tests/moto_server.py``: moto's WSGI app on cheroot, keep-alive, moto's
  O(queue length) hot spots patched, one request at a time);
* a counting proxy (``sqs_proxy.py``) in front of it, which counts the consumer's requests
  per SQS action, the entries of each batch and the messages of each receive;
* this process: it creates a fresh queue per drain (visibility timeout 60 s, so nothing is
  redelivered by a timeout) and sends the N messages (bodies "0" .. "N-1") straight to moto,
  not through the proxy, in batches of 10, all before the consumer starts (not timed);
  with ``--backlog B`` it sends B first and then, while the consumer drains, tops the
  queue up to B unreceived messages (as the proxy counts them received) instead;
* the consumer (``sqs_consumers.py``), one process per drain: ``aiosqsq`` (App,
  concurrency C) or ``hand K=k`` (k concurrent ReceiveMessage(10) + DeleteMessageBatch
  loops), each with a no-op handler, each deleting every message it handles.

Why the queue is filled first by default: on this server a call's cost does not grow with
the queue (moto's CPU per message is the same with 2,000 or 20,000 queued), whereas a
producer running during the drain shares moto's one lock with the consumer, so the
consumer's own concurrency decides how fast the queue is refilled: with ``--backlog 2000``
the queue ran dry (lowest backlog 0) during the aiosqsq, K=4 and K=16 drains, and the
figures measured that contention rather than the consumer.

Per drain: messages/s and CPU time per message inside the consumer's window (after its
client is built, until the N-th delete succeeds); the consumer's whole-process CPU and peak
RSS; its requests per message by action (every request it made, startup and shutdown
included); duplicates and losses from the handled sequence numbers; messages left in the
queue; moto's and the proxy's CPU per message (``/proc``, from the consumer's start to its
exit); how often moto had none of the consumer's requests to serve (``idle``) and how many
were waiting or being served on average (``queue``), as the proxy timed them. Runs are
interleaved (each run rotates the consumers' order) after one unrecorded warm-up drain of
each; the figures are medians over runs. ``--profile`` then drains once
more with aiosqsq and with the best hand loop, sampling their stacks on the CPU clock
(``sqs_profile.py``). ``--aiosqsq-source DIR`` adds a consumer that imports aiosqsq from
``DIR`` (a copy of another version), interleaved with the rest: an A/B comparison on the
same server in the same minutes.

This is a benchmark, not a test: it reports against the targets and exits 0 (1 if a drain
lost messages or failed).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import platform
import re
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(REPO_ROOT))  # for tests.moto_server

import aioboto3  # type: ignore[import-untyped]  # noqa: E402
import sqs_consumers  # noqa: E402
import sqs_profile  # noqa: E402
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]  # noqa: E402

from aiosqsq.backends.sqs import SYSTEM_ATTRIBUTES  # noqa: E402
from tests.moto_server import MotoServer, start_moto_server  # noqa: E402

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
VISIBILITY_TIMEOUT_S = 60  # far above a drain's length: no redelivery by timeout
DEFAULT_OUTPUT = HERE / "results" / "sqs.json"
TARGET_THROUGHPUT_RATIO = 1.0  # aiosqsq msg/s >= 1.0x the best hand loop's
TARGET_REQUESTS_PER_MESSAGE = 0.21  # 1 receive + 1 delete batch per 10 messages is 0.20
TARGET_CPU_RATIO = 0.35  # aiosqsq (lean transport) CPU/msg <= 0.35x the best hand loop's
WARMUP_MESSAGES = 2_000
SPEED_SPREAD = 1.15  # slowest / fastest spin() above which the run is flagged
PROXY_START_TIMEOUT_S = 10.0
SEND_CONCURRENCY = 2  # SendMessageBatch calls in flight (moto serves one at a time)
TOP_UP_MIN = 100  # top up when at least this many messages are missing from the backlog
TOP_UP_PAUSE_S = 0.01
_ENTRY_IDS = [str(i) for i in range(10)]  # SQS caps a batch at 10 entries
_QUEUE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class BenchmarkError(RuntimeError):
    """A drain failed: the consumer crashed, timed out or lost messages."""


@dataclass(frozen=True, slots=True)
class Consumer:
    kind: str  # "aiosqsq" or "hand"
    k: int = 0  # the hand loop's concurrent polls
    attributes: bool = False  # the hand loop asks for aiosqsq's attributes (a diagnostic)
    pollers: int | None = None  # aiosqsq's QUEUE_POLLERS; None: its default
    source: Path | None = None  # a directory holding another aiosqsq package (A/B runs)
    transport: str = "lean"  # aiosqsq's QUEUE_SQS_TRANSPORT

    @property
    def label(self) -> str:
        if self.kind == "aiosqsq":
            label = "aiosqsq" if self.pollers is None else f"aiosqsq pollers={self.pollers}"
            if self.transport != "lean":
                label += f" {self.transport}"
            return label if self.source is None else f"{label} @{self.source.name}"
        return f"hand K={self.k}" + (" +attrs" if self.attributes else "")


# --- the counting proxy --------------------------------------------------------------


class ProxyProcess:
    """``sqs_proxy.py`` as a child process; ``counts()``/``reset()`` over one keep-alive
    connection."""

    def __init__(self, upstream_url: str) -> None:
        self.process, self.port = start_server(
            "the counting proxy", HERE / "sqs_proxy.py", "--upstream", upstream_url
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _request(self, method: str, path: str) -> dict[str, Any]:
        if self._stream is None:
            self._stream = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self._stream
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: proxy\r\nContent-Length: 0\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        counts: dict[str, Any] = json.loads(await reader.readexactly(length))
        return counts

    async def counts(self) -> dict[str, Any]:
        return await self._request("GET", "/__proxy/counts")

    async def reset(self) -> dict[str, Any]:
        return await self._request("POST", "/__proxy/reset")

    async def aclose(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None

    def stop(self) -> None:
        stop_server(self.process)


def start_server(what: str, script: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``script`` (a server that prints the port it listens on, and exits when its
    stdin closes) as a child process; return it and its port."""
    process = subprocess.Popen(
        [sys.executable, str(script), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], PROXY_START_TIMEOUT_S)
    line = process.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        stop_server(process)
        raise BenchmarkError(f"{what} did not start (it said {line!r})")
    return process, int(line)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop a child of :func:`start_server`: SIGTERM, then SIGKILL after 5 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


# --- producing -----------------------------------------------------------------------


class Producer:
    """Sends bodies "0" .. "total-1" in batches of 10, straight to moto."""

    def __init__(self, client: Any, queue_url: str, total: int) -> None:
        self._client = client
        self._queue_url = queue_url
        self.total = total
        self.sent = 0

    async def send(self, count: int) -> None:
        """Send the next ``count`` messages (fewer at the end), SEND_CONCURRENCY at a time."""
        first, last = self.sent, min(self.total, self.sent + count)
        self.sent = last
        batches = [range(start, min(last, start + 10)) for start in range(first, last, 10)]
        for offset in range(0, len(batches), SEND_CONCURRENCY):
            await asyncio.gather(
                *(self._send_batch(b) for b in batches[offset : offset + SEND_CONCURRENCY])
            )

    async def _send_batch(self, numbers: range) -> None:
        entries = [{"Id": _ENTRY_IDS[i], "MessageBody": str(n)} for i, n in enumerate(numbers)]
        response = await self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        if response.get("Failed"):
            raise BenchmarkError(f"SendMessageBatch failed: {response['Failed'][:1]}")

    async def keep_backlog(
        self, proxy: ProxyProcess, backlog: int, done: asyncio.Event
    ) -> int | None:
        """Top the queue up to ``backlog`` unreceived messages until all are sent or
        ``done``; return the smallest backlog seen once the consumer had begun (None when
        every message was sent before)."""
        if self.sent >= self.total:
            return None
        lowest = backlog
        while self.sent < self.total and not done.is_set():
            received = (await proxy.counts())["messages"].get("ReceiveMessage", 0)
            unreceived = self.sent - received
            if received:
                lowest = min(lowest, unreceived)
            if backlog - unreceived >= TOP_UP_MIN:
                await self.send(backlog - unreceived)
            else:
                await asyncio.sleep(TOP_UP_PAUSE_S)
        return lowest


# --- one drain -----------------------------------------------------------------------


def child_env(source: Path | None = None) -> dict[str, str]:
    """The environment without QUEUE_* and AWS_* (the consumers pass their own settings);
    with ``source``, the consumer imports aiosqsq from that directory instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "AWS_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, every thread (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


async def drain(
    client: Any,
    proxy: ProxyProcess,
    servers: dict[str, int],
    consumer: Consumer,
    args: argparse.Namespace,
    name: str,
    *,
    messages: int,
    samples: Path | None = None,
) -> dict[str, Any]:
    """Create a queue, drain ``messages`` from it with ``consumer``, delete it; the figures.
    With ``samples``, the consumer samples its window's stacks into that file."""
    created = await client.create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT_S)}
    )
    queue_url = created["QueueUrl"]
    try:
        producer = Producer(client, queue_url, messages)
        backlog = args.backlog or messages
        await producer.send(backlog)
        await proxy.reset()
        servers_before = {server: process_cpu_s(pid) for server, pid in servers.items()}
        with tempfile.TemporaryDirectory(prefix="sqs-bench-") as scratch:
            ids_path = Path(scratch) / "handled.bin"
            command = [
                sys.executable,
                str(HERE / "sqs_consumers.py"),
                consumer.kind,
                "--endpoint",
                proxy.url,
                "--queue-url",
                queue_url,
                "--messages",
                str(messages),
                "--ids-out",
                str(ids_path),
                "--concurrency",
                str(args.concurrency),
                "--k",
                str(consumer.k),
                "--wait-time-s",
                str(args.wait_time_s),
                "--timeout-s",
                str(args.drain_timeout_s),
            ]
            if consumer.attributes:
                command.append("--attributes")
            if consumer.pollers is not None:
                command += ["--pollers", str(consumer.pollers)]
            if consumer.kind == "aiosqsq" and consumer.source is None:
                command += ["--transport", consumer.transport]
            if samples is not None:
                command += ["--sample-cpu", str(samples)]
            child = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_env(consumer.source),
                cwd=REPO_ROOT,
            )
            done = asyncio.Event()
            topping = asyncio.create_task(producer.keep_backlog(proxy, backlog, done))
            try:
                stdout, stderr = await asyncio.wait_for(
                    child.communicate(), timeout=args.drain_timeout_s + 30
                )
            except TimeoutError:
                child.kill()
                await child.wait()
                raise BenchmarkError(f"{consumer.label}: the consumer did not exit") from None
            finally:
                done.set()
                lowest_backlog = await topping
            if child.returncode != 0 or not stdout.strip():
                tail = stderr.decode(errors="replace")[-3000:]
                raise BenchmarkError(f"{consumer.label} exited {child.returncode}:\n{tail}")
            report: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
            report["servers_cpu_s"] = {
                server: process_cpu_s(pid) - servers_before[server]
                for server, pid in servers.items()
            }
            handled = ids_path.read_bytes()
        counts = await proxy.counts()
        depth = await client.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
    finally:
        await client.delete_queue(QueueUrl=queue_url)
    left = sum(int(v) for v in depth.get("Attributes", {}).values())
    return figures(consumer, report, counts, handled, messages, left, lowest_backlog)


def figures(
    consumer: Consumer,
    report: dict[str, Any],
    counts: dict[str, Any],
    handled_bytes: bytes,
    messages: int,
    left_in_queue: int,
    lowest_backlog: int | None,
) -> dict[str, Any]:
    handled = array.array("i")
    handled.frombytes(handled_bytes)
    unique = set(handled)
    requests: dict[str, int] = counts["requests"]
    receives = requests.get("ReceiveMessage", 0)
    deletes = requests.get("DeleteMessageBatch", 0)
    process = report["process"]
    return {
        "consumer": consumer.label,
        "completed": report["completed"],
        "wall_s": report["wall_s"],
        "cpu_s": report["cpu_s"],
        "messages_per_s": messages / report["wall_s"],
        "cpu_us_per_message": report["cpu_s"] / messages * 1e6,
        "process_cpu_s": process["user_cpu_s"] + process["system_cpu_s"],
        "peak_rss_mib": process["max_rss_kib"] / 1024,
        "moto_cpu_us_per_message": report["servers_cpu_s"]["moto"] / messages * 1e6,
        "proxy_cpu_us_per_message": report["servers_cpu_s"]["proxy"] / messages * 1e6,
        "requests": requests,
        "requests_per_message": sum(requests.values()) / messages,
        "requests_per_message_by_action": {a: n / messages for a, n in requests.items()},
        "messages_per_receive": counts["messages"].get("ReceiveMessage", 0) / max(1, receives),
        "entries_per_delete_batch": counts["entries"].get("DeleteMessageBatch", 0)
        / max(1, deletes),
        "connections": counts["connections"],
        # the moto server's share of the drain with none of this consumer's requests to serve
        "server_idle_share": counts["upstream_idle_s"] / max(counts["upstream_active_s"], 1e-9),
        "server_mean_outstanding": counts["upstream_mean_outstanding"],
        "handled": len(handled),
        "duplicates": len(handled) - len(unique),
        "losses": messages - len(unique & set(range(messages))),
        "left_in_queue": left_in_queue,
        "producer_lowest_backlog": lowest_backlog,
        "consumer_report": report,
    }


# --- the benchmark -------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(drains: list[dict[str, Any]]) -> dict[str, Any]:
    actions = sorted({a for d in drains for a in d["requests"]})
    return {
        **{
            name: spread([d[name] for d in drains])
            for name in (
                "messages_per_s",
                "cpu_us_per_message",
                "requests_per_message",
                "peak_rss_mib",
                "process_cpu_s",
                "moto_cpu_us_per_message",
                "proxy_cpu_us_per_message",
                "messages_per_receive",
                "entries_per_delete_batch",
                "server_idle_share",
                "server_mean_outstanding",
            )
        },
        "producer_lowest_backlog": min(
            (
                d["producer_lowest_backlog"]
                for d in drains
                if d["producer_lowest_backlog"] is not None
            ),
            default=None,
        ),
        "requests_per_message_by_action": {
            a: statistics.median(d["requests_per_message_by_action"].get(a, 0.0) for d in drains)
            for a in actions
        },
        "duplicates": sum(d["duplicates"] for d in drains),
        "losses": sum(d["losses"] for d in drains),
        "left_in_queue": sum(d["left_in_queue"] for d in drains),
        "runs": drains,
    }


def compare(consumers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The targets, for aiosqsq with its defaults, against the hand loop of the best K
    (by messages/s); the same ratios for the other aiosqsq variants."""
    hands = {label: s for label, s in consumers.items() if label.startswith("hand K=")}
    hands = {label: s for label, s in hands.items() if not label.endswith("+attrs")}
    best = max(hands, key=lambda label: hands[label]["messages_per_s"]["median"])
    ratios = {
        label: _ratios(summary, hands[best])
        for label, summary in consumers.items()
        if label.startswith("aiosqsq")
    }
    ours = ratios["aiosqsq"]
    return {
        "best_hand_loop": best,
        **ours,
        "other_aiosqsq_variants": {k: v for k, v in ratios.items() if k != "aiosqsq"},
        "targets": {
            "throughput_ratio_min": TARGET_THROUGHPUT_RATIO,
            "requests_per_message_max": TARGET_REQUESTS_PER_MESSAGE,
            "cpu_ratio_max": TARGET_CPU_RATIO,
        },
        "met": {
            "throughput": ours["throughput_ratio"] >= TARGET_THROUGHPUT_RATIO,
            "requests_per_message": (
                ours["aiosqsq_requests_per_message"] <= TARGET_REQUESTS_PER_MESSAGE
            ),
            "cpu": ours["cpu_ratio"] <= TARGET_CPU_RATIO,
        },
    }


def _ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    # Run r of each consumer ran minutes apart at most: their ratio cancels slow drifts.
    pairs = list(zip(ours["runs"], theirs["runs"], strict=True))
    return {
        "throughput_ratio": ours["messages_per_s"]["median"] / theirs["messages_per_s"]["median"],
        "cpu_ratio": ours["cpu_us_per_message"]["median"] / theirs["cpu_us_per_message"]["median"],
        "throughput_ratio_per_run": [a["messages_per_s"] / b["messages_per_s"] for a, b in pairs],
        "cpu_ratio_per_run": [a["cpu_us_per_message"] / b["cpu_us_per_message"] for a, b in pairs],
        "aiosqsq_requests_per_message": ours["requests_per_message"]["median"],
    }


async def benchmark(
    moto: MotoServer, proxy: ProxyProcess, consumers: list[Consumer], args: argparse.Namespace
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, list[float]]:
    """Per-consumer summaries, the profiles (with ``--profile``), and the :func:`spin`
    timing taken before each measured drain."""
    session = aioboto3.Session()
    config = AioConfig(max_pool_connections=SEND_CONCURRENCY + 2)
    async with session.client(
        "sqs", region_name=REGION, endpoint_url=moto.endpoint_url, config=config, **CREDENTIALS
    ) as client:
        servers = {"moto": moto.process.pid, "proxy": proxy.process.pid}
        for consumer in consumers:  # warm-up, not recorded
            await drain(
                client,
                proxy,
                servers,
                consumer,
                args,
                queue_name("warmup", consumer),
                messages=min(args.messages, WARMUP_MESSAGES),
            )
        drains: dict[str, list[dict[str, Any]]] = {c.label: [] for c in consumers}
        spins: list[float] = []
        for run in range(args.runs):
            order = consumers[run % len(consumers) :] + consumers[: run % len(consumers)]
            for consumer in order:
                spins.append(spin())
                result = await drain(
                    client,
                    proxy,
                    servers,
                    consumer,
                    args,
                    queue_name(f"bench-{run}", consumer),
                    messages=args.messages,
                )
                drains[consumer.label].append(result)
                print(
                    f"run {run + 1}/{args.runs} {consumer.label:<19} "
                    f"{result['messages_per_s']:7.0f} msg/s "
                    f"{result['cpu_us_per_message']:6.0f} us/msg "
                    f"{result['requests_per_message']:.3f} req/msg",
                    file=sys.stderr,
                )
        summaries = {label: summarise(runs) for label, runs in drains.items()}
        profiles = None
        if args.profile:
            best = compare(summaries)["best_hand_loop"]
            profiles = {}
            for consumer in consumers:
                if consumer.label not in ("aiosqsq", "aiosqsq botocore", best):
                    continue
                dump_dir = args.profile_dir or Path(tempfile.mkdtemp(prefix="sqs-profile-"))
                dump_dir.mkdir(parents=True, exist_ok=True)
                dump = dump_dir / f"{queue_name('profile', consumer)}.txt"
                result = await drain(
                    client,
                    proxy,
                    servers,
                    consumer,
                    args,
                    queue_name("profile", consumer),
                    messages=args.profile_messages,
                    samples=dump,
                )
                measured = summaries[consumer.label]["cpu_us_per_message"]["median"]
                profiles[consumer.label] = sqs_profile.split(
                    dump, args.profile_messages, result["cpu_s"], measured
                )
                profiles[consumer.label]["profiled_drain_messages_per_s"] = result["messages_per_s"]
                if args.profile_dir is None:
                    dump.unlink()
                    dump_dir.rmdir()
    return summaries, profiles, spins


def queue_name(prefix: str, consumer: Consumer) -> str:
    suffix = (
        ("-attrs" if consumer.attributes else "")
        + (f"-p{consumer.pollers}" if consumer.pollers else "")
        + (f"-{_QUEUE_NAME_UNSAFE.sub('', consumer.source.name)[:20]}" if consumer.source else "")
        + (f"-{consumer.transport}" if consumer.kind == "aiosqsq" else "")
    )
    return f"{prefix}-{consumer.kind}{consumer.k}{suffix}"


def spin() -> float:
    """CPU seconds of a fixed pure-Python workload (~10 ms): how fast this CPU runs now.
    Their spread across the run shows a busy neighbour on the host (or on this machine)."""
    start = time.process_time()
    table: dict[int, int] = {}
    for i in range(100_000):
        table[i & 1023] = table.get(i & 1023, 0) + i
    return time.process_time() - start


# --- reporting -----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    packages = ("aiosqsq", "aioboto3", "aiobotocore", "botocore", "aiohttp", "anyio", "moto")
    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "packages": {name: version(name) for name in (*packages, "cheroot")},
    }


def source_digest() -> str:
    """sha256 of the aiosqsq sources measured: the figures belong to this exact code."""
    import hashlib

    import aiosqsq

    digest = hashlib.sha256()
    package = Path(aiosqsq.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def table(consumers: dict[str, dict[str, Any]], comparison: dict[str, Any]) -> str:
    lines = [
        f"{'consumer':<19}{'msg/s':>7}{'CPU us/msg (min-max)':>22}{'req/msg':>9}{'recv':>7}"
        f"{'del':>7}{'other':>7}{'msg/recv':>9}{'RSS MiB':>9}{'dup':>5}{'lost':>5}"
        f"{'moto us/msg':>12}{'idle':>6}{'queue':>6}"
    ]
    for label, s in consumers.items():
        by_action = s["requests_per_message_by_action"]
        receives = by_action.get("ReceiveMessage", 0)
        deletes = by_action.get("DeleteMessageBatch", 0)
        cpu = s["cpu_us_per_message"]
        lines.append(
            f"{label:<19}{s['messages_per_s']['median']:>7,.0f}"
            f"{cpu['median']:>12.0f} ({cpu['min']:.0f}-{cpu['max']:.0f})"
            f"{s['requests_per_message']['median']:>9.3f}{receives:>7.3f}{deletes:>7.3f}"
            f"{s['requests_per_message']['median'] - receives - deletes:>7.4f}"
            f"{s['messages_per_receive']['median']:>9.2f}"
            f"{s['peak_rss_mib']['median']:>9.1f}{s['duplicates']:>5}{s['losses']:>5}"
            f"{s['moto_cpu_us_per_message']['median']:>12.0f}"
            f"{s['server_idle_share']['median']:>6.1%}{s['server_mean_outstanding']['median']:>6.1f}"
        )
    met = comparison["met"]

    def verdict(name: str) -> str:
        return "met" if met[name] else "NOT met"

    def per_run(name: str) -> str:
        return ", ".join(f"{x:.2f}" for x in comparison[name])

    lines += [
        f"aiosqsq vs the best hand loop ({comparison['best_hand_loop']}):",
        f"  throughput {comparison['throughput_ratio']:.2f}x (per run: "
        f"{per_run('throughput_ratio_per_run')}); target >= {TARGET_THROUGHPUT_RATIO}x: "
        f"{verdict('throughput')}",
        f"  CPU/msg    {comparison['cpu_ratio']:.2f}x (per run: {per_run('cpu_ratio_per_run')}); "
        f"target <= {TARGET_CPU_RATIO}x: {verdict('cpu')}",
        f"  {comparison['aiosqsq_requests_per_message']:.3f} requests/msg; target <= "
        f"{TARGET_REQUESTS_PER_MESSAGE}: {verdict('requests_per_message')}",
    ]
    for label, other in comparison["other_aiosqsq_variants"].items():
        throughput = ", ".join(f"{x:.2f}" for x in other["throughput_ratio_per_run"])
        cpu = ", ".join(f"{x:.2f}" for x in other["cpu_ratio_per_run"])
        lines.append(
            f"{label}: throughput {other['throughput_ratio']:.2f}x (per run: {throughput}), "
            f"CPU/msg {other['cpu_ratio']:.2f}x (per run: {cpu}), "
            f"{other['aiosqsq_requests_per_message']:.3f} requests/msg"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="N per drain (20000)")
    parser.add_argument("--runs", type=int, default=5, help="drains per consumer (5)")
    parser.add_argument("--ks", default="1,4,16", help="the hand loop's K values (1,4,16)")
    parser.add_argument(
        "--hand-attributes",
        type=int,
        metavar="K",
        help="also drain with hand K=K asking for aiosqsq's message attributes (diagnostic)",
    )
    parser.add_argument("--concurrency", type=int, default=100, help="aiosqsq's (100)")
    parser.add_argument(
        "--aiosqsq-pollers",
        default="",
        help="also drain with aiosqsq at these QUEUE_POLLERS, comma-separated (a diagnostic; "
        "aiosqsq's default is one poller per 10 slots, at most 4)",
    )
    parser.add_argument(
        "--aiosqsq-source",
        default="",
        help="also drain with the aiosqsq package found in these directories, comma-separated "
        "(a diagnostic for A/B runs: each must hold an aiosqsq/ package, such as a copy of "
        "an earlier version)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=0,
        help="keep B messages unreceived with a producer running during the drain; "
        "0 (the default): send all N before the drain",
    )
    parser.add_argument("--wait-time-s", type=int, default=1, help="WaitTimeSeconds (1)")
    parser.add_argument("--drain-timeout-s", type=float, default=300.0)
    parser.add_argument("--profile", action="store_true", help="then profile one drain each")
    parser.add_argument(
        "--profile-messages", type=int, default=40_000, help="N of each profiled drain (40000)"
    )
    parser.add_argument("--profile-dir", type=Path, help="keep the sampled stacks here")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    if (
        args.messages < 1
        or args.runs < 1
        or min(ks) < 1
        or not (args.backlog == 0 or args.backlog >= 10)
    ):
        parser.error("--messages, --runs, --ks must be >= 1, --backlog 0 or >= 10")
    pollers = [int(p) for p in args.aiosqsq_pollers.split(",") if p.strip()]
    sources = [Path(d).resolve() for d in args.aiosqsq_source.split(",") if d.strip()]
    if any(not (d / "aiosqsq" / "__init__.py").is_file() for d in sources):
        parser.error("--aiosqsq-source: each directory must hold an aiosqsq/ package")
    consumers = [
        Consumer("aiosqsq"),
        Consumer("aiosqsq", transport="botocore"),
        *(Consumer("aiosqsq", pollers=p) for p in pollers),
        *(Consumer("aiosqsq", source=d) for d in sources),
        *(Consumer("hand", k) for k in ks),
    ]
    if args.hand_attributes is not None:
        consumers.append(Consumer("hand", args.hand_attributes, attributes=True))
    if tuple(SYSTEM_ATTRIBUTES) != sqs_consumers.AIOSQSQ_SYSTEM_ATTRIBUTES:
        parser.error("sqs_consumers.AIOSQSQ_SYSTEM_ATTRIBUTES differs from aiosqsq's: update it")

    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    moto: MotoServer = start_moto_server()
    try:
        proxy = ProxyProcess(moto.endpoint_url)
        try:

            async def run() -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, list[float]]:
                try:
                    return await benchmark(moto, proxy, consumers, args)
                finally:
                    await proxy.aclose()

            summaries, profiles, spins = asyncio.run(run())
        finally:
            proxy.stop()
    finally:
        moto.stop()
    comparison = compare(summaries)
    report = {
        "benchmark": "SQS drain on moto server over loopback, no-op handler",
        "command": shlex.join(["python", *sys.argv]),
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "messages_per_run": args.messages,
        "runs": args.runs,
        "aiosqsq_concurrency": args.concurrency,
        "aiosqsq_pollers": summaries["aiosqsq"]["runs"][0]["consumer_report"]["pollers"],
        "hand_loop_ks": ks,
        "producer": (
            f"kept {args.backlog} messages unreceived during the drain"
            if args.backlog
            else "sent all N messages before the drain (not timed)"
        ),
        "wait_time_s": args.wait_time_s,
        "queue_visibility_timeout_s": VISIBILITY_TIMEOUT_S,
        "server": "tests/moto_server.py: moto's WSGI app on cheroot (keep-alive), its "
        "O(queue length) hot spots patched, requests serialised",
        "summary_statistic": "median over runs (min and max beside it)",
        "aiosqsq_source_sha256": source_digest(),
        "machine": machine(),
        "load_average_1min_before": load_before,
        "cpu_speed_spread": max(spins) / min(spins),  # slowest / fastest spin() timing
        "spin_ms_before_each_drain": [round(x * 1e3, 2) for x in spins],
        "consumers": summaries,
        "comparison": comparison,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(summaries, comparison))
    if profiles is not None:
        profile_output = args.output.with_name(f"{args.output.stem}_profile.json")
        profile_output.write_text(json.dumps(profiles, indent=2) + "\n")
        print(sqs_profile.describe(profiles))
        print(f"profile: {profile_output}")
    host = report["machine"]
    print(f"machine: {host['cpu_model']}, {host['usable_cores']} cores, {host['python']}")
    print(f"results: {args.output}")
    if report["cpu_speed_spread"] > SPEED_SPREAD:
        print(
            f"warning: the CPU ran up to {report['cpu_speed_spread'] - 1:.0%} slower at times "
            "during the run (a busy neighbour?): the figures may be noisy; run again",
            file=sys.stderr,
        )
    failed = [label for label, s in summaries.items() if s["losses"] or s["left_in_queue"]]
    if failed:
        print(f"error: messages lost or left in the queue by {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
