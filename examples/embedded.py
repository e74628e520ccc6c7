"""Embedding: an existing asyncio web service that also consumes a queue.

The service's lifespan enters ``async with app:``, so the consumer starts with the
service and stops gracefully with it (unstarted messages handed back, running handlers
given ``QUEUE_SHUTDOWN_TIMEOUT``, pending deletes flushed). The web part is a tiny HTTP
server from the standard library, standing in for any ASGI framework's lifespan:

* ``GET /health`` answers ``ok``;
* ``POST /orders`` enqueues the request body;
* ``GET /stats`` returns the consumer's ``statistics()`` as JSON.

Run: ``python -m examples.embedded`` and ``curl -d '{"id": 1}' 127.0.0.1:8000/orders``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson

from aiosqsq import App, QueueSettings

app = App(QueueSettings(backend="memory", sqs_queue_url="orders"))
processed: list[dict[str, int]] = []


@app.handler()
async def handle_order(order: dict[str, int]) -> None:
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
        length = min(int(headers.get("content-length", "0")), 1_048_576)
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


if __name__ == "__main__":
    asyncio.run(serve())
