"""Handlers that run for several visibility timeouts, in the real ``aiosqsq run`` command
(reliability.md 3.4: T6, T7, T19): the heartbeat keeps each message hidden, so none is
handled twice; it extends them in batches (counted by the proxy between worker and moto);
it never extends a message already deleted, even when its calls are slow; idle long polls
do not starve it.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

import pytest

from aiosqsq.cli import ExitCode
from tests.cli.harness import CliProcess
from tests.faults.ledger import Figures, Ledger
from tests.faults.proxy import Delay, FaultProxy
from tests.faults.queues import FaultQueues
from tests.faults.worker import prepare, start_worker, summary
from tests.helpers import slow


def _handle_all(
    queues: FaultQueues,
    ledger: Ledger,
    endpoint_url: str,
    total: int,
    *,
    visibility_timeout_s: int,
    ok_within_s: float,
    stop_with: signal.Signals = signal.SIGTERM,
    **knobs: object,
) -> tuple[str, CliProcess, float]:
    """Send ``total`` messages, run a worker until each is handled, stop it with
    ``stop_with`` and check it exits 0; the queue, the worker and its shutdown time."""
    url, env, _ = prepare(
        queues, ledger, endpoint_url, total, visibility_timeout_s=visibility_timeout_s, **knobs
    )

    with start_worker(env) as worker:
        ledger.wait_for("ok", total, timeout_s=ok_within_s)
        signalled = time.monotonic()
        worker.send_signal(stop_with)
        assert worker.wait() == ExitCode.OK, worker.output
        shutdown_s = time.monotonic() - signalled
    return url, worker, shutdown_s


@dataclass
class LeaseTimeline:
    """What the proxy saw of each receipt handle: extensions sent after its delete, and
    the least visibility left when an extension arrived (``hb_slack``)."""

    extended_after_delete: int
    min_slack_s: float | None


def lease_timeline(proxy: FaultProxy, visibility_timeout_s: float) -> LeaseTimeline:
    """Read the proxy's log: each message is hidden from its receive for the queue's
    visibility timeout, and each extension hides it for that long again from its call
    (the heartbeat extends by one visibility timeout)."""
    visible_until: dict[str, float] = {}
    deleted_at: dict[str, float] = {}
    extended_after_delete = 0
    slack: list[float] = []
    for exchange in proxy.exchanges():
        if exchange.operation == "ReceiveMessage":
            for _, handle in exchange.received:
                visible_until[handle] = exchange.t + visibility_timeout_s
        elif exchange.operation == "DeleteMessageBatch":
            for entry_id in exchange.succeeded:
                deleted_at.setdefault(exchange.entries[entry_id], exchange.t)
        elif exchange.operation == "ChangeMessageVisibilityBatch":
            for handle in exchange.entries.values():
                if handle in deleted_at:
                    extended_after_delete += 1
                elif handle in visible_until:
                    slack.append(visible_until[handle] - exchange.t)
                    visible_until[handle] = exchange.t + visibility_timeout_s
    return LeaseTimeline(extended_after_delete, min(slack) if slack else None)


def test_t6_long_jobs_are_kept_hidden_by_batched_extensions(
    queues: FaultQueues, ledger: Ledger, fault_proxy: FaultProxy
) -> None:
    # Handlers of 7-8 s on a queue whose visibility timeout is 2 s: each needs several
    # extensions; all six are received together, so each beat can extend them in one call.
    total, visibility_timeout_s = 6, 2
    url, worker, _ = _handle_all(
        queues,
        ledger,
        fault_proxy.endpoint_url,
        total,
        visibility_timeout_s=visibility_timeout_s,
        ok_within_s=30,
        stop_with=signal.SIGINT,  # as from a terminal
        concurrency=10,
        HANDLER_MIN_S=7,
        HANDLER_MAX_S=8,
    )
    stats = summary(worker)

    figures = Figures.of("T6 long jobs", ledger, queues, url, sent=total)
    batch_calls = fault_proxy.requests["ChangeMessageVisibilityBatch"]
    figures.extra["extensions"] = stats["heartbeats_sent"]
    figures.extra["extension_calls"] = batch_calls
    figures.extra["single_calls"] = fault_proxy.requests["ChangeMessageVisibility"]
    figures.extra["entries_per_call"] = stats["heartbeats_sent"] / max(batch_calls, 1)
    timeline = lease_timeline(fault_proxy, visibility_timeout_s)
    figures.extra["min_hb_slack_s"] = timeline.min_slack_s
    figures.extra["extended_after_delete"] = timeline.extended_after_delete
    print(figures.line())

    figures.assert_handled_once()
    assert {e.receive_count for e in ledger.events("start")} == {1}  # never redelivered
    # 7 s of handling with 2 s of visibility: at least 3 extensions per message.
    assert stats["heartbeats_sent"] >= 3 * total
    assert fault_proxy.requests["ChangeMessageVisibility"] == 0
    # Batched: the messages held together are extended together, not one call each.
    assert stats["heartbeats_sent"] >= (total / 2) * batch_calls
    # Each extension came while the message was still hidden, and none after its delete.
    assert timeline.min_slack_s is not None
    assert timeline.min_slack_s > 0
    assert timeline.extended_after_delete == 0


def test_t7_the_heartbeat_never_extends_a_message_already_deleted(
    queues: FaultQueues, ledger: Ledger, fault_proxy: FaultProxy
) -> None:
    # 100 handlers of 3-5 s on a 6 s visibility timeout, received together: one beat,
    # 3.0-4.5 s after the receive, extends those still running in batches of 10, one
    # after another, each held 0.2 s by the proxy. Handlers end and their deletes go out
    # while the later batches wait their turn: those must leave out what was settled
    # meanwhile (README: the heartbeat never extends a settled message, which is what
    # keeps it from overwriting a retry's backoff).
    total, visibility_timeout_s = 100, 6
    fault_proxy.add("ChangeMessageVisibilityBatch", Delay(0.2))
    url, worker, _ = _handle_all(
        queues,
        ledger,
        fault_proxy.endpoint_url,
        total,
        visibility_timeout_s=visibility_timeout_s,
        ok_within_s=45,
        concurrency=total,
        HANDLER_MIN_S=3.0,
        HANDLER_MAX_S=5.0,
    )
    stats = summary(worker)
    complaints = [r for r in worker.records() if r.level in ("WARNING", "ERROR", "CRITICAL")]

    figures = Figures.of("T7 heartbeat/delete race", ledger, queues, url, sent=total)
    figures.extra["extensions"] = stats["heartbeats_sent"]
    figures.extra["extension_calls"] = fault_proxy.requests["ChangeMessageVisibilityBatch"]
    figures.extra["delete_calls"] = fault_proxy.requests["DeleteMessageBatch"]
    figures.extra["lease_lost"] = stats["lease_lost"]
    figures.extra["warnings"] = len(complaints)
    timeline = lease_timeline(fault_proxy, visibility_timeout_s)
    figures.extra["min_hb_slack_s"] = timeline.min_slack_s
    figures.extra["extended_after_delete"] = timeline.extended_after_delete
    print(figures.line())

    figures.assert_handled_once()
    assert stats["heartbeats_sent"] > 0, "no extension was due: the race was not run"
    assert stats["lease_lost"] == 0
    assert complaints == []
    assert "Task exception was never retrieved" not in worker.output
    # The heartbeat never extends a message it already settled (reliability.md F3).
    assert timeline.extended_after_delete == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_t19_idle_long_polls_do_not_starve_extensions(
    queues: FaultQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    # 32 handlers of 15 s on a 6 s visibility timeout, and 8 free slots: four pollers sit
    # in 20 s long polls on the empty queue, holding connections, while the heartbeat and
    # the acker need theirs.
    total, concurrency, visibility_timeout_s = 32, 40, 6
    url, worker, shutdown_s = _handle_all(
        queues,
        ledger,
        moto_endpoint,
        total,
        visibility_timeout_s=visibility_timeout_s,
        ok_within_s=60,
        concurrency=concurrency,
        wait_time_seconds=20,
        HANDLER_MIN_S=15,
    )
    stats = summary(worker)

    figures = Figures.of(
        "T19 pool starvation", ledger, queues, url, sent=total, t_shutdown_s=shutdown_s
    )
    figures.extra["extensions"] = stats["heartbeats_sent"]
    figures.extra["lease_lost"] = stats["lease_lost"]
    print(figures.line())

    figures.assert_handled_once()
    assert {e.receive_count for e in ledger.events("start")} == {1}  # never redelivered
    assert stats["heartbeats_sent"] >= 2 * total  # 15 s on 6 s: two extensions at least
    assert stats["lease_lost"] == 0
    assert shutdown_s <= slow(20 + 1 + 2)  # the long polls in flight are let finish
