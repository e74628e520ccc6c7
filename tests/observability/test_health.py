"""/livez and /readyz of an app consuming in this process, over real HTTP on 127.0.0.1:
ready once receiving and not while draining; not live when a handler blocks the event loop
or handlers hold every slot past the liveness bound."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.observability import asgi_app, instrument, process_endpoints
from aiosqsq.observability.http_server import HTTPEndpoint
from tests.helpers import make_app, make_queue, slow


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=slow(5)) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def endpoint():
    registry = CollectorRegistry()
    served = HTTPEndpoint(process_endpoints(registry), "127.0.0.1", 0)
    served.registry = registry  # type: ignore[attr-defined]
    yield served
    served.close()


def probe_until(port: int, path: str, status: int, found: list[str], done: threading.Event) -> None:
    """From a thread (the loop may be blocked): probe until ``status``, then set ``done``."""
    deadline = time.monotonic() + slow(20)
    while time.monotonic() < deadline:
        code, body = get(port, path)
        if code == status:
            found.append(body)
            break
        time.sleep(0.05)
    done.set()


async def test_ready_while_receiving_and_not_while_draining(endpoint) -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend, wait_time_seconds=1)
    instrument(app, registry=endpoint.registry)

    started, finish = anyio.Event(), anyio.Event()

    @app.handler(concurrency=1)
    async def work(payload: str) -> None:
        started.set()
        await finish.wait()  # still running when the stop comes: the app drains

    assert (await anyio.to_thread.run_sync(get, endpoint.port, "/readyz"))[0] == 503
    await app.send("x")
    async with app:
        with anyio.fail_after(slow(10)):
            while (await anyio.to_thread.run_sync(get, endpoint.port, "/readyz"))[0] != 200:
                await anyio.sleep(0.02)
        assert await anyio.to_thread.run_sync(get, endpoint.port, "/livez") == (200, "ok\n")
        await started.wait()
        app.stop()
        code, body = await anyio.to_thread.run_sync(get, endpoint.port, "/readyz")
        assert (code, body) == (503, "draining: a stop was asked for\n")
        finish.set()
    assert (await anyio.to_thread.run_sync(get, endpoint.port, "/metrics"))[0] == 200
    assert (await anyio.to_thread.run_sync(get, endpoint.port, "/nope"))[0] == 404


async def test_a_handler_blocking_the_loop_turns_livez_red(endpoint) -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend, wait_time_seconds=1, liveness_timeout=slow(0.5))
    instrument(app, registry=endpoint.registry)
    red = threading.Event()
    found: list[str] = []

    @app.handler(concurrency=1)
    async def block(payload: str) -> None:
        threading.Thread(
            target=probe_until, args=(endpoint.port, "/livez", 503, found, red)
        ).start()
        red.wait(slow(30))  # blocks the event loop until the probe saw 503

    await app.send("x")
    async with app:
        with anyio.fail_after(slow(30)):
            while not red.is_set():
                await anyio.sleep(0.02)
    assert len(found) == 1
    assert found[0].startswith("the event loop has not run for ")


async def test_handlers_stuck_on_every_slot_turn_livez_red(endpoint) -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend, wait_time_seconds=0, liveness_timeout=slow(0.5))
    instrument(app, registry=endpoint.registry)
    release = anyio.Event()

    @app.handler(concurrency=1)
    async def stuck(payload: str) -> None:
        await release.wait()

    await app.send("x")
    async with app:
        with anyio.fail_after(slow(20)):
            while True:
                code, body = await anyio.to_thread.run_sync(get, endpoint.port, "/livez")
                if code == 503:
                    break
                await anyio.sleep(0.05)
        assert body.startswith("a handler has run for ")
        assert body.endswith(" from jobs (stuck?)\n")
        release.set()
        with anyio.fail_after(slow(20)):  # receiving again: live again
            while (await anyio.to_thread.run_sync(get, endpoint.port, "/livez"))[0] != 200:
                await anyio.sleep(0.05)


async def test_the_asgi_app_serves_the_same_endpoints_under_a_mount_prefix() -> None:
    registry = CollectorRegistry()
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend, wait_time_seconds=1)
    instrument(app, registry=registry)

    @app.handler()
    async def work(payload: str) -> None:
        pass

    asgi = asgi_app(registry)

    async def call(path: str) -> tuple[int, bytes, dict[bytes, bytes]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(event: Any) -> None:
            sent.append(dict(event))

        scope = {"type": "http", "method": "GET", "path": f"/aiosqsq{path}",
                 "root_path": "/aiosqsq"}  # fmt: skip
        await asgi(scope, receive, send)
        start, body = sent
        return start["status"], body["body"], dict(start["headers"])

    assert (await call("/readyz"))[:2] == (503, b"no app is consuming yet\n")
    await app.send("x")
    async with app:
        with anyio.fail_after(slow(10)):
            while (await call("/readyz"))[0] != 200:
                await anyio.sleep(0.02)
        assert (await call("/livez"))[:2] == (200, b"ok\n")
    status, body, headers = await call("/metrics")
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/plain")
    assert b'aiosqsq_messages_received_total{queue="jobs"} 1.0' in body
