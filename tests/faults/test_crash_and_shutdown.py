"""The real ``aiosqsq run`` command, killed and stopped mid-work, checked against a ledger
(reliability.md 3.4: T1, T2, T3, T3b, T4, T5).

What each test may rely on: the session's moto server runs one request at a time, so a
duplicate it shows comes from a visibility timeout running out, not from a race in the
server (tests/moto_server.py). Times are asserted with at least twice the slack measured.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from aiosqsq.backends.base import MAX_RECEIVE_MESSAGES
from aiosqsq.cli import ExitCode
from tests.cli.harness import CliProcess
from tests.faults.ledger import Call, Figures, Ledger, wait_until
from tests.faults.proxy import FaultProxy
from tests.faults.queues import FaultQueues, seqs_of
from tests.faults.worker import plan, prepare, start_worker, stop_worker, summary, worker_env
from tests.helpers import slow

RELEASE_WITHIN_S = 2.0  # a message handed back is visible again this soon after the exit
STRANDED_S = 120  # the visibility timeout: a message a stop left in flight would show


def _released_in_time(queues: FaultQueues, url: str, unhandled: set[int]) -> float:
    """Wait until exactly the ``unhandled`` messages are visible and none is in flight;
    then check by receiving them that they are those. The seconds it took."""

    def settled() -> bool:
        depth = queues.depth(url)
        return depth.visible == len(unhandled) and depth.in_flight == 0

    took = wait_until(settled, lambda: f"depth {queues.depth(url)}", timeout_s=RELEASE_WITHIN_S)
    assert seqs_of(queues.probe(url)) == sorted(unhandled)
    return took


def _drain_rest(
    name: str,
    queues: FaultQueues,
    ledger: Ledger,
    url: str,
    env: dict[str, str],
    *,
    sent: int,
    shutdown_s: float,
) -> Figures:
    """A fresh worker in burst mode with an instant handler takes what is visible; it
    exits once the queue is empty, so a message still in flight stays behind. Then the
    run's figures."""
    worker = start_worker({**env, "HANDLER_MIN_S": "0", "QUEUE_CONCURRENCY": "16"}, "--burst")
    with worker:
        assert worker.wait(timeout_s=45) == ExitCode.OK, worker.output
    return Figures.of(name, ledger, queues, url, sent=sent, t_shutdown_s=shutdown_s)


def test_t1_baseline_handles_every_message_once(
    queues: FaultQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    total = 500
    url, env, sent_at = prepare(
        queues, ledger, moto_endpoint, total, visibility_timeout_s=30, concurrency=16
    )

    with start_worker(env, "--burst") as worker:
        assert worker.wait(timeout_s=45) == ExitCode.OK, worker.output
    drained_s = time.monotonic() - sent_at

    figures = Figures.of("T1 baseline", ledger, queues, url, sent=total, t_drain_s=drained_s)
    oks = ledger.events("ok")
    handling_s = max(e.t for e in oks) - min(e.t for e in ledger.events("start"))
    figures.extra["throughput_msg_s"] = total / max(handling_s, 1e-3)
    print(figures.line())
    figures.assert_handled_once()
    assert {e.receive_count for e in oks} == {1}
    assert summary(worker)["succeeded"] == total


def _sigkill_mid_batch(
    queues: FaultQueues, ledger: Ledger, moto_endpoint: str, *, total: int, kill_after_s: float
) -> None:
    """Kill a worker ``kill_after_s`` after its first handler started; a second one drains."""
    concurrency, visibility_timeout_s = 16, 3
    url, env, sent_at = prepare(
        queues,
        ledger,
        moto_endpoint,
        total,
        visibility_timeout_s=visibility_timeout_s,
        concurrency=concurrency,
        HANDLER_MIN_S=0.02,
        HANDLER_MAX_S=0.12,
    )

    with start_worker(env) as first:
        ledger.wait_for("start", 1, timeout_s=30)
        running, pollers = plan(first)
        held_at_most = running + MAX_RECEIVE_MESSAGES * pollers  # README: one batch per poller
        first_start = min(ledger.first_start().values())
        # Waiting on the clock is the scenario here: the kill lands mid-work.
        time.sleep(max(0.0, first_start + kill_after_s - time.time()))
        killed_at = time.time()
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
    handled_before_kill = len(ledger.ok_counts())
    assert 0 < handled_before_kill < total, "the kill did not land mid-work"

    with start_worker(env) as second:
        wait_until(
            lambda: len(ledger.ok_counts()) == total,
            lambda: f"{len(ledger.ok_counts())} of {total} handled",
            timeout_s=visibility_timeout_s + 40,
        )
        drained_s = time.monotonic() - sent_at
        after_kill_s = time.time() - killed_at
        code, shutdown_s = stop_worker(second)
    assert code == ExitCode.OK, second.output

    figures = Figures.of(
        f"T2 SIGKILL at {kill_after_s:g}s",
        ledger,
        queues,
        url,
        sent=total,
        t_drain_s=drained_s,
        t_shutdown_s=shutdown_s,
    )
    ok = ledger.ok_counts()
    duplicated = sorted(seq for seq, count in ok.items() if count > 1)
    first_start_of = ledger.first_start()
    figures.extra["handled_before_kill"] = handled_before_kill
    figures.extra["held_at_most"] = held_at_most
    figures.extra["drain_after_kill_s"] = after_kill_s
    figures.extra["duplicated_started_after_kill"] = sum(
        first_start_of[seq] >= killed_at for seq in duplicated
    )
    print(figures.line())

    assert figures.lost == 0
    assert figures.dup <= held_at_most  # README: "Duplicates are bounded by what was held"
    assert figures.extra["duplicated_started_after_kill"] == 0, duplicated
    assert max(ok.values()) <= 2
    assert (figures.dlq, figures.residual) == (0, 0)
    # The held messages come back after one visibility timeout; the rest drain at the
    # rate the first worker had (plan: VT + 1.5 x remaining / rate + 5 s), with 2x slack.
    rate = handled_before_kill / kill_after_s
    expected_s = visibility_timeout_s + 1.5 * (total - handled_before_kill) / rate + 5
    assert after_kill_s <= slow(2 * expected_s)


def test_t2_sigkill_mid_batch_loses_nothing_and_repeats_only_what_was_held(
    queues: FaultQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    _sigkill_mid_batch(queues, ledger, moto_endpoint, total=600, kill_after_s=1.0)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_after_s", [2.0, 3.5, 5.0])
def test_t2_sigkill_at_three_moments(
    queues: FaultQueues, ledger: Ledger, moto_endpoint: str, kill_after_s: float
) -> None:
    _sigkill_mid_batch(queues, ledger, moto_endpoint, total=2000, kill_after_s=kill_after_s)


def test_t3_sigterm_strands_nothing_for_the_visibility_timeout(
    queues: FaultQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    total, shutdown_timeout_s = 200, 5.0
    url, env, _ = prepare(
        queues,
        ledger,
        moto_endpoint,
        total,
        visibility_timeout_s=STRANDED_S,
        concurrency=4,
        wait_time_seconds=2,
        shutdown_timeout=shutdown_timeout_s,
        HANDLER_MIN_S=0.5,
    )

    with start_worker(env) as worker:
        ledger.wait_for("ok", 12, timeout_s=30)  # three rounds of four handled
        code, shutdown_s = stop_worker(worker)
    assert code == ExitCode.OK, worker.output
    ok = ledger.ok_counts()
    started = {e.seq for e in ledger.events("start")}
    assert started == set(ok), "a handler that started before the stop did not finish"
    release_s = _released_in_time(queues, url, set(range(total)) - set(ok))

    figures = _drain_rest("T3 SIGTERM", queues, ledger, url, env, sent=total, shutdown_s=shutdown_s)
    figures.extra["handled_before_stop"] = len(ok)
    figures.extra["release_latency_s"] = release_s
    print(figures.line())
    assert shutdown_s <= slow(shutdown_timeout_s + 1)
    assert (figures.dup, figures.lost, figures.dlq, figures.residual) == (0, 0, 0, 0)


def test_t3b_deletes_pending_at_sigterm_are_flushed(
    queues: FaultQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    # 16 handlers end 1.0-1.5 s after they start: the signal comes with the first of them,
    # so their deletes are pending or still to come when the stop begins.
    total, concurrency = 48, 16
    url, env, _ = prepare(
        queues,
        ledger,
        moto_endpoint,
        total,
        visibility_timeout_s=STRANDED_S,
        concurrency=concurrency,
        shutdown_timeout=5,
        HANDLER_MIN_S=1.0,
        HANDLER_MAX_S=1.5,
    )

    with start_worker(env) as worker:
        ledger.wait_for("ok", 1, timeout_s=30)
        code, shutdown_s = stop_worker(worker)
    assert code == ExitCode.OK, worker.output
    ok = ledger.ok_counts()
    after_signal = len(ok) - 1
    assert len(ok) >= concurrency  # every handler running at the signal finished
    # A delete that was not flushed leaves its message in flight for 120 s.
    release_s = _released_in_time(queues, url, set(range(total)) - set(ok))

    figures = _drain_rest(
        "T3b SIGTERM flushes deletes", queues, ledger, url, env, sent=total, shutdown_s=shutdown_s
    )
    figures.extra["ok_after_signal"] = after_signal
    figures.extra["release_latency_s"] = release_s
    print(figures.line())
    # No message handled before the exit came back: its delete was flushed.
    assert (figures.dup, figures.lost, figures.dlq, figures.residual) == (0, 0, 0, 0)
    assert shutdown_s <= slow(5 + 1)


# T4: 8 messages, 4 handlers of 60 s running when the stop comes.
T4_TOTAL, T4_CONCURRENCY = 8, 4
T4_FORCED_GRACE_S = 30.0  # the forced stop's grace: a second signal must cut it short


@dataclass
class _Cancelled:
    """What a stop that cancelled the running handlers left."""

    figures: Figures  # once a fresh worker drained the queue
    shutdown_s: float
    cancelled: list[Call]  # the stopped worker's ``fail`` lines
    completed: list[Call]  # its ``ok`` lines
    stats: dict[str, int]  # its summary counts
    timeout_warnings: list[str]  # its "shutdown timeout ... cancelled" warnings


def _cancel_running_handlers(
    name: str,
    queues: FaultQueues,
    ledger: Ledger,
    moto_endpoint: str,
    *,
    shutdown_timeout_s: float,
    stop: Callable[[CliProcess], tuple[int, float]],
) -> _Cancelled:
    """Stop a worker with ``stop`` while its handlers have long to run; check it exits 0
    (README: a graceful stop exits 0, also when running handlers had to be cancelled) and
    every message is visible again at once (not deleted); print the figures."""
    url, env, _ = prepare(
        queues,
        ledger,
        moto_endpoint,
        T4_TOTAL,
        visibility_timeout_s=STRANDED_S,
        concurrency=T4_CONCURRENCY,
        shutdown_timeout=shutdown_timeout_s,
        HANDLER_MIN_S=60,
    )

    with start_worker(env) as worker:
        ledger.wait_for("start", T4_CONCURRENCY, timeout_s=30)
        code, shutdown_s = stop(worker)
    assert code == ExitCode.OK, worker.output
    cancelled = ledger.events("fail")
    completed = ledger.events("ok")
    release_s = _released_in_time(queues, url, set(range(T4_TOTAL)))
    stats = summary(worker)
    timeout_warnings = [
        r.message
        for r in worker.records()
        if r.level == "WARNING" and "when the shutdown timeout" in r.message
    ]

    figures = _drain_rest(name, queues, ledger, url, env, sent=T4_TOTAL, shutdown_s=shutdown_s)
    figures.extra["cancelled"] = len(cancelled)
    figures.extra["released"] = stats["released"]
    figures.extra["release_latency_s"] = release_s
    print(figures.line())
    return _Cancelled(figures, shutdown_s, cancelled, completed, stats, timeout_warnings)


def test_t4_grace_expiry_cancels_and_hands_back_at_once(
    queues: FaultQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    shutdown_timeout_s = 2.0
    run = _cancel_running_handlers(
        "T4 grace expiry",
        queues,
        ledger,
        moto_endpoint,
        shutdown_timeout_s=shutdown_timeout_s,
        stop=stop_worker,
    )
    assert sorted(e.error or "" for e in run.cancelled) == ["CancelledError"] * T4_CONCURRENCY
    assert run.completed == []
    assert run.stats["released"] == T4_CONCURRENCY
    assert run.stats["succeeded"] == 0
    # one warning per cancelled message, naming it
    assert sorted(w.split(" on message ")[1].split()[0] for w in run.timeout_warnings) == sorted(
        c.mid for c in run.cancelled
    )
    assert run.shutdown_s <= slow(2 * (shutdown_timeout_s + 1))
    figures = run.figures
    assert (figures.dup, figures.lost, figures.dlq, figures.residual) == (0, 0, 0, 0)


def test_t5_sigterm_during_a_long_poll_strands_nothing(
    queues: FaultQueues, ledger: Ledger, fault_proxy: FaultProxy
) -> None:
    # One poller (concurrency 4), long polling 20 s on an empty queue when the signal
    # comes; the messages arrive while that poll is still in flight.
    total = 10
    url = queues.create_with(visibility_timeout_s=STRANDED_S)
    env = worker_env(
        fault_proxy.endpoint_url, url, ledger.path, concurrency=4, wait_time_seconds=20
    )

    with start_worker(env) as worker:
        wait_until(
            lambda: fault_proxy.requests["ReceiveMessage"] > 0,
            "no ReceiveMessage reached the proxy",
            timeout_s=10,
        )
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait_for(r"SIGTERM received: stopping gracefully", timeout_s=10)
        # Waiting on the clock is the scenario: the messages come 0.5 s after the signal.
        time.sleep(max(0.0, signalled + 0.5 - time.monotonic()))
        queues.send_seqs(url, range(total))
        code = worker.wait(timeout_s=25)
        shutdown_s = time.monotonic() - signalled
    assert code == ExitCode.OK, worker.output
    ok = ledger.ok_counts()
    release_s = _released_in_time(queues, url, set(range(total)) - set(ok))
    stats = summary(worker)
    handled_before_exit = len(ok)

    figures = _drain_rest(
        "T5 SIGTERM in a long poll", queues, ledger, url, env, sent=total, shutdown_s=shutdown_s
    )
    figures.extra["received_in_poll"] = stats["received"]
    figures.extra["released"] = stats["released"]
    figures.extra["release_latency_s"] = release_s
    figures.extra["handled_before_exit"] = handled_before_exit
    print(figures.line())
    # Each message was handled before the exit or was visible again (checked above).
    assert (figures.dup, figures.lost, figures.dlq, figures.residual) == (0, 0, 0, 0)
    assert stats["received"] > 0, "the poll in flight at the signal brought nothing"
    assert stats["released"] == stats["received"] - stats["succeeded"]
    assert shutdown_s <= slow(20 + 1)


def _sigterm_twice(worker: CliProcess) -> tuple[int, float]:
    """SIGTERM, and once the graceful stop began, SIGTERM again; the exit code and the
    seconds from the first signal to the exit."""
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait_for(r"SIGTERM received: stopping gracefully", timeout_s=10)
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(timeout_s=T4_FORCED_GRACE_S)
    return code, time.monotonic() - signalled


@pytest.mark.slow
def test_t4_a_second_sigterm_cancels_at_once_and_still_hands_back(
    queues: FaultQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    # As T4, with a long grace: the second signal ends the wait for the handlers.
    run = _cancel_running_handlers(
        "T4 forced stop",
        queues,
        ledger,
        moto_endpoint,
        shutdown_timeout_s=T4_FORCED_GRACE_S,
        stop=_sigterm_twice,
    )
    assert len(run.cancelled) == T4_CONCURRENCY
    assert run.stats["released"] == T4_CONCURRENCY
    assert run.shutdown_s <= min(slow(2 * 2), T4_FORCED_GRACE_S)  # not the 30 s grace
    figures = run.figures
    assert (figures.dup, figures.lost, figures.dlq, figures.residual) == (0, 0, 0, 0)


def test_t5b_no_receive_starts_after_the_stop_begins(
    queues: FaultQueues, ledger: Ledger, fault_proxy: FaultProxy
) -> None:
    # Two 3 s handlers run when the signal comes, leaving two of four slots free: the
    # stop waits for them, so pollers that went on receiving would poll (1 s long polls)
    # two or three more times before the exit.
    handler_s, total = 3.0, 2
    url = queues.create_with(visibility_timeout_s=STRANDED_S)
    queues.send_seqs(url, range(total))
    env = worker_env(
        fault_proxy.endpoint_url,
        url,
        ledger.path,
        concurrency=4,
        shutdown_timeout=10,
        HANDLER_MIN_S=handler_s,
    )

    def now() -> float:  # on the proxy's clock (Exchange.t)
        return time.monotonic() - fault_proxy.started

    with start_worker(env) as worker:
        ledger.wait_for("start", total, timeout_s=30)
        signalled_at = now()
        worker.send_signal(signal.SIGTERM)
        worker.wait_for(r"SIGTERM received: stopping gracefully", timeout_s=10)
        stopping_at = now()  # the worker has begun its stop by now
        code = worker.wait()
        exited_at = now()
    receives = fault_proxy.exchanges("ReceiveMessage")
    before = [e for e in receives if e.t < signalled_at]
    around = [e for e in receives if signalled_at <= e.t <= stopping_at]
    after = [e for e in receives if e.t > stopping_at]
    print(
        f"T5b receives_before_signal={len(before)} between_signal_and_stop_line={len(around)} "
        f"after_stop={len(after)} stop_to_exit={exited_at - stopping_at:.1f}s "
        f"handled={len(ledger.ok_counts())}"
    )
    assert code == ExitCode.OK, worker.output
    assert before, "the pollers never polled before the stop"
    assert [e.t for e in after] == []
    assert sorted(ledger.ok_counts()) == list(range(total))  # the running handlers finished
    # The stop lasted at least one long poll more (the handlers' rest): long enough for a
    # poller that ignored it to show.
    assert exited_at - stopping_at >= 1.0
