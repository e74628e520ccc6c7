"""Changes a worker does not make, against the real ``aiosqsq run`` command
(reliability.md 3.4: T8, T11).

* T8: an operator purges the queue while the worker holds its messages. moto then answers
  ``ReceiptHandleIsInvalid`` for every receipt handle of a purged message (moto accepts
  handles of messages that still exist, so only an outside change shows this path
  without a forged answer). The heartbeat's next extension of each fails once, the
  handler is cancelled with one warning, and the handle is never used again; the worker
  stays up and handles what is sent next.
* T11 (slow): latency and jitter on every TCP chunk, both ways, through
  tests/faults/tcp_proxy.py: nothing lost, nothing handled twice.

The worker runs tests/faults/apps/lifecycle.py (tests/faults/network_run.py runs it);
the proxy's request log gives the per-handle figures.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from tests.faults.ledger import Ledger, wait_until
from tests.faults.network_run import consuming, drain, handles_to_messages, warnings
from tests.faults.proxy import FaultProxy
from tests.faults.queues import FaultQueues, purge
from tests.faults.tcp_proxy import TcpProxy
from tests.faults.worker import stop_worker
from tests.helpers import slow

# --- T8: receipt handles invalidated from outside ------------------------------------


@pytest.mark.slow  # 7-14 s: the slow tier (scripts/test -m slow)
def test_t8_a_purge_costs_one_failed_extension_and_one_warning_per_message(
    fault_proxy: FaultProxy, queues: FaultQueues, ledger: Ledger
) -> None:
    held, after = 20, 20
    # 6-8 s handlers with a 2 s visibility timeout: the heartbeat extends each message
    # every ~1 s, so every handler is still running when the purge lands
    env = {
        "QUEUE_CONCURRENCY": str(held),
        "QUEUE_VISIBILITY_TIMEOUT": "2",
        "HANDLER_MIN_S": "6",
        "HANDLER_MAX_S": "8",
    }
    with consuming(fault_proxy.endpoint_url, queues, ledger, held, **env) as run:
        ledger.wait_for("start", held, unique=True, timeout_s=20)

        def extended() -> bool:
            return any(e.succeeded for e in fault_proxy.exchanges("ChangeMessageVisibilityBatch"))

        wait_until(extended, "a first successful extension", timeout_s=10)
        purged_at = time.monotonic()
        purge(queues, run.url)
        t_purge = purged_at - fault_proxy.started
        wait_until(
            lambda: len(warnings(run.worker, "lost the lease")) >= held,
            lambda: f"{len(warnings(run.worker, 'lost the lease'))} lease-lost warnings",
            timeout_s=15,
        )
        t_all_warned = time.monotonic() - purged_at
        queues.send_seqs(run.url, range(100, 100 + after))
        next_sent = time.monotonic()
        figures = drain(queues, run.url, ledger, after, next_sent)
        alive = run.worker.process.poll() is None
        code, t_shutdown = stop_worker(run.worker)
        every_warning = [r.message for r in run.worker.records() if r.level == "WARNING"]

    message_of = handles_to_messages(fault_proxy)
    purged_ids = {e.mid for e in ledger.events("start") if e.seq < held}
    every = fault_proxy.exchanges()
    # per receipt handle of a purged message: failed extensions, and uses after the first
    failed_extensions: Counter[str] = Counter()
    first_failure: dict[str, float] = {}
    for exchange in fault_proxy.exchanges("ChangeMessageVisibilityBatch"):
        for entry_id in exchange.failed:
            handle = exchange.entries[entry_id]
            failed_extensions[handle] += 1
            first_failure.setdefault(handle, exchange.t)
    used_after = {
        handle: [e.operation for e in every if e.t > t and handle in e.entries.values()]
        for handle, t in first_failure.items()
    }
    delete_attempts = Counter(
        message_of.get(h, h)
        for e in fault_proxy.exchanges("DeleteMessageBatch")
        for h in e.entries.values()
    )
    warned = Counter(mid for mid in purged_ids for w in every_warning if mid in w)
    cancelled = {e.seq for e in ledger.events("fail") if e.error == "CancelledError"}
    handled_after = {e.seq for e in ledger.events("ok")}
    print(
        figures.line(
            "T8",
            purged=held,
            purge_at=f"{t_purge:.1f}s",
            failed_extensions=sum(failed_extensions.values()),
            max_failed_per_handle=max(failed_extensions.values(), default=0),
            uses_after_failure=sum(len(ops) for ops in used_after.values()),
            deletes_of_purged=sum(delete_attempts[m] for m in purged_ids),
            warnings_per_purged=sorted(set(warned.values())),
            cancelled=len(cancelled),
            all_warned_in=f"{t_all_warned:.1f}s",
            alive=alive,
            t_shutdown=f"{t_shutdown:.1f}s",
        )
    )
    assert alive, run.worker.output
    assert code == 0, run.worker.output
    # each purged message: one failed extension, then its handle is never used again
    assert {message_of[h] for h in failed_extensions} == purged_ids
    assert max(failed_extensions.values()) == 1
    assert all(ops == [] for ops in used_after.values()), used_after
    # at most one delete attempt per message (here none: every handler was cancelled)
    assert all(delete_attempts[m] <= 1 for m in purged_ids)
    # one warning per purged message, not one per attempt; each handler cancelled once
    assert warned == dict.fromkeys(purged_ids, 1), every_warning
    assert cancelled == set(range(held))
    assert t_all_warned <= slow(2 * 2)  # within a visibility timeout of the purge, 2x slack
    # what is sent after the purge is handled normally
    assert handled_after == set(range(100, 100 + after))
    assert (figures.handled, figures.dup, figures.lost) == (after, 0, 0)
    assert (figures.dlq, figures.residual) == (0, 0)
    assert figures.t_drain <= slow(2 * 8 + 5)  # one 6-8 s round of handlers, 2x slack


# --- T11: latency and jitter (slow) -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_t11_latency_and_jitter_lose_and_repeat_nothing(
    tcp_proxy: TcpProxy, queues: FaultQueues, ledger: Ledger
) -> None:
    """+300 ms ± 200 ms on every chunk, each way (a new draw every 50 ms): each SQS call
    takes 0.2-1 s more, the heartbeat's extensions included. A 6 s visibility timeout
    with 1-3 s handlers needs extensions that arrive in time: no duplicate, no loss."""
    sent = 300
    jitter = random.Random(11)
    stop = threading.Event()

    def vary() -> None:
        while not stop.wait(0.05):
            tcp_proxy.latency_s = jitter.uniform(0.1, 0.5)

    varying = threading.Thread(target=vary, daemon=True)
    tcp_proxy.latency_s = 0.3
    varying.start()
    env = {
        "QUEUE_CONCURRENCY": "40",
        "QUEUE_VISIBILITY_TIMEOUT": "6",
        "HANDLER_MIN_S": "1",
        "HANDLER_MAX_S": "3",
    }
    try:
        with consuming(tcp_proxy.endpoint_url, queues, ledger, sent, **env) as run:
            figures = drain(queues, run.url, ledger, sent, run.started, timeout_s=150)
            code, t_shutdown = stop_worker(run.worker)
            lease_lost = warnings(run.worker, "lost the lease")
    finally:
        stop.set()
        varying.join(5)
    throughput = figures.handled / figures.t_drain
    print(
        figures.line(
            "T11",
            latency="300+-200ms each way",
            throughput=f"{throughput:.1f}/s",
            connections=tcp_proxy.connections,
            lease_lost=len(lease_lost),
            t_shutdown=f"{t_shutdown:.1f}s",
        )
    )
    figures.assert_clean(code)
    assert figures.dup == 0
    assert lease_lost == []
