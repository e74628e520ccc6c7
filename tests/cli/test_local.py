"""``aiosqsq run --local``: the app runs the SQS path on an embedded moto server, with no
AWS settings at all; every worker uses the one server; the server stops with the run."""

from __future__ import annotations

import re
import signal
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest

from aiosqsq.cli import ExitCode
from aiosqsq.settings import QueueSettings
from tests.cli.conftest import MotoQueues
from tests.cli.harness import APPS_DIR, CliProcess, Record, records, run_cli, wait_for_lines
from tests.cli.test_importer import MEMAPP

READY = (
    "SQS client ready: endpoint {endpoint}, region us-east-1 (QUEUE_AWS_REGION), credentials "
    "from QUEUE_AWS_*"
)
SERVER_LINE = re.compile(
    r"local SQS server \(moto\) at (http://127\.0\.0\.1:\d+), for this run only"
)


@pytest.fixture(autouse=True)
def _memapp() -> None:
    Path("memapp.py").write_text(MEMAPP)


def _endpoint(lines: list[Record]) -> str:
    (endpoint,) = [m[1] for r in lines if (m := SERVER_LINE.fullmatch(r.message))]
    return endpoint


def test_local_runs_the_app_on_sqs_and_stops_the_server_after(ledger: Path) -> None:
    env = {"LEDGER_PATH": str(ledger), "QUEUE_WAIT_TIME_SECONDS": "1"}
    with CliProcess("run", "ledger:app", "--local", "--app-dir", str(APPS_DIR), env=env) as run:
        run.wait_for(r"aiosqsq: consuming default with ledger\.record")
        endpoint = _endpoint(run.records())
        settings = QueueSettings(
            backend="sqs",
            sqs_queue_url="default",
            sqs_endpoint_url=endpoint,
            aws_region="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )
        MotoQueues(settings).send("default", ["1", "2", "3"])
        assert len(wait_for_lines(ledger, 3)) == 3
        run.send_signal(signal.SIGTERM)
        assert run.wait() == ExitCode.OK
    assert [(r.logger, r.message) for r in run.records() if r.logger != "aiosqsq"] == [
        ("aiosqsq.cli", f"local SQS server (moto) at {endpoint}, for this run only"),
        ("aiosqsq.backends.sqs", READY.format(endpoint=endpoint)),
        ("aiosqsq.cli", "local SQS: created queue default, dead letters to default-dlq after 5 "
         "receives"),
        ("aiosqsq.cli", f"aiosqsq {version('aiosqsq')} running ledger:app on the sqs backend"),
        ("aiosqsq.backends.sqs", READY.format(endpoint=endpoint)),
        ("aiosqsq.cli", "local SQS server stopped: its queues and messages are gone"),
    ]  # fmt: skip
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(endpoint, timeout=5)


def test_local_points_every_worker_at_the_one_server() -> None:
    result = run_cli("run", "memapp:app", "--local", "--workers", "2", "--burst")
    assert result.returncode == ExitCode.OK, result.stderr
    lines = records(result.stderr)
    endpoint = _endpoint(lines)
    supervisor = lines[0].pid
    ready = {r.pid for r in lines if r.message == READY.format(endpoint=endpoint)}
    assert len(ready - {supervisor}) == 2  # each worker, on the supervisor's server
    assert not [r for r in lines if "local SQS server (moto)" in r.message and r.pid != supervisor]
    assert lines[-1].message == "local SQS server stopped: its queues and messages are gone"


def test_local_without_moto_installed() -> None:
    stub = Path("no-moto", "moto")
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'moto'\")\n")
    result = run_cli("run", "memapp:app", "--local", env={"PYTHONPATH": str(stub.parent)})
    assert result.returncode == ExitCode.CONFIGURATION
    assert [r.message for r in records(result.stderr)] == [
        "configuration error: --local needs moto, which is not installed: "
        "pip install 'aiosqsq[local]'"
    ]


def test_local_refuses_an_app_with_settings_in_code() -> None:
    Path("explicit.py").write_text(
        "from aiosqsq import App, QueueSettings\n\n"
        "app = App(settings=QueueSettings(backend='memory'))\n\n\n"
        "@app.handler()\nasync def handle(payload: str) -> None:\n    pass\n"
    )
    result = run_cli("run", "explicit:app", "--local")
    assert result.returncode == ExitCode.CONFIGURATION
    lines = records(result.stderr)
    endpoint = _endpoint(lines)
    assert [r.message for r in lines if r.level == "ERROR"] == [
        f"configuration error: --local cannot point this app at its server ({endpoint}): its "
        f"settings were given in code (backend='memory', sqs_endpoint_url='{endpoint}'); build "
        "it with App(), which reads the QUEUE_* variables that --local sets"
    ]
    assert lines[-1].message == "local SQS server stopped: its queues and messages are gone"
