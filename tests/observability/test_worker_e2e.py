"""End to end: one ``aiosqsq run --http-port --log-format json`` worker on moto: its
/metrics count what it handled, and every log line about a message, the handler's own
and the engine's, carries the message's id, queue and receive count as JSON fields."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from typing import Any

from aiosqsq.exit_codes import ExitCode
from tests.cli.conftest import MotoQueues
from tests.cli.harness import CliProcess, run_cli
from tests.observability.test_workers_e2e import free_port, get, samples, total, wait_until

APPS = Path(__file__).parent / "apps"


def test_one_worker_serves_metrics_and_logs_message_fields(
    sqs_env: dict[str, str], moto_queues: MotoQueues
) -> None:
    url = moto_queues.create()
    name = url.rsplit("/", 1)[-1]
    port = free_port()
    env = {**sqs_env, "QUEUE_SQS_QUEUE_URL": url, "QUEUE_RETRY_BASE_DELAY": "60"}
    moto_queues.send(url, ["a", "b", "bad"])
    with CliProcess(
        "run", "logging_app:app", "--app-dir", str(APPS), "--http-port", str(port),
        "--log-format", "json", env=env,
    ) as run:  # fmt: skip
        run.wait_for(r"serving /metrics, /livez and /readyz on http://127\.0\.0\.1")
        run.wait_for(r"handler .* failed on message")
        wait_until(
            lambda: total(samples(port), "aiosqsq_messages_processed_total", queue=name) == 3
        )
        found = samples(port)
        assert total(found, "aiosqsq_messages_processed_total", outcome="succeeded") == 2
        assert total(found, "aiosqsq_messages_processed_total", outcome="error") == 1
        assert get(port, "/readyz") == (200, "ok\n")
        run.send_signal(signal.SIGTERM)
        assert run.wait() == ExitCode.OK
    lines: list[dict[str, Any]] = [
        json.loads(line) for line in run.output.splitlines() if line.startswith("{")
    ]
    handling = [line for line in lines if line["message"].startswith("handling ")]
    assert len(handling) == 3
    for line in handling:
        assert line["queue"] == name
        assert line["receive_count"] == 1
        assert line["message_id"]
    (failed,) = [line for line in lines if "failed on message" in line["message"]]
    (bad,) = [line for line in handling if line["message"] == "handling bad"]
    assert failed["message_id"] == bad["message_id"]
    assert failed["message"].endswith("ValueError: a bad order")
    started = [line for line in lines if line["message"].startswith("consuming ")]
    assert started
    assert all("message_id" not in line for line in started)


def test_a_port_in_use_is_a_configuration_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", "logging_app:app", "--app-dir", str(APPS), "--http-port", str(port))
    assert result.returncode == ExitCode.CONFIGURATION
    assert (
        f"configuration error: QUEUE_HTTP_PORT={port}: cannot listen on 127.0.0.1:{port} "
        "(Address already in use): choose a free port, or 0 to serve nothing"
    ) in result.stderr
