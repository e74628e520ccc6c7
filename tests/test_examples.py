"""The examples run: the demo as the README's first command runs it, and the embedding."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from aiosqsq.testing import AppTester
from examples import embedded
from tests.helpers import slow

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_every_fate_and_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--messages", "120"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "sent 120 orders and 1 malformed message" in done.stdout
    assert "succeeded=119" in done.stdout  # order 13 always fails
    # the malformed one, moved at once, and order 13, moved on its 5th and last receive
    assert "dead_lettered=2" in done.stdout
    assert "retried=" in done.stdout
    assert ": 2 message(s)" in done.stdout
    assert "reason: JSONDecodeError" in done.stdout
    assert (
        "reason: RuntimeError: failed on receive 5, the last the queue's maxReceiveCount (5) "
        "allows" in done.stdout
    )


def test_demo_runs_over_the_embedded_sqs_server() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--messages", "30", "--local"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "embedded SQS server (moto) at http://127.0.0.1:" in done.stdout
    assert "succeeded=29" in done.stdout
    assert "/orders-dlq: 2 message(s)" in done.stdout


async def _request(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, object]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(payload)


async def test_embedded_service_consumes_in_its_lifespan() -> None:
    ready, stop = asyncio.Event(), asyncio.Event()
    bound: list[int] = []
    server = asyncio.create_task(embedded.serve(port=0, ready=ready, stop=stop, bound=bound))
    async with asyncio.timeout(10):
        await ready.wait()
        port = bound[0]
        assert await _request(port, "GET", "/health") == (200, "ok")
        for i in range(5):
            status, _ = await _request(port, "POST", "/orders", orjson.dumps({"id": i}))
            assert status == 202
        assert (await _request(port, "POST", "/orders", b"{nope"))[0] == 400
        while len(embedded.processed) < 5:
            await asyncio.sleep(0.01)
        status, stats = await _request(port, "GET", "/stats")
        assert status == 200
        assert isinstance(stats, dict)
        assert stats["succeeded"] == 5
        stop.set()
        await server
    assert sorted(order["id"] for order in embedded.processed) == list(range(5))


async def test_the_service_example_runs_every_part(caplog: pytest.LogCaptureFixture) -> None:
    """examples/service: lifespan, router, middleware and a batch handler together, on the
    memory backend (its default)."""
    from examples.service.app import app

    tester = AppTester(app)
    await tester.send({"id": 1, "sku": "A-1", "email": "a@example.com"})
    await tester.send({"id": 2, "sku": "backorder", "email": "b@example.com"})
    await app.send_batch([{"kind": "t", "value": 1.5}, {"kind": "t", "value": -1}], "events")
    with caplog.at_level(logging.INFO):
        drained = await tester.drain()

    # order 1, the e-mail it sent (through the router), the good event
    assert sorted(m.queue_url.rsplit("/", 1)[-1] for m in drained.succeeded) == [
        "default",
        "emails",
        "events",
    ]
    # the back-ordered order (Retry) and the negative event (returned by the batch handler)
    assert sorted(m.queue_url.rsplit("/", 1)[-1] for m in drained.retried) == [
        "default",
        "events",
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("e-mail message ") for m in messages) == 1  # router middleware
    assert sum(m.startswith("handled ") for m in messages) == 4  # app middleware, per call
    assert "application shutdown complete" in messages


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_embedded_example_stops_gracefully_on_a_signal(signum: int) -> None:
    """Ctrl-C or SIGTERM while two 2 s handlers run: they finish, the process exits 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.embedded", "--port", "0", "--handler-delay", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        before: list[str] = []
        for _ in range(20):  # bounded: start lines, then ours
            before.append(process.stdout.readline())
            if before[-1].startswith("listening on http://") or not before[-1]:
                break
        assert before[-1].startswith("listening on http://"), before
        port = int(before[-1].rsplit(":", 1)[1])

        async def post_two_and_wait_until_running() -> None:
            for i in range(2):
                assert (await _request(port, "POST", "/orders", orjson.dumps({"id": i})))[0] == 202
            async with asyncio.timeout(slow(10)):
                while True:
                    _, stats = await _request(port, "GET", "/stats")
                    assert isinstance(stats, dict)
                    if stats["in_flight"] >= 2:
                        break
                    await asyncio.sleep(0.05)

        asyncio.run(post_two_and_wait_until_running())
        process.send_signal(signum)
        output, _ = process.communicate(timeout=slow(30))
        output = "".join(before) + output
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert "stopping gracefully" in output
    assert "succeeded=2" in output  # both running handlers were let finish
