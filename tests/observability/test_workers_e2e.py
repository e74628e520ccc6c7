"""End to end: ``aiosqsq run --workers 2 --http-port`` on moto serves the sum of its
workers' metrics, checked against the ledger the handlers write; a worker killed and
restarted neither loses nor double-counts the totals; /livez and /readyz answer for all."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiosqsq.exit_codes import ExitCode
from tests.cli.conftest import MotoQueues
from tests.cli.harness import APPS_DIR, CliProcess, wait_for_lines
from tests.helpers import slow

OWN_APPS = Path(__file__).parent / "apps"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=slow(5)) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""  # not listening yet


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(port: int) -> Samples:
    status, text = get(port, "/metrics")
    assert status == 200
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(found: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in found.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


def wait_until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + slow(timeout_s)
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_two_workers_metrics_and_probes_match_the_ledger(
    ledger: Path, sqs_env: dict[str, str], moto_queues: MotoQueues
) -> None:
    url = moto_queues.create()
    name = url.rsplit("/", 1)[-1]
    port = free_port()
    env = {**sqs_env, "QUEUE_SQS_QUEUE_URL": url, "LEDGER_PATH": str(ledger)}
    moto_queues.send(url, [f"a-{n}" for n in range(30)])
    with CliProcess(
        "run", "ledger:app", "--workers", "2", "--app-dir", str(APPS_DIR),
        "--http-port", str(port), env=env,
    ) as run:  # fmt: skip
        run.wait_for(r"serving /metrics, /livez and /readyz of all workers on http://127\.0\.0\.1")
        wait_for_lines(ledger, 30)
        wait_until(lambda: get(port, "/readyz")[0] == 200)
        assert get(port, "/livez") == (200, "ok\n")

        def succeeded() -> float:
            return total(samples(port), "aiosqsq_messages_processed_total", queue=name,
                         outcome="succeeded")  # fmt: skip

        wait_until(lambda: succeeded() == 30)
        pids = {json.loads(line)["pid"] for line in ledger.read_text().splitlines()}
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)  # its counters must stay in the sum
        run.wait_for(rf"worker \d \(pid {victim}\) was killed by SIGKILL")
        run.wait_for(r"worker \d started", count=3)
        moto_queues.send(url, [f"b-{n}" for n in range(20)])
        wait_for_lines(ledger, 50)
        wait_until(lambda: succeeded() == 50)
        found = samples(port)
        handled = len(ledger.read_text().splitlines())
        assert handled == 50
        assert total(found, "aiosqsq_messages_received_total", queue=name) == 50
        assert total(found, "aiosqsq_handler_duration_seconds_count", queue=name) == 50
        assert total(found, "aiosqsq_sqs_requests_total", operation="ReceiveMessage") > 0
        wait_until(lambda: total(samples(port), "aiosqsq_messages_in_flight", queue=name) == 0)
        wait_until(lambda: get(port, "/livez")[0] == 200)
        run.send_signal(signal.SIGTERM)
        assert run.wait() == ExitCode.OK


@pytest.mark.slow  # 7-14 s: the slow tier (scripts/test -m slow)
def test_a_worker_blocking_its_loop_turns_the_supervisors_livez_red(
    sqs_env: dict[str, str], moto_queues: MotoQueues
) -> None:
    url = moto_queues.create()
    port = free_port()
    env = {
        **sqs_env,
        "QUEUE_SQS_QUEUE_URL": url,
        "QUEUE_LIVENESS_TIMEOUT": str(slow(2)),
        "BLOCK_S": str(slow(2) * 4),
    }
    with CliProcess(
        "run", "blocking_app:app", "--workers", "2", "--app-dir", str(OWN_APPS),
        "--http-port", str(port), env=env,
    ) as run:  # fmt: skip
        wait_until(lambda: get(port, "/readyz")[0] == 200)
        assert get(port, "/livez") == (200, "ok\n")
        moto_queues.send(url, ["block"])
        reasons: list[str] = []

        def red() -> bool:
            status, body = get(port, "/livez")
            reasons.append(body)
            return status == 503

        wait_until(red)
        assert re.fullmatch(r"worker pid \d+ has not reported for \d+\.\d s\n", reasons[-1])
        wait_until(lambda: get(port, "/livez")[0] == 200)  # the loop runs again
        run.send_signal(signal.SIGTERM)
        assert run.wait() == ExitCode.OK
