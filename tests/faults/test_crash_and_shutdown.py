"""The real ``aiosqsq run`` command, killed and stopped mid-work, checked against a ledger
(reliability.md 3.4: T1, T2, T3, T3b, T4, T5).

What each test may rely on: the session's moto server runs one request at a time, so a
duplicate it shows comes from a visibility timeout running out, not from a race in the
server (tests/moto_server.py). Times are asserted with at least twice the slack measured.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiosqsq.cli import ExitCode
from aiosqsq.settings import QueueSettings
from tests.cli.harness import CliProcess
from tests.faults.ledger import (
    Figures,
    Ledger,
    LedgerQueues,
    seqs_of,
    start_worker,
    summary,
    wait_until,
    worker_env,
)
from tests.faults.proxy import FaultProxy

RELEASE_WITHIN_S = 2.0  # a message handed back is visible again this soon after the exit


@pytest.fixture
def queues(sqs_settings: QueueSettings) -> Iterator[LedgerQueues]:
    made = LedgerQueues(sqs_settings)
    yield made
    made.delete_all()


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as running:  # served from a thread of its own
        yield running


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.jsonl")


def _stop(worker: CliProcess) -> tuple[int, float]:
    """SIGTERM the worker; its exit code and the seconds from the signal to its exit."""
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait()
    return code, time.monotonic() - signalled


def _released_in_time(queues: LedgerQueues, url: str, unhandled: set[int]) -> float:
    """Wait until exactly the ``unhandled`` messages are visible and none is in flight;
    then check by receiving them that they are those. The seconds it took."""

    def settled() -> bool:
        depth = queues.depth(url)
        return depth.visible == len(unhandled) and depth.in_flight == 0

    took = wait_until(settled, RELEASE_WITHIN_S, lambda: f"depth {queues.depth(url)}")
    assert seqs_of(queues.probe(url)) == sorted(unhandled)
    return took


def _drain_rest(env: dict[str, str]) -> None:
    """A fresh worker in burst mode with an instant handler takes what is visible; it
    exits once the queue is empty, so a message still in flight stays behind."""
    worker = start_worker({**env, "HANDLER_MIN_S": "0", "QUEUE_CONCURRENCY": "16"}, "--burst")
    with worker:
        assert worker.wait(timeout_s=45) == ExitCode.OK, worker.output


def test_t1_baseline_handles_every_message_once(
    queues: LedgerQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    total = 500
    url = queues.create_with(visibility_timeout_s=30)
    sent_at = time.monotonic()
    queues.send_seqs(url, range(total))
    env = worker_env(moto_endpoint, url, ledger.path, concurrency=16)

    with start_worker(env, "--burst") as worker:
        assert worker.wait(timeout_s=45) == ExitCode.OK, worker.output
    drained_s = time.monotonic() - sent_at

    depth = queues.depth(url)
    figures = Figures.of(
        "T1 baseline",
        ledger,
        sent=total,
        dlq=queues.dlq_depth(url),
        residual=depth.visible + depth.in_flight,
        t_drain_s=drained_s,
    )
    oks = ledger.events("ok")
    handling_s = max(e.t for e in oks) - min(e.t for e in ledger.events("start"))
    figures.extra["throughput_msg_s"] = total / max(handling_s, 1e-3)
    print(figures.line())
    assert (figures.ok_unique, figures.dup, figures.lost) == (total, 0, 0)
    assert (figures.dlq, figures.residual) == (0, 0)
    assert {e.receive_count for e in oks} == {1}
    assert summary(worker)["succeeded"] == total


def _sigkill_mid_batch(
    queues: LedgerQueues, ledger: Ledger, moto_endpoint: str, *, total: int, kill_after_s: float
) -> None:
    """Kill a worker ``kill_after_s`` after its first handler started; a second one drains."""
    concurrency, visibility_timeout_s = 16, 3
    pollers = math.ceil(concurrency / 10)  # QUEUE_POLLERS' default: one per 10 slots
    url = queues.create_with(visibility_timeout_s=visibility_timeout_s)
    sent_at = time.monotonic()
    queues.send_seqs(url, range(total))
    env = worker_env(
        moto_endpoint,
        url,
        ledger.path,
        concurrency=concurrency,
        HANDLER_MIN_S=0.02,
        HANDLER_MAX_S=0.12,
    )

    with start_worker(env) as first:
        ledger.wait_for("start", 1, timeout_s=30)
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
            visibility_timeout_s + 40,
            lambda: f"{len(ledger.ok_counts())} of {total} handled",
        )
        drained_s = time.monotonic() - sent_at
        after_kill_s = time.time() - killed_at
        code, shutdown_s = _stop(second)
    assert code == ExitCode.OK, second.output

    depth = queues.depth(url)
    figures = Figures.of(
        f"T2 SIGKILL at {kill_after_s:g}s",
        ledger,
        sent=total,
        dlq=queues.dlq_depth(url),
        residual=depth.visible + depth.in_flight,
        t_drain_s=drained_s,
        t_shutdown_s=shutdown_s,
    )
    ok = ledger.ok_counts()
    duplicated = sorted(seq for seq, count in ok.items() if count > 1)
    first_start_of = ledger.first_start()
    figures.extra["handled_before_kill"] = handled_before_kill
    figures.extra["drain_after_kill_s"] = after_kill_s
    figures.extra["duplicated_started_after_kill"] = sum(
        first_start_of[seq] >= killed_at for seq in duplicated
    )
    print(figures.line())

    assert figures.lost == 0
    assert figures.dup <= concurrency + 10 * pollers + 10
    assert figures.extra["duplicated_started_after_kill"] == 0, duplicated
    assert max(ok.values()) <= 2
    assert (figures.dlq, figures.residual) == (0, 0)
    # The held messages come back after one visibility timeout; the rest drain at the
    # rate the first worker had (plan: VT + 1.5 x remaining / rate + 5 s), with 2x slack.
    rate = handled_before_kill / kill_after_s
    expected_s = visibility_timeout_s + 1.5 * (total - handled_before_kill) / rate + 5
    assert after_kill_s <= 2 * expected_s


def test_t2_sigkill_mid_batch_loses_nothing_and_repeats_only_what_was_held(
    queues: LedgerQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    _sigkill_mid_batch(queues, ledger, moto_endpoint, total=600, kill_after_s=1.0)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_after_s", [2.0, 3.5, 5.0])
def test_t2_sigkill_at_three_moments(
    queues: LedgerQueues, ledger: Ledger, moto_endpoint: str, kill_after_s: float
) -> None:
    _sigkill_mid_batch(queues, ledger, moto_endpoint, total=2000, kill_after_s=kill_after_s)


def test_t3_sigterm_strands_nothing_for_the_visibility_timeout(
    queues: LedgerQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    # A visibility timeout of 120 s: a message left in flight by the stop would show.
    total, shutdown_timeout_s = 200, 5.0
    url = queues.create_with(visibility_timeout_s=120)
    queues.send_seqs(url, range(total))
    env = worker_env(
        moto_endpoint,
        url,
        ledger.path,
        concurrency=4,
        wait_time_seconds=2,
        shutdown_timeout=shutdown_timeout_s,
        HANDLER_MIN_S=0.5,
    )

    with start_worker(env) as worker:
        ledger.wait_for("ok", 12, timeout_s=30)  # three rounds of four handled
        code, shutdown_s = _stop(worker)
    assert code == ExitCode.OK, worker.output
    ok = ledger.ok_counts()
    started = {e.seq for e in ledger.events("start")}
    assert started == set(ok), "a handler that started before the stop did not finish"
    release_s = _released_in_time(queues, url, set(range(total)) - set(ok))

    _drain_rest(env)
    depth = queues.depth(url)
    figures = Figures.of(
        "T3 SIGTERM",
        ledger,
        sent=total,
        dlq=queues.dlq_depth(url),
        residual=depth.visible + depth.in_flight,
        t_shutdown_s=shutdown_s,
    )
    figures.extra["handled_before_stop"] = len(ok)
    figures.extra["release_latency_s"] = release_s
    print(figures.line())
    assert shutdown_s <= shutdown_timeout_s + 1
    assert (figures.dup, figures.lost, figures.dlq, figures.residual) == (0, 0, 0, 0)


def test_t3b_deletes_pending_at_sigterm_are_flushed(
    queues: LedgerQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    # 16 handlers end 1.0-1.5 s after they start: the signal comes with the first of them,
    # so their deletes are pending or still to come when the stop begins.
    total, concurrency = 48, 16
    url = queues.create_with(visibility_timeout_s=120)
    queues.send_seqs(url, range(total))
    env = worker_env(
        moto_endpoint,
        url,
        ledger.path,
        concurrency=concurrency,
        shutdown_timeout=5,
        HANDLER_MIN_S=1.0,
        HANDLER_MAX_S=1.5,
    )

    with start_worker(env) as worker:
        ledger.wait_for("ok", 1, timeout_s=30)
        code, shutdown_s = _stop(worker)
    assert code == ExitCode.OK, worker.output
    ok = ledger.ok_counts()
    after_signal = len(ok) - 1
    assert len(ok) >= concurrency  # every handler running at the signal finished
    # A delete that was not flushed leaves its message in flight for 120 s.
    release_s = _released_in_time(queues, url, set(range(total)) - set(ok))

    _drain_rest(env)
    depth = queues.depth(url)
    figures = Figures.of(
        "T3b SIGTERM flushes deletes",
        ledger,
        sent=total,
        dlq=queues.dlq_depth(url),
        residual=depth.visible + depth.in_flight,
        t_shutdown_s=shutdown_s,
    )
    figures.extra["ok_after_signal"] = after_signal
    figures.extra["release_latency_s"] = release_s
    print(figures.line())
    # No message handled before the exit came back: its delete was flushed.
    assert (figures.dup, figures.lost, figures.dlq, figures.residual) == (0, 0, 0, 0)
    assert shutdown_s <= 5 + 1


def test_t4_grace_expiry_cancels_and_hands_back_at_once(
    queues: LedgerQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    total, concurrency, shutdown_timeout_s = 8, 4, 2.0
    url = queues.create_with(visibility_timeout_s=120)
    queues.send_seqs(url, range(total))
    env = worker_env(
        moto_endpoint,
        url,
        ledger.path,
        concurrency=concurrency,
        shutdown_timeout=shutdown_timeout_s,
        HANDLER_MIN_S=60,
    )

    with start_worker(env) as worker:
        ledger.wait_for("start", concurrency, timeout_s=30)
        code, shutdown_s = _stop(worker)
    # README: a graceful stop exits 0, also when running handlers had to be cancelled.
    assert code == ExitCode.OK, worker.output
    cancelled = ledger.events("fail")
    assert sorted(e.error or "" for e in cancelled) == ["CancelledError"] * concurrency
    assert ledger.events("ok") == []
    # Not deleted, and visible again at once: every message is back.
    release_s = _released_in_time(queues, url, set(range(total)))
    stats = summary(worker)

    _drain_rest(env)
    depth = queues.depth(url)
    figures = Figures.of(
        "T4 grace expiry",
        ledger,
        sent=total,
        dlq=queues.dlq_depth(url),
        residual=depth.visible + depth.in_flight,
        t_shutdown_s=shutdown_s,
    )
    figures.extra["cancelled"] = len(cancelled)
    figures.extra["released"] = stats["released"]
    figures.extra["release_latency_s"] = release_s
    print(figures.line())
    assert stats["released"] == concurrency
    assert stats["succeeded"] == 0
    assert shutdown_s <= 2 * (shutdown_timeout_s + 1)
    assert (figures.dup, figures.lost, figures.dlq, figures.residual) == (0, 0, 0, 0)


def test_t5_sigterm_during_a_long_poll_strands_nothing(
    queues: LedgerQueues, ledger: Ledger, proxy: FaultProxy
) -> None:
    # One poller (concurrency 4), long polling 20 s on an empty queue when the signal
    # comes; the messages arrive while that poll is still in flight.
    total = 10
    url = queues.create_with(visibility_timeout_s=120)
    env = worker_env(proxy.endpoint_url, url, ledger.path, concurrency=4, wait_time_seconds=20)

    with start_worker(env) as worker:
        wait_until(
            lambda: proxy.requests["ReceiveMessage"] > 0,
            10,
            lambda: "no ReceiveMessage reached the proxy",
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

    _drain_rest(env)
    depth = queues.depth(url)
    figures = Figures.of(
        "T5 SIGTERM in a long poll",
        ledger,
        sent=total,
        dlq=queues.dlq_depth(url),
        residual=depth.visible + depth.in_flight,
        t_shutdown_s=shutdown_s,
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
    assert shutdown_s <= 20 + 1


@pytest.mark.slow
def test_t4_a_second_sigterm_cancels_at_once_and_still_hands_back(
    queues: LedgerQueues, ledger: Ledger, moto_endpoint: str
) -> None:
    # As T4, with a long grace: the second signal ends the wait for the handlers.
    total, concurrency, shutdown_timeout_s = 8, 4, 30.0
    url = queues.create_with(visibility_timeout_s=120)
    queues.send_seqs(url, range(total))
    env = worker_env(
        moto_endpoint,
        url,
        ledger.path,
        concurrency=concurrency,
        shutdown_timeout=shutdown_timeout_s,
        HANDLER_MIN_S=60,
    )

    with start_worker(env) as worker:
        ledger.wait_for("start", concurrency, timeout_s=30)
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait_for(r"SIGTERM received: stopping gracefully", timeout_s=10)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout_s=shutdown_timeout_s)
        shutdown_s = time.monotonic() - signalled
    assert code == ExitCode.OK, worker.output
    cancelled = ledger.events("fail")
    release_s = _released_in_time(queues, url, set(range(total)))
    stats = summary(worker)

    _drain_rest(env)
    depth = queues.depth(url)
    figures = Figures.of(
        "T4 forced stop",
        ledger,
        sent=total,
        dlq=queues.dlq_depth(url),
        residual=depth.visible + depth.in_flight,
        t_shutdown_s=shutdown_s,
    )
    figures.extra["cancelled"] = len(cancelled)
    figures.extra["released"] = stats["released"]
    figures.extra["release_latency_s"] = release_s
    print(figures.line())
    assert len(cancelled) == concurrency
    assert stats["released"] == concurrency
    assert shutdown_s <= 2 * 2  # not the 30 s grace
    assert (figures.dup, figures.lost, figures.dlq, figures.residual) == (0, 0, 0, 0)
