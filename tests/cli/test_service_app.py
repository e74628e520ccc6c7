"""The application surface through the real command on moto: a lifespan per worker with
``--workers 2``, a batch handler with partial failures, SNS and S3 envelopes; and a
failing startup's exit code."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from aiosqsq.cli import ExitCode
from tests.cli.conftest import MotoQueues
from tests.cli.harness import APPS_DIR, CliProcess, run_cli, wait_for_lines

SAMPLES = Path(__file__).parents[1] / "data" / "envelopes"


def _lines(ledger: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ledger.read_text().splitlines()]


def test_service_app_with_two_workers(
    ledger: Path, sqs_env: dict[str, str], moto_queues: MotoQueues
) -> None:
    batches, sns, s3 = moto_queues.create(), moto_queues.create(), moto_queues.create()
    bodies = [f"ok-{i}" for i in range(27)] + ["fail-1", "fail-2", "fail-3"]
    env = {
        **sqs_env,
        "QUEUE_SQS_QUEUE_URL": batches,
        "SNS_QUEUE": sns,
        "S3_QUEUE": s3,
        "LEDGER_PATH": str(ledger),
        "QUEUE_RETRY_BASE_DELAY": "0",
    }
    moto_queues.send(batches, bodies)
    moto_queues.send(sns, [(SAMPLES / "sns_notification.json").read_text(), '{"raw": 1}'])
    moto_queues.send(s3, [(SAMPLES / "s3_put.json").read_text(),
                          (SAMPLES / "s3_test_event.json").read_text()])  # fmt: skip
    with CliProcess("run", "service:app", "--workers", "2", "--app-dir", str(APPS_DIR),
                    env=env) as run:  # fmt: skip
        wanted = {"item": 33, "sns": 2, "s3": 1}  # 30 items and 3 retries
        for _ in range(600):  # bounded: until every event wanted is in the ledger
            wait_for_lines(ledger, 1)
            lines = _lines(ledger)
            events = [line["event"] for line in lines]
            if all(events.count(event) >= n for event, n in wanted.items()):
                break
            wait_for_lines(ledger, len(lines) + 1, timeout_s=30)
        run.send_signal(signal.SIGTERM)
        assert run.wait() == ExitCode.OK
    lines = _lines(ledger)
    startups = {line["pid"] for line in lines if line["event"] == "startup"}
    shutdowns = {line["pid"] for line in lines if line["event"] == "shutdown"}
    assert len(startups) == 2
    assert shutdowns == startups
    items = [(line["body"], line["receive_count"]) for line in lines if line["event"] == "item"]
    assert sorted({body for body, _ in items}) == sorted(bodies)
    assert sorted(b for b, count in items if count == 2) == ["fail-1", "fail-2", "fail-3"]
    sns_lines = [line for line in lines if line["event"] == "sns"]
    assert sorted(str(line["topic"]) for line in sns_lines) == [
        "None",
        "arn:aws:sns:us-west-2:123456789012:MyTopic",
    ]
    s3_lines = [line for line in lines if line["event"] == "s3"]
    assert len(s3_lines) == 1
    for url in (batches, sns, s3):
        depth = moto_queues.depth(url)
        assert (depth.visible, depth.in_flight) == (0, 0)


def test_a_failing_startup_exits_7_with_one_error_line(sqs_env: dict[str, str]) -> None:
    Path("broken.py").write_text(
        "from contextlib import asynccontextmanager\n"
        "from aiosqsq import App\n\n"
        "@asynccontextmanager\n"
        "async def lifespan(app):\n"
        "    raise ConnectionRefusedError('database down')\n"
        "    yield\n\n"
        "app = App(lifespan=lifespan)\n\n"
        "@app.handler\n"
        "async def handle(body: str) -> None: ...\n"
    )
    result = run_cli("run", "broken:app", env={"QUEUE_SHUTDOWN_TIMEOUT": "1"})
    assert result.returncode == ExitCode.STARTUP_FAILED
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert errors[0].endswith("application startup failed: ConnectionRefusedError: database down")
