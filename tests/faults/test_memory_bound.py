"""A large backlog in the real ``aiosqsq run`` command (reliability.md 3.4: T24): the worker
holds no more than its concurrency plus one batch per poller, however long the queue, and
its memory stays flat while it drains.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import pytest

from aiosqsq.cli import ExitCode
from tests.faults.ledger import Figures, Ledger
from tests.faults.queues import FaultQueues
from tests.faults.worker import prepare, start_worker, summary
from tests.helpers import slow

SAMPLE_EVERY_S = 1.0
SAMPLING_SLACK = 10  # messages a 1 s sample may catch between a receive and its bookkeeping
RSS_GROWTH_LIMIT_KB = 30 * 1024


def _rss_kb(pid: int) -> int:
    """The process's resident set size (VmRSS in /proc/<pid>/status), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_t24_a_large_backlog_is_held_in_bounded_memory(
    queues: FaultQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    total, concurrency, warm_up = 20_000, 8, 2_000
    pollers = math.ceil(concurrency / 10)  # QUEUE_POLLERS' default: one per 10 slots
    held_limit = concurrency + 10 * pollers + SAMPLING_SLACK
    url, env, sent_at = prepare(
        queues,
        ledger,
        moto_endpoint,
        total,
        visibility_timeout_s=30,
        concurrency=concurrency,
        HANDLER_MIN_S=0.002,
        HANDLER_MAX_S=0.005,
    )

    in_flight: list[int] = []
    rss_after_warm_up: list[int] = []
    started = next_sample = time.monotonic()
    with start_worker(env) as worker:
        deadline = started + slow(240)
        while (handled := len(ledger.events("ok"))) < total:
            assert time.monotonic() < deadline, f"{handled} of {total} handled in time"
            in_flight.append(queues.depth(url).in_flight)
            if handled >= warm_up:
                rss_after_warm_up.append(_rss_kb(worker.pid))
            next_sample += SAMPLE_EVERY_S
            time.sleep(max(0.0, next_sample - time.monotonic()))
        drained_s = time.monotonic() - sent_at
        worker.send_signal(signal.SIGTERM)
        assert worker.wait() == ExitCode.OK, worker.output
    stats = summary(worker)

    figures = Figures.of("T24 memory bound", ledger, queues, url, sent=total, t_drain_s=drained_s)
    rss_growth_kb = max(rss_after_warm_up) - rss_after_warm_up[0] if rss_after_warm_up else 0
    figures.extra["samples"] = len(in_flight)
    figures.extra["max_in_flight"] = max(in_flight)
    figures.extra["held_limit"] = held_limit
    figures.extra["rss_first_kb"] = rss_after_warm_up[0] if rss_after_warm_up else 0
    figures.extra["rss_growth_kb"] = rss_growth_kb
    handling_s = max(e.t for e in ledger.events("ok")) - min(ledger.first_start().values())
    figures.extra["throughput_msg_s"] = total / handling_s
    print(figures.line())

    figures.assert_handled_once()
    assert stats["succeeded"] == total
    assert len(rss_after_warm_up) >= 3, "too few samples after the warm-up to judge memory"
    assert max(in_flight) <= held_limit
    assert rss_growth_kb <= RSS_GROWTH_LIMIT_KB
