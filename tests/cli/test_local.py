"""``aiosqsq run --local``: the app runs the SQS path on an embedded moto server, with no
AWS settings at all; every worker uses the one server; the server stops with the run."""

from __future__ import annotations

import http.client
import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest

from aiosqsq.cli import ExitCode
from aiosqsq.settings import QueueSettings
from tests.cli.conftest import MotoQueues
from tests.cli.harness import (
    APPS_DIR,
    CliProcess,
    Record,
    cli_env,
    records,
    run_cli,
    wait_for_lines,
)
from tests.cli.test_importer import MEMAPP

READY = (
    "SQS client ready: endpoint {endpoint}, region us-east-1 (QUEUE_AWS_REGION), lean "
    "transport, credentials from QUEUE_AWS_*"
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


CREDENTIALS_APP = """\
import json

from aiosqsq import App

app = App()
secrets = [app.settings.aws_access_key_id, app.settings.aws_secret_access_key,
           app.settings.aws_session_token]
with open("credentials.jsonl", "a") as seen:
    seen.write(json.dumps([s and s.get_secret_value() for s in secrets]) + "\\n")


@app.handler()
async def handle(payload: str) -> None:
    pass
"""
REAL = ("AKIAREALKEYID0000000", "RealSecretKey/0123456789+abcdefGHIJKLMNO", "RealSessionToken0123")


@pytest.mark.parametrize("where", [".env", "environment"])
def test_local_never_hands_the_developers_credentials_to_the_emulator(where: str) -> None:
    Path("creds.py").write_text(CREDENTIALS_APP)
    names = ("QUEUE_AWS_ACCESS_KEY_ID", "QUEUE_AWS_SECRET_ACCESS_KEY", "QUEUE_AWS_SESSION_TOKEN")
    real = dict(zip(names, REAL, strict=True))
    env: dict[str, str] = {}
    if where == ".env":
        Path(".env").write_text("".join(f"{k}={v}\n" for k, v in real.items()))
    else:
        env = real
    result = run_cli("run", "creds:app", "--local", "--workers", "2", "--burst", env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    seen = [json.loads(line) for line in Path("credentials.jsonl").read_text().splitlines()]
    assert seen == [["aiosqsq-local", "aiosqsq-local", None]] * 3  # the supervisor, 2 workers
    assert not [secret for secret in REAL if secret in result.stderr]


def _request(
    endpoint: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    host, port = endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", path, body=b"{}", headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_local_server_answers_sqs_calls_to_its_own_address_only() -> None:
    # What a web page open on this machine could send to it: moto's own API (reset), an
    # SQS call from its own domain resolved to 127.0.0.1 (DNS rebinding), a CORS read.
    list_queues = {
        "X-Amz-Target": "AmazonSQS.ListQueues",
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": "AWS4-HMAC-SHA256 Credential=aiosqsq-local/20260101/us-east-1/sqs/"
        "aws4_request, SignedHeaders=host, Signature=00",
        "Origin": "http://evil.example",
    }
    with CliProcess("run", "memapp:app", "--local") as run:
        run.wait_for(r"aiosqsq: consuming default with memapp\.handle")
        endpoint = _endpoint(run.records())
        port = endpoint.rsplit(":", 1)[1]
        status, headers, body = _request(endpoint, "/", list_queues)
        queues = sorted(url.rsplit("/", 1)[1] for url in json.loads(body)["QueueUrls"])
        assert (status, queues) == (200, ["default", "default-dlq"])
        assert not [name for name in headers if name.lower().startswith("access-control-")]
        for path, extra in [
            ("/moto-api/reset", {}),
            ("/moto-api/seed?a=42", {}),
            ("/", {"Host": f"evil.example:{port}"}),
            ("/", {"Host": f"localhost:{port}"}),
        ]:
            status, headers, _ = _request(endpoint, path, {**list_queues, **extra})
            assert status == 403, (path, extra)
            assert "Access-Control-Allow-Origin" not in headers
        run.send_signal(signal.SIGTERM)
        assert run.wait() == ExitCode.OK


EXPORT = (
    "export QUEUE_BACKEND=sqs QUEUE_SQS_ENDPOINT_URL=http://127.0.0.1:{port} "
    "QUEUE_AWS_REGION=us-east-1 QUEUE_AWS_ACCESS_KEY_ID=aiosqsq-local "
    "QUEUE_AWS_SECRET_ACCESS_KEY=aiosqsq-local QUEUE_AWS_SESSION_TOKEN='' "
    "QUEUE_SQS_QUEUE_URL={queue}"
)
REACH = (
    "# local SQS server at http://127.0.0.1:{port}; to send to it or run aiosqsq queues, "
    "send or dlq against it from another shell:"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def in_shell(
    export_line: str, *args: str, stdin_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``aiosqsq ARGS`` in a new shell that ran ``export_line`` first, as a user would."""
    command = " ".join(shlex.quote(part) for part in (sys.executable, "-m", "aiosqsq", *args))
    return subprocess.run(
        ["bash", "-c", f"{export_line}\n{command}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        check=False,
        input=stdin_text,
    )


def test_local_port_prints_what_another_shell_needs_to_send_to_the_worker(ledger: Path) -> None:
    port = free_port()
    env = {
        "LEDGER_PATH": str(ledger),
        "QUEUE_WAIT_TIME_SECONDS": "1",
        "QUEUE_LOCAL_PORT": str(port),
    }
    args = ("run", "ledger:app", "--local", "--app-dir", str(APPS_DIR), "--log-level", "warning")
    with CliProcess(*args, env=env) as run:
        (export_line,) = run.wait_for(r"^export ")
        reach = [line for line in run.output.splitlines() if line.startswith(("#", "export"))]
        assert reach == [REACH.format(port=port), EXPORT.format(port=port, queue="default")]
        sent = in_shell(export_line, "send", "default", "from another shell")
        assert (sent.returncode, sent.stdout) == (0, "sent 1 message to default\n"), sent.stderr
        assert json.loads(wait_for_lines(ledger, 1)[0])["seq"] == "from another shell"
        run.send_signal(signal.SIGTERM)
        assert run.wait() == ExitCode.OK
    assert not run.records()  # --log-level warning: the lines above came all the same


def test_local_port_taken_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", "memapp:app", "--local", "--local-port", str(port))
    assert result.returncode == ExitCode.CONFIGURATION
    assert [r.message for r in records(result.stderr)] == [
        f"configuration error: the local SQS server cannot listen on 127.0.0.1:{port} "
        "(Address already in use): choose another port, or 0 for a free one"
    ]


def test_aiosqsq_local_serves_the_queues_for_send_and_stats_until_sigterm() -> None:
    port = free_port()
    args = ("local", "ledger:app", "--app-dir", str(APPS_DIR), "--queue", "orders")
    with CliProcess(*args, "--port", str(port), env={"LEDGER_PATH": "/dev/null"}) as server:
        (export_line,) = server.wait_for(r"^export ")
        assert export_line == EXPORT.format(port=port, queue="default")
        sent = in_shell(export_line, "send", "orders", '{"id": 1}')
        assert (sent.returncode, sent.stdout) == (0, "sent 1 message to orders\n"), sent.stderr
        stats = in_shell(export_line, "queues", "stats")
        assert stats.returncode == 0, stats.stderr
        rows = [line.replace("│", " ").split() for line in stats.stdout.splitlines()[2:]]
        assert rows == [
            ["default", "0", "0", "0", "default-dlq", "0"],
            ["default-dlq", "0", "0", "0", "-", "-"],
            ["orders", "1", "0", "0", "orders-dlq", "0"],
            ["orders-dlq", "0", "0", "0", "-", "-"],
        ]
        server.send_signal(signal.SIGTERM)
        assert server.wait() == ExitCode.OK
    assert [r.message for r in server.records() if r.logger == "aiosqsq.cli"] == [
        f"local SQS server (moto) at http://127.0.0.1:{port}, for this run only",
        "local SQS: created queue default, dead letters to default-dlq after 5 receives",
        "local SQS: created queue orders, dead letters to orders-dlq after 5 receives",
        "serving until SIGINT or SIGTERM (Ctrl-C)",
        "local SQS server stopped: its queues and messages are gone",
    ]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=5)


def test_aiosqsq_local_without_an_app_serves_its_queues_and_stops_on_ctrl_c() -> None:
    env = {"QUEUE_LOG_FORMAT": "json"}  # for aiosqsq run: local's lines stay pasteable
    with CliProcess("local", "--queue", "orders", "--queue", "audit", env=env) as server:
        (export_line,) = server.wait_for(r"^export ")
        assert export_line.endswith(" QUEUE_SQS_QUEUE_URL=orders")  # the first --queue
        stats = in_shell(export_line, "queues", "stats")
        assert [line.split()[0] for line in stats.stdout.splitlines()[2:]] == [
            "audit",
            "audit-dlq",
            "orders",
            "orders-dlq",
        ]
        server.send_signal(signal.SIGINT)
        assert server.wait() == ExitCode.OK
    assert (
        server.records()[-1].message == "local SQS server stopped: its queues and messages are gone"
    )


def test_aiosqsq_local_with_json_logs_writes_only_json_lines() -> None:
    port = free_port()
    args = ("local", "--queue", "orders", "--port", str(port), "--log-format", "json")
    with CliProcess(*args) as server:
        server.wait_for(r'"message": "export ')
        server.send_signal(signal.SIGTERM)
        assert server.wait() == ExitCode.OK
    lines = [json.loads(line) for line in server.output.splitlines()]
    messages = [line["message"] for line in lines]
    assert EXPORT.format(port=port, queue="orders") in messages
    assert REACH.format(port=port) in messages
    assert messages[-1] == "local SQS server stopped: its queues and messages are gone"


def test_aiosqsq_local_reports_an_app_it_cannot_load() -> None:
    result = run_cli("local", "missing_module:app")
    assert result.returncode == ExitCode.APP_NOT_LOADED
    lines = records(result.stderr)
    assert [r.level for r in lines].count("ERROR") == 1
    assert lines[-1].message == "local SQS server stopped: its queues and messages are gone"
    assert "export " not in result.stderr


def test_local_export_line_under_json_logs_is_a_json_object_at_any_level() -> None:
    port = free_port()
    args = ("run", "memapp:app", "--local", "--local-port", str(port), "--burst")
    result = run_cli(*args, "--log-format", "json", "--log-level", "error")
    assert result.returncode == ExitCode.OK, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("aiosqsq.cli", REACH.format(port=port)),
        ("aiosqsq.cli", EXPORT.format(port=port, queue="default")),
    ]
