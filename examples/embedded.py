"""Embedding: an existing asyncio web service that also consumes a queue.

The service's lifespan enters ``async with app:``, so the consumer starts with the
service and stops gracefully with it (unstarted messages handed back, running handlers
given ``QUEUE_SHUTDOWN_TIMEOUT``, pending deletes flushed). The web part is a tiny HTTP
server from the standard library, standing in for any ASGI framework's lifespan:

* ``GET /health`` answers ``ok``;
* ``POST /orders`` enqueues the request body;
* ``GET /stats`` returns the consumer's ``statistics()`` as JSON.

Run: ``python -m examples.embedded`` and ``curl -d '{"id": 1}' 127.0.0.1:8000/orders``.

Stopping: the service handles SIGINT (Ctrl-C) and SIGTERM as a real one does (uvicorn
does the same for its lifespan): the first signal leaves the lifespan, so ``async with
app:`` stops gracefully, and the process exits 0; a second signal cancels the running
handlers at once (their messages are still handed back). Leaving ``async with app:`` by
cancellation is graceful too, so a host that cancels its tasks on shutdown loses nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson

from aiosqsq import App, MemoryBackend, QueueSettings

# In-process queues, on purpose: this service sends to itself (POST /orders).
app = App(QueueSettings(backend="memory", sqs_queue_url="orders"), backend=MemoryBackend())
processed: list[dict[str, int]] = []
handler_delay_s = 0.0  # --handler-delay: handlers that take a while, to watch a stop


@app.handler()
async def handle_order(order: dict[str, int]) -> None:
    await asyncio.sleep(handler_delay_s)
    processed.append(order)


@asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    """What a web framework's lifespan hook would hold: the consumer runs inside it."""
    async with app:
        yield


async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request_line = (await reader.readline()).decode("latin-1").split()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        declared = headers.get("content-length", "0")
        length = min(int(declared), 1_048_576) if declared.isdigit() else 0
        body = await reader.readexactly(length) if length else b""
        status, payload = await route(request_line[:2], body)
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
    finally:
        writer.close()


async def route(request: list[str], body: bytes) -> tuple[str, bytes]:
    match request:
        case ["GET", "/health"]:
            return "200 OK", b'"ok"'
        case ["GET", "/stats"]:
            return "200 OK", orjson.dumps(dataclasses.asdict(app.statistics()))
        case ["POST", "/orders"]:
            try:
                order = orjson.loads(body)
            except orjson.JSONDecodeError:
                return "400 Bad Request", b'{"error": "the body must be JSON"}'
            message_id = await app.send(order)
            return "202 Accepted", orjson.dumps({"message_id": message_id})
    return "404 Not Found", b'{"error": "not found"}'


async def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    bound: list[int] | None = None,
) -> None:
    """Serve until ``stop`` is set (or forever); ``bound`` receives the port in use."""
    async with lifespan():
        server = await asyncio.start_server(respond, host, port)
        async with server:
            if bound is not None:
                bound.append(server.sockets[0].getsockname()[1])
            if ready is not None:
                ready.set()
            await (stop or asyncio.Event()).wait()


async def main(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM; a second one cancels the running handlers."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            logging.getLogger("examples.embedded").warning("second signal: forcing")
            app.stop(force=True)
            return
        logging.getLogger("examples.embedded").info(
            "%s: stopping gracefully (again to force)", signal.Signals(signum).name
        )
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    ready, bound = asyncio.Event(), list[int]()
    serving = asyncio.create_task(serve(host, port, ready, stop, bound))
    await ready.wait()
    print(f"listening on http://{host}:{bound[0]}", flush=True)
    await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a web service that consumes a queue")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--handler-delay", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args()
    handler_delay_s = args.handler_delay
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main(args.host, args.port))
