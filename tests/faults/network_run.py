"""A network fault test's run: a lifecycle-app worker talking to moto through a fault
proxy (the test itself talks to moto directly), drained, and the figures it reports.

Figures, printed on one line by :meth:`DrainFigures.line`: ``sent``, ``handled`` (distinct
payloads with an ``ok``), ``dup`` (``ok`` lines beyond the first per payload), ``lost``
(sent, never handled, not dead-lettered), ``dlq``, ``residual`` (visible + in flight +
delayed left in the queue) and ``t_drain`` (from the worker's "consuming" line until
everything was handled and the queue was empty). The proxy-log readers below serve the
tests' own figures.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.cli.conftest import SECRET
from tests.cli.harness import CliProcess
from tests.faults.ledger import Ledger
from tests.faults.proxy import Exchange, FaultProxy
from tests.faults.queues import FaultQueues
from tests.faults.worker import start_worker, worker_env
from tests.helpers import slow

DRAIN_TIMEOUT_S = 30.0


@dataclass
class DrainFigures:
    sent: int
    handled: int
    dup: int
    lost: int
    dlq: int
    residual: int
    t_drain: float

    def line(self, name: str, **extra: object) -> str:
        more = "".join(f" {key}={value}" for key, value in extra.items())
        return (
            f"{name}: sent={self.sent} handled={self.handled} dup={self.dup} lost={self.lost} "
            f"dlq={self.dlq} residual={self.residual} t_drain={self.t_drain:.1f}s{more}"
        )

    def assert_clean(self, code: int) -> None:
        """All handled, nothing left or dead-lettered, and the worker exited 0."""
        assert (self.lost, self.residual, self.dlq) == (0, 0, 0)
        assert self.handled == self.sent
        assert code == 0


def network_env(endpoint_url: str, queue_url: str, ledger: Ledger, **extra: str) -> dict[str, str]:
    """A worker on ``queue_url`` talking to ``endpoint_url``; the secret key is a sentinel
    that must appear in nothing the worker prints."""
    return worker_env(
        endpoint_url,
        queue_url,
        ledger.path,
        QUEUE_AWS_SECRET_ACCESS_KEY=SECRET,
        QUEUE_SHUTDOWN_TIMEOUT="5",
        **extra,
    )


def send(queues: FaultQueues, total: int) -> str:
    """A new queue holding ``total`` messages."""
    url = queues.create()
    queues.send_seqs(url, range(total))
    return url


@dataclass
class Run:
    worker: CliProcess
    url: str
    started: float  # when the worker said it was consuming


@contextmanager
def consuming(
    endpoint_url: str, queues: FaultQueues, ledger: Ledger, sent: int, **env: str
) -> Iterator[Run]:
    """Send ``sent`` payloads and run a worker on them until the block ends."""
    url = send(queues, sent)
    with start_worker(network_env(endpoint_url, url, ledger, **env)) as worker:
        yield Run(worker, url, time.monotonic())


def drain(
    queues: FaultQueues,
    url: str,
    ledger: Ledger,
    sent: int,
    started: float,
    timeout_s: float = DRAIN_TIMEOUT_S,
) -> DrainFigures:
    """Wait (bounded) until every payload was handled and the queue is empty; the figures
    then (or at the timeout, for the assertions to judge)."""
    deadline = time.monotonic() + slow(timeout_s)
    while time.monotonic() < deadline:
        if len(ledger.ok_counts()) >= sent and queues.total(url) == 0:
            break
        time.sleep(0.1)
    t_drain = time.monotonic() - started
    ok = ledger.ok_counts()
    dlq = queues.dlq_depth(url)
    return DrainFigures(
        sent=sent,
        handled=len(ok),
        dup=sum(ok.values()) - len(ok),
        lost=sent - len(ok) - dlq,
        dlq=dlq,
        residual=queues.total(url),
        t_drain=t_drain,
    )


def wait_handled(ledger: Ledger, count: int, event: str = "ok") -> None:
    ledger.wait_for(event, count, timeout_s=DRAIN_TIMEOUT_S)


def rate(ledger: Ledger, start: float, end: float) -> float:
    """Handled per second between two wall-clock times."""
    return sum(1 for e in ledger.events("ok") if start <= e.t < end) / (end - start)


def warnings(worker: CliProcess, text: str) -> list[str]:
    return [r.message for r in worker.records() if r.level == "WARNING" and text in r.message]


def handles_to_messages(proxy: FaultProxy) -> dict[str, str]:
    return {h: m for e in proxy.exchanges("ReceiveMessage") for m, h in e.received}


def in_window(proxy: FaultProxy, operation: str, start: float, end: float) -> list[Exchange]:
    return [e for e in proxy.exchanges(operation) if start <= e.t < end]


def success_handles(proxy: FaultProxy, operation: str) -> Counter[str]:
    """How often each receipt handle was in an entry the client was told succeeded."""
    return Counter(
        e.entries[i] for e in proxy.exchanges(operation) if e.status == 200 for i in e.succeeded
    )
