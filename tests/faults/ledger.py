"""Reading the ledger the fault-test apps write (``tests/faults/apps/ledger_writer.py``),
waiting on it, and the figures every test of a lifecycle-app run reports.

Figures (reliability.md 3.1): ``sent``; ``ok_unique`` = distinct ``seq`` with an ``ok``
line; ``dup`` = ``ok`` lines - ``ok_unique``; ``lost`` = ``sent`` - ``ok_unique``; ``dlq`` =
messages in the dead-letter queue; ``residual`` = messages left in the queue, visible or
not; ``T_drain`` = first send to the ledger complete; ``T_shutdown`` = signal to process
exit. :meth:`Figures.line` prints them on one line.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from tests.faults.queues import FaultQueues
from tests.helpers import slow

POLL_S = 0.05  # how often a wait re-reads the ledger file or the queue


@dataclass(frozen=True)
class Call:
    """One ledger line: what every app writes, then the fields of one app only."""

    event: str  # start | ok | fail | cancelled
    seq: int
    mid: str
    receive_count: int
    t: float  # time.time() in the worker
    pid: int
    error: str | None = None  # lifecycle app: the exception that ended the call
    sku: str = ""  # strict app: the order's fields, MessageGroupId, attribute names
    group: str = ""
    fifo_group: str | None = None
    attributes: list[str] = field(default_factory=list)


_FIELDS = frozenset(f.name for f in fields(Call))


class Ledger:
    """The ledger file at ``path``, re-read on every call (workers append to it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self, kind: str | None = None) -> list[Call]:
        """Every line, in the order written, or those of one ``kind``."""
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            call = Call(**{k: v for k, v in json.loads(line).items() if k in _FIELDS})
            if kind is None or call.event == kind:
                found.append(call)
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

        wait_until(lambda: seen() >= count, lambda: f"{seen()} {kind} lines", timeout_s=timeout_s)


def wait_until(
    done: Callable[[], bool], what: str | Callable[[], str], *, timeout_s: float
) -> float:
    """Poll ``done`` (progress only a worker process makes) until it holds; the seconds it
    took. Fails after ``slow(timeout_s)``, saying ``what`` was awaited (or its state, if
    a callable)."""
    started = time.monotonic()
    timeout_s = slow(timeout_s)
    while not done():
        if time.monotonic() - started > timeout_s:
            state = what if isinstance(what, str) else what()
            raise AssertionError(f"not within {timeout_s} s: {state}")
        time.sleep(POLL_S)
    return time.monotonic() - started


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
        queues: FaultQueues,
        url: str,
        *,
        sent: int,
        t_drain_s: float | None = None,
        t_shutdown_s: float | None = None,
    ) -> Figures:
        """The figures of a run on ``url`` once it is over, from the ledger and the queue."""
        ok = ledger.ok_counts()
        depth = queues.depth(url)
        return cls(
            name=name,
            sent=sent,
            ok_unique=len(ok),
            dup=sum(ok.values()) - len(ok),
            lost=sent - len(ok),
            dlq=queues.dlq_depth(url),
            residual=depth.visible + depth.in_flight,
            t_drain_s=t_drain_s,
            t_shutdown_s=t_shutdown_s,
        )

    def assert_handled_once(self) -> None:
        """Each message sent was handled exactly once; none was dead-lettered or left."""
        assert (self.ok_unique, self.dup, self.lost) == (self.sent, 0, 0)
        assert (self.dlq, self.residual) == (0, 0)

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
