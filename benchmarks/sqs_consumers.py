"""One consumer process of ``bench_sqs.py``: drains N messages from one queue, then reports.

    .venv/bin/python benchmarks/sqs_consumers.py aiosqsq --endpoint URL --queue-url URL \
        --messages N --ids-out PATH [--concurrency C] [--wait-time-s W] [--sample-cpu PATH]
    .venv/bin/python benchmarks/sqs_consumers.py hand --k K ... (same options)
    .venv/bin/python benchmarks/sqs_consumers.py produce-aiosqsq|produce-hand ... (a producer)

Two consumers, each with a no-op handler that records the message body (its sequence
number) and deletes every message it handles:

* ``aiosqsq``: ``App`` on the sqs backend, ``QUEUE_CONCURRENCY=C``, long polls of W s,
  the queue's own visibility timeout; ``app.stop()`` once N deletes have succeeded.
* ``hand``: the hand-written aiobotocore loop: K tasks, each ``receive_message(10, W s)``,
  the handler for each message, ``delete_message_batch`` of those; done at N deletes.

``--transport lean|botocore`` picks aiosqsq's ``QUEUE_SQS_TRANSPORT``. Two producers send
N messages (bodies "0" .. "N-1") in batches of 10, K batches in flight, and count the
entries sent as the consumers count deletes: ``produce-aiosqsq`` through the SQS
backend's ``send_batch``, ``produce-hand`` through aiobotocore's ``send_message_batch``.

The measured window starts after the SQS client is built and has made one call (imports,
client construction and the first connection are left out, for both), and ends when the
N-th delete succeeds: ``wall_s`` (perf_counter) and ``cpu_s`` (process_time, every thread)
cover it. Shutdown comes after. The last line on stdout is a JSON object with those, the
process's whole ``getrusage`` (user and system CPU) and peak RSS (``VmHWM``) at exit, and
counts; the handled sequence numbers go to ``--ids-out`` (int32, in handling order) so the
parent can count duplicates and losses exactly. QUEUE_* variables and ``.env`` are
ignored; credentials are moto's dummy ones, passed explicitly.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import gc
import json
import logging
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, TypeVar

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
SHUTDOWN_TIMEOUT_S = 10.0
# aiosqsq.backends.sqs.SYSTEM_ATTRIBUTES, copied: the hand loop's process never imports
# aiosqsq (bench_sqs.py checks the copy against the original).
AIOSQSQ_SYSTEM_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "ApproximateFirstReceiveTimestamp",
    "MessageGroupId",
    "SequenceNumber",
    "AWSTraceHeader",
    "SenderId",
)
T = TypeVar("T")
_ENTRY_IDS = [str(i) for i in range(10)]  # SQS caps a batch at 10 entries


class CpuSampler:
    """A statistical profiler on this process's CPU clock: every ``interval_s`` of CPU time
    (``ITIMER_PROF``: user and system time of every thread) SIGPROF records the main
    thread's Python stack. Time spent waiting in epoll, or runnable but preempted by the
    other processes of the benchmark, is never sampled; a system call's kernel time is
    recorded against the Python function that made it. The kernel checks CPU timers at
    its tick, so samples come at most once a tick (1-4 ms of CPU)."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.stacks: Counter[tuple[CodeType, ...]] = Counter()

    def _sample(self, signum: int, frame: FrameType | None) -> None:
        codes = []
        while frame is not None:
            codes.append(frame.f_code)
            frame = frame.f_back
        self.stacks[tuple(codes)] += 1

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval_s, self.interval_s)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_IGN)  # SIGPROF's default action kills

    def write(self, path: Path) -> None:
        """Collapsed stacks, outermost frame first: ``func (file:line);... count``."""
        lines = []
        for codes, count in self.stacks.items():
            frames = ";".join(
                f"{c.co_qualname} ({c.co_filename}:{c.co_firstlineno})" for c in reversed(codes)
            )
            lines.append(f"{frames} {count}\n")
        path.write_text("".join(lines))


class Window:
    """The measured window: from :meth:`start` to the N-th successful delete."""

    def __init__(self, target: int, *, sampler: CpuSampler | None = None) -> None:
        self.target = target
        self.sampler = sampler
        self.deleted = 0
        self.delete_failures = 0
        self.handled = array.array("i")
        self.on_done: Callable[[], None] = lambda: None
        self.started: tuple[float, float] | None = None
        self.ended: tuple[float, float] | None = None

    def start(self) -> None:
        if self.sampler is not None:
            self.sampler.start()
        self.started = (time.perf_counter(), time.process_time())

    def count_deletes(self, successful: int, failed: int) -> None:
        self.deleted += successful
        self.delete_failures += failed
        if self.ended is None and self.deleted >= self.target:
            self.ended = (time.perf_counter(), time.process_time())
            if self.sampler is not None:
                self.sampler.stop()
            self.on_done()

    async def handler(self, payload: str) -> None:
        """The no-op handler of both consumers: it records the body, a sequence number."""
        self.handled.append(int(payload))

    def figures(self) -> dict[str, Any]:
        assert self.started is not None
        ended = self.ended or (time.perf_counter(), time.process_time())
        return {
            "completed": self.ended is not None,
            "wall_s": ended[0] - self.started[0],
            "cpu_s": ended[1] - self.started[1],
            "cpu_before_window_s": self.started[1],
            "handled": len(self.handled),
            "deleted": self.deleted,
            "delete_failures": self.delete_failures,
        }


async def run_aiosqsq(args: argparse.Namespace, window: Window) -> dict[str, Any]:
    # Imported here: the hand loop's process never loads aiosqsq (its RSS is its own).
    from aiosqsq import App, QueueSettings
    from aiosqsq.backends.base import BatchResult, DeleteEntry
    from aiosqsq.backends.sqs import SQSBackend

    class CountingSQSBackend(SQSBackend):
        """aiosqsq's SQS backend, telling the window each DeleteMessageBatch's result: one
        extra call per batch, as the hand loop counts its own deletes."""

        async def delete_batch(self, queue_url: str, entries: Sequence[DeleteEntry]) -> BatchResult:
            result = await super().delete_batch(queue_url, entries)
            window.count_deletes(len(result.successful), len(result.failed))
            return result

    settings = QueueSettings(
        _env_file=None,
        backend="sqs",
        sqs_queue_url=args.queue_url,
        sqs_endpoint_url=args.endpoint,
        sqs_transport=args.transport,
        metrics=args.metrics,  # ignored by a version without metrics (extra="ignore")
        aws_region=REGION,
        concurrency=args.concurrency,
        pollers=args.pollers,  # None: aiosqsq's default, one per 10 slots, at most 4
        max_messages=10,
        wait_time_seconds=args.wait_time_s,
        visibility_timeout=None,  # the queue's own (the benchmark creates it with 60 s)
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        **CREDENTIALS,
    )
    backend = CountingSQSBackend(settings)
    app = App(settings, backend=backend)
    window.on_done = app.stop
    app.handler()(window.handler)
    try:
        await backend.get_queue_url(args.queue_url)  # builds the client: outside the window
        stats = await measured(window, app.run(burst=False, handle_signals=False))
    finally:
        await backend.aclose()
    return {
        "statistics": stats.summary(),
        "pollers": settings.pollers_for(args.concurrency),
        "transport": args.transport,
    }


async def produce(
    args: argparse.Namespace,
    window: Window,
    send: Callable[[list[tuple[str, str]]], Awaitable[int]],
) -> None:
    """Send bodies "0" .. "N-1" in batches of 10 (entry id, body), ``args.k`` in flight;
    ``send`` returns how many entries succeeded."""
    batches = [
        [(_ENTRY_IDS[i - start], str(i)) for i in range(start, min(args.messages, start + 10))]
        for start in range(0, args.messages, 10)
    ]
    cursor = iter(batches)

    async def sender() -> None:
        for batch in cursor:
            sent = await send(batch)
            window.handled.extend(int(body) for _, body in batch[:sent])
            window.count_deletes(sent, len(batch) - sent)

    async def all_senders() -> None:
        await asyncio.gather(*(sender() for _ in range(args.k)))

    await measured(window, all_senders())


async def run_produce_aiosqsq(args: argparse.Namespace, window: Window) -> dict[str, Any]:
    from pydantic import SecretStr

    from aiosqsq.backends.base import SendEntry
    from aiosqsq.backends.sqs import SQSBackend
    from aiosqsq.backends.sqs_config import SQSConfig

    config = SQSConfig(
        endpoint_url=args.endpoint,
        region=REGION,
        access_key_id=SecretStr(CREDENTIALS["aws_access_key_id"]),
        secret_access_key=SecretStr(CREDENTIALS["aws_secret_access_key"]),
        transport=args.transport,
    )
    async with SQSBackend(config, max_connections=max(10, args.k + 2)) as backend:
        await backend.get_queue_url(args.queue_url)  # builds the client: outside the window

        async def send(batch: list[tuple[str, str]]) -> int:
            entries = [SendEntry(entry_id, body) for entry_id, body in batch]
            return len((await backend.send_batch(args.queue_url, entries)).successful)

        await produce(args, window, send)
    return {"k": args.k, "transport": args.transport}


async def run_produce_hand(args: argparse.Namespace, window: Window) -> dict[str, Any]:
    async with _hand_client(args) as client:
        await client.get_queue_attributes(QueueUrl=args.queue_url, AttributeNames=["QueueArn"])

        async def send(batch: list[tuple[str, str]]) -> int:
            entries = [{"Id": entry_id, "MessageBody": body} for entry_id, body in batch]
            response = await client.send_message_batch(QueueUrl=args.queue_url, Entries=entries)
            return len(response.get("Successful", []))

        await produce(args, window, send)
    return {"k": args.k}


def _hand_client(args: argparse.Namespace) -> Any:
    import aioboto3  # type: ignore[import-untyped]
    from aiobotocore.config import AioConfig  # type: ignore[import-untyped]

    config = AioConfig(
        connect_timeout=3,
        read_timeout=25,
        max_pool_connections=max(10, args.k + 2),
        retries={"mode": "standard", "total_max_attempts": 3},
    )
    return aioboto3.Session().client(
        "sqs", region_name=REGION, endpoint_url=args.endpoint, config=config, **CREDENTIALS
    )


async def run_hand(args: argparse.Namespace, window: Window) -> dict[str, Any]:
    done = asyncio.Event()
    window.on_done = done.set
    url = args.queue_url
    attributes: dict[str, Any] = {}
    if args.attributes:  # what aiosqsq's receive asks for (aiosqsq/backends/sqs.py)
        attributes = {
            "MessageSystemAttributeNames": list(AIOSQSQ_SYSTEM_ATTRIBUTES),
            "MessageAttributeNames": ["All"],
        }
    async with _hand_client(args) as client:
        await client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])

        async def worker() -> None:
            while not done.is_set():
                response = await client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=args.wait_time_s,
                    **attributes,
                )
                messages = response.get("Messages", [])
                if not messages:
                    continue
                for message in messages:
                    await window.handler(message["Body"])
                result = await client.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": _ENTRY_IDS[i], "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
                window.count_deletes(
                    len(result.get("Successful", [])), len(result.get("Failed", []))
                )

        async def consume() -> None:
            tasks = [asyncio.create_task(worker()) for _ in range(args.k)]
            try:
                await done.wait()
            finally:
                # Polls still waiting find an empty queue: nothing they hold is lost.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        await measured(window, consume())
    return {"k": args.k, "attributes": args.attributes}


async def measured(window: Window, work: Awaitable[T]) -> T:
    """Await ``work`` inside the window."""
    gc.collect()
    window.start()
    return await work


async def drain(args: argparse.Namespace) -> dict[str, Any]:
    sampler = CpuSampler() if args.sample_cpu is not None else None
    window = Window(args.messages, sampler=sampler)
    run = {
        "aiosqsq": run_aiosqsq,
        "hand": run_hand,
        "produce-aiosqsq": run_produce_aiosqsq,
        "produce-hand": run_produce_hand,
    }[args.consumer]
    extra: dict[str, Any] = {}
    try:
        async with asyncio.timeout(args.timeout_s):
            extra = await run(args, window)
    except TimeoutError:
        extra = {"timed_out": True}
    args.ids_out.write_bytes(window.handled.tobytes())
    if sampler is not None:
        sampler.stop()  # if the window did not complete
        sampler.write(args.sample_cpu)
    return {"consumer": args.consumer, **window.figures(), **extra}


def peak_rss_kib() -> int:
    """This process's peak resident set size since its exec (Linux ``VmHWM``), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("consumer", choices=["aiosqsq", "hand", "produce-aiosqsq", "produce-hand"])
    parser.add_argument(
        "--transport", choices=["lean", "botocore"], default="lean", help="aiosqsq's (lean)"
    )
    parser.add_argument(
        "--metrics", choices=["on", "off"], default="on", help="aiosqsq's QUEUE_METRICS (on)"
    )
    parser.add_argument("--endpoint", required=True, help="the counting proxy's URL")
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--messages", type=int, required=True, help="N: done at N deletes")
    parser.add_argument("--ids-out", type=Path, required=True, help="handled sequence numbers")
    parser.add_argument("--concurrency", type=int, default=100, help="aiosqsq's concurrency")
    parser.add_argument("--pollers", type=int, help="aiosqsq's QUEUE_POLLERS (its default)")
    parser.add_argument("--k", type=int, default=4, help="the hand loop's concurrent polls")
    parser.add_argument(
        "--attributes", action="store_true", help="the hand loop asks for aiosqsq's attributes"
    )
    parser.add_argument("--wait-time-s", type=int, default=1, help="long poll WaitTimeSeconds")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="give up after this")
    parser.add_argument(
        "--sample-cpu", type=Path, help="sample the window's stacks on the CPU clock into this"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    report = asyncio.run(drain(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report["process"] = {  # the whole process, start to exit
        "user_cpu_s": usage.ru_utime,
        "system_cpu_s": usage.ru_stime,
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve, so a child would
        # report its parent's RSS at fork when that is larger
        "max_rss_kib": peak_rss_kib(),
    }
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
