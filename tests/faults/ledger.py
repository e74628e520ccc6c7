"""What a fault test needs around the ledger app (``tests/faults/apps/lifecycle.py``):
reading its ledger, the figures every test reports, the queue the ledger is checked
against, and the worker command.

Figures (reliability.md 3.1): ``sent``; ``ok_unique`` = distinct ``seq`` with an ``ok``
line; ``dup`` = ``ok`` lines - ``ok_unique``; ``lost`` = ``sent`` - ``ok_unique`` -
``expected_dlq`` (- ``held_back``); ``dlq`` = messages in the dead-letter queue;
``residual`` = messages left in the queue, visible or not; ``T_drain`` = first send to
the ledger complete; ``T_shutdown`` = signal to process exit. :meth:`Figures.line` prints
them on one line.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiosqsq.backends.base import QueueMessage, VisibilityEntry
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.settings import QueueSettings
from tests.cli.conftest import MotoQueues
from tests.cli.harness import CliProcess

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.faults.apps.lifecycle:app"
POLL_S = 0.05  # how often a wait re-reads the ledger file or the queue


# -- the ledger ------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One ledger line."""

    event: str  # start | ok | fail
    seq: int
    mid: str
    receive_count: int
    t: float  # time.time() in the worker
    pid: int
    error: str | None = None


class Ledger:
    """The ledger file at ``path``, re-read on every call (workers append to it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self, kind: str | None = None) -> list[Event]:
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            event = Event(**json.loads(line))
            if kind is None or event.event == kind:
                found.append(event)
        return found

    def ok_counts(self) -> Counter[int]:
        return Counter(event.seq for event in self.events("ok"))

    def first_start(self) -> dict[int, float]:
        """Each ``seq``'s first ``start`` time."""
        first: dict[int, float] = {}
        for event in self.events("start"):
            first.setdefault(event.seq, event.t)
        return first

    def wait_for(self, kind: str, count: int, *, unique: bool = False, timeout_s: float) -> None:
        """Wait (bounded) until ``count`` lines of ``kind`` are written (``unique``: for
        distinct ``seq``s): progress only the worker brings, read from its file."""

        def seen() -> int:
            events = self.events(kind)
            return len({e.seq for e in events}) if unique else len(events)

        wait_until(lambda: seen() >= count, timeout_s, lambda: f"{seen()} {kind} lines")


def wait_until(done: Callable[[], bool], timeout_s: float, state: Callable[[], str]) -> float:
    """Poll ``done`` until it holds; return the seconds it took; fail after ``timeout_s``."""
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not done after {timeout_s} s: {state()}")
        time.sleep(POLL_S)
    return time.monotonic() - started


# -- figures ---------------------------------------------------------------------------


@dataclass
class Figures:
    name: str
    sent: int
    ok_unique: int
    dup: int
    lost: int
    dlq: int
    residual: int
    t_drain_s: float | None = None
    t_shutdown_s: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        name: str,
        ledger: Ledger,
        *,
        sent: int,
        dlq: int,
        residual: int,
        expected_dlq: int = 0,
        held_back: int = 0,
        t_drain_s: float | None = None,
        t_shutdown_s: float | None = None,
    ) -> Figures:
        """``held_back``: messages the test left in the queue on purpose (a retry backoff
        still running), not counted as lost."""
        ok = ledger.ok_counts()
        return cls(
            name=name,
            sent=sent,
            ok_unique=len(ok),
            dup=sum(ok.values()) - len(ok),
            lost=sent - len(ok) - expected_dlq - held_back,
            dlq=dlq,
            residual=residual,
            t_drain_s=t_drain_s,
            t_shutdown_s=t_shutdown_s,
        )

    def line(self) -> str:
        """One line: every figure, then the extras."""

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}s"

        extra = "".join(
            f" {key}={value:.2f}" if isinstance(value, float) else f" {key}={value}"
            for key, value in self.extra.items()
        )
        return (
            f"{self.name}: sent={self.sent} ok_unique={self.ok_unique} dup={self.dup} "
            f"lost={self.lost} dlq={self.dlq} residual={self.residual} "
            f"T_drain={seconds(self.t_drain_s)} T_shutdown={seconds(self.t_shutdown_s)}{extra}"
        )


# -- the queue -------------------------------------------------------------------------


class LedgerQueues(MotoQueues):
    """Queues with a dead-letter queue and a chosen visibility timeout, the ``{"seq": n}``
    messages the ledger app reads, and the checks made on the queue after a run."""

    def __init__(self, settings: QueueSettings) -> None:
        super().__init__(settings)
        self.dlq_urls: dict[str, str] = {}

    def create_with(self, *, visibility_timeout_s: int, max_receive_count: int = 5) -> str:
        name = f"faults-{uuid.uuid4().hex[:10]}"

        async def create(backend: SQSBackend) -> str:
            dlq_url = await backend.create_queue(f"{name}-dlq")
            self._created.append(dlq_url)
            dlq = await backend.get_queue_info(dlq_url)
            redrive = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive_count}
            attributes = {
                "RedrivePolicy": json.dumps(redrive),
                "VisibilityTimeout": str(visibility_timeout_s),
            }
            url = await backend.create_queue(name, attributes)
            self._created.append(url)
            self.dlq_urls[url] = dlq_url
            return url

        return self._call(create)

    def send_seqs(self, url: str, seqs: Iterable[int]) -> None:
        self.send(url, [json.dumps({"seq": seq}) for seq in seqs])

    def dlq_depth(self, url: str) -> int:
        depth = self.depth(self.dlq_urls[url])
        return depth.visible + depth.in_flight + depth.delayed

    def probe(self, url: str) -> list[QueueMessage]:
        """Receive every visible message, then hand each back at once (visibility 0): what
        a consumer starting now would get, without hiding it from the next one."""

        async def probe(backend: SQSBackend) -> list[QueueMessage]:
            found: list[QueueMessage] = []
            while batch := await backend.receive(
                url, max_messages=10, wait_time_s=0, visibility_timeout_s=30
            ):
                found.extend(batch)
            for start in range(0, len(found), 10):
                entries = [
                    VisibilityEntry(str(i), message.receipt_handle, 0)
                    for i, message in enumerate(found[start : start + 10])
                ]
                result = await backend.change_visibility_batch(url, entries)
                assert not result.failed, result.failed
            return found

        return self._call(probe)


def seqs_of(messages: Iterable[QueueMessage]) -> list[int]:
    return sorted(int(json.loads(message.body)["seq"]) for message in messages)


# -- the worker ------------------------------------------------------------------------


def worker_env(endpoint_url: str, queue_url: str, ledger: Path, **knobs: object) -> dict[str, str]:
    """The environment of a ledger app worker on ``queue_url``: ``knobs`` are QUEUE_*
    settings (``concurrency=4`` is ``QUEUE_CONCURRENCY=4``) or the app's own
    ``HANDLER_MIN_S``/``HANDLER_MAX_S`` when given in capitals."""
    env = {
        "QUEUE_BACKEND": "sqs",
        "QUEUE_SQS_ENDPOINT_URL": endpoint_url,
        "QUEUE_SQS_QUEUE_URL": queue_url,
        "QUEUE_AWS_REGION": "us-east-1",
        "QUEUE_AWS_ACCESS_KEY_ID": "testing",
        "QUEUE_AWS_SECRET_ACCESS_KEY": "testing",
        "QUEUE_WAIT_TIME_SECONDS": "1",
        "LEDGER_PATH": str(ledger),
    }
    for key, value in knobs.items():
        env[key if key.isupper() else f"QUEUE_{key.upper()}"] = str(value)
    return env


def start_worker(env: Mapping[str, str], *options: str) -> CliProcess:
    """``python -m aiosqsq run tests.faults.apps.lifecycle:app`` in the background, once
    it says it is consuming."""
    worker = CliProcess("run", APP, "--app-dir", str(ROOT), *options, env=env)
    try:
        worker.wait_for(r"aiosqsq: consuming \S+ with ", timeout_s=30)
    except BaseException:
        worker.stop()
        raise
    return worker


_SUMMARY = re.compile(r"stopped after [\d.]+ s: (?P<counts>.*)$")


def summary(worker: CliProcess) -> dict[str, int]:
    """The counts of the worker's last ``stopped after`` line."""
    lines = [r.message for r in worker.records() if _SUMMARY.match(r.message)]
    assert lines, f"no summary line; output:\n{worker.output}"
    match = _SUMMARY.match(lines[-1])
    assert match is not None
    return {
        name: int(value) for name, value in (pair.split("=") for pair in match["counts"].split())
    }
