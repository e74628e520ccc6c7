"""aiosqsq top against a real served /metrics: one reading; a clear line when the
endpoint is unreachable; Ctrl-C ends it cleanly."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.cli.command import cli
from aiosqsq.observability import instrument, process_endpoints
from aiosqsq.observability.http_server import HTTPEndpoint
from aiosqsq.observability.scrape import quantile
from aiosqsq.testing import AppTester
from tests.helpers import make_app, make_queue


@pytest.fixture
def served():
    registry = CollectorRegistry()
    endpoint = HTTPEndpoint(process_endpoints(registry), "127.0.0.1", 0)
    yield registry, endpoint.port
    endpoint.close()


async def test_one_reading_shows_each_queue_and_sqs_operation(served) -> None:
    registry, port = served
    backend = MemoryBackend()
    await make_queue(backend, "orders")
    app = make_app(backend, sqs_queue_url="orders")
    instrument(app, registry=registry)

    @app.handler()
    async def work(payload: str) -> None:
        if payload == "bad":
            raise ValueError(payload)

    tester = AppTester(app, backend=backend)
    for payload in ["a", "b", "bad"]:
        await tester.send(payload)
    await tester.drain()

    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        cli, ["top", "--url", f"http://127.0.0.1:{port}", "--once", "--interval", "0.1"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"aiosqsq top  http://127.0.0.1:{port}/metrics  every 0.1 s")
    (row,) = [line for line in lines if "orders" in line]
    cells = row.strip("│ ").split("│")
    assert [cell.strip() for cell in cells][:2] == ["orders", "0.0"]  # nothing new since
    assert any(line.strip("│ ").startswith("ReceiveMessage") for line in lines)
    assert any(line.strip("│ ").startswith("DeleteMessageBatch") for line in lines)


def test_an_unreachable_endpoint_says_what_to_check() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the test asks it
    result = CliRunner().invoke(cli, ["top", "--url", f"http://127.0.0.1:{port}", "--once"])
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: cannot read http://127.0.0.1:{port}/metrics: [Errno 111] Connection refused; "
        "is a worker running with --http-port (QUEUE_HTTP_PORT) on that address?"
    )


def test_ctrl_c_ends_the_live_view_cleanly(served, monkeypatch) -> None:
    _, port = served

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("aiosqsq.cli.top.time.sleep", interrupted)
    result = CliRunner().invoke(cli, ["top", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 0
    assert "Traceback" not in result.output


def test_quantiles_interpolate_within_buckets() -> None:
    buckets = [(0.1, 50.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.75, buckets) == pytest.approx(0.55)
    assert quantile(0.5, []) is None
