"""Lost access against the real ``aiosqsq run`` command (README, "Network faults"): a
missing queue, denied access or expired credentials, at start or on any later call (a
receive, a delete, a visibility change), stop the worker with exit code 5 and one ERROR
line naming the queue and the call.

The refusals are forged by the fault proxy in front of moto (``AccessDenied`` and
``ExpiredToken`` as SQS sends them over its JSON protocol); the deleted queue is really
deleted on moto. Every test reads the worker's whole output: exactly one ERROR line, the
operator's ``lost access to the queue: ...``.
"""

from __future__ import annotations

import time

import pytest

from aiosqsq.cli import ExitCode
from tests.cli.harness import CliProcess, run_cli
from tests.faults.ledger import Ledger
from tests.faults.network_run import network_env, send
from tests.faults.proxy import ERRORS, FaultProxy
from tests.faults.queues import FaultQueues
from tests.faults.worker import LIFECYCLE, ROOT, lost_access_line, start_worker
from tests.helpers import slow

EXIT_WITHIN_S = 10.0  # QUEUE_SHUTDOWN_TIMEOUT=5 (network_env) and a flush, 2x slack


def _exit_after(worker: CliProcess, since: float) -> tuple[int, float]:
    code = worker.wait(timeout_s=EXIT_WITHIN_S)
    return code, time.monotonic() - since


# --- at start ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "says"),
    [("AccessDenied", "was denied (AccessDenied)"), ("ExpiredToken", "invalid or expired")],
)
def test_refused_at_start_exits_5_with_one_line_naming_queue_and_call(
    fault_proxy: FaultProxy, queues: FaultQueues, ledger: Ledger, error: str, says: str
) -> None:
    url = send(queues, 5)
    rule = fault_proxy.add("*", ERRORS[error])  # every call, the first one included
    env = network_env(fault_proxy.endpoint_url, url, ledger)
    result = run_cli("run", LIFECYCLE.target, "--app-dir", str(ROOT), env=env)
    # the start's check of the queue
    line = lost_access_line(result.stderr, url, "GetQueueAttributes")
    print(f"access at start ({error}): exit={result.returncode} forged={rule.fired} {line!r}")
    assert result.returncode == ExitCode.QUEUE_ACCESS_LOST, result.stderr
    assert says in line
    assert ledger.events() == []
    assert queues.total(url) == 5  # nothing received


def test_a_missing_queue_at_start_exits_5_with_one_line_naming_queue_and_call(
    fault_proxy: FaultProxy, queues: FaultQueues, ledger: Ledger
) -> None:
    url = send(queues, 1)
    queues.delete(url)
    env = network_env(fault_proxy.endpoint_url, url, ledger)
    result = run_cli("run", LIFECYCLE.target, "--app-dir", str(ROOT), env=env)
    print(f"missing queue at start: exit={result.returncode} {result.stderr[-300:]!r}")
    assert result.returncode == ExitCode.QUEUE_ACCESS_LOST, result.stderr
    line = lost_access_line(result.stderr, url, "GetQueueAttributes")
    assert "does not exist" in line


# --- mid-run -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "knobs"),
    [
        # the pollers' next receive is refused
        ("ReceiveMessage", {}),
        # handlers return; their delete is refused
        ("DeleteMessageBatch", {"HANDLER_MIN_S": "0.2"}),
        # 3 s handlers on a 2 s visibility timeout: the heartbeat's extension is refused
        ("ChangeMessageVisibilityBatch", {"HANDLER_MIN_S": "3", "QUEUE_VISIBILITY_TIMEOUT": "2"}),
    ],
)
def test_access_denied_mid_run_exits_5_with_one_line_naming_queue_and_call(
    fault_proxy: FaultProxy,
    queues: FaultQueues,
    ledger: Ledger,
    action: str,
    knobs: dict[str, str],
) -> None:
    url = queues.create_with(visibility_timeout_s=30)
    env = network_env(fault_proxy.endpoint_url, url, ledger, QUEUE_CONCURRENCY="4", **knobs)
    with start_worker(env) as worker:
        rule = fault_proxy.add(action, ERRORS["AccessDenied"])
        denied_from = time.monotonic()
        queues.send_seqs(url, range(4))
        code, t_exit = _exit_after(worker, denied_from)
        output = worker.output
    line = lost_access_line(output, url, action)
    print(
        f"AccessDenied on {action}: exit={code} t_exit={t_exit:.1f}s forged={rule.fired} "
        f"handled={len(ledger.ok_counts())} {line!r}"
    )
    assert code == ExitCode.QUEUE_ACCESS_LOST, output
    assert rule.fired >= 1
    assert t_exit <= slow(EXIT_WITHIN_S)


def test_the_queue_deleted_mid_run_exits_5_with_one_line_naming_queue_and_call(
    fault_proxy: FaultProxy, queues: FaultQueues, ledger: Ledger
) -> None:
    url = send(queues, 20)
    env = network_env(fault_proxy.endpoint_url, url, ledger, QUEUE_CONCURRENCY="4")
    with start_worker(env) as worker:
        ledger.wait_for("ok", 20, timeout_s=30)
        queues.delete(url)  # straight to moto, while the pollers long-poll it
        deleted_at = time.monotonic()
        code, t_exit = _exit_after(worker, deleted_at)
        output = worker.output
    line = lost_access_line(output, url, "ReceiveMessage")
    print(f"queue deleted mid-run: exit={code} t_exit={t_exit:.1f}s {line!r}")
    assert code == ExitCode.QUEUE_ACCESS_LOST, output
    assert "does not exist" in line
    assert t_exit <= slow(EXIT_WITHIN_S)
