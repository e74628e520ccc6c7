"""A counting HTTP/1.1 proxy on 127.0.0.1: counts SQS requests by action, forwards the bytes.

    .venv/bin/python benchmarks/sqs_proxy.py --upstream http://127.0.0.1:PORT

It prints the port it listens on (the kernel picks it), then forwards every request of
every client connection, unchanged, over one upstream keep-alive connection of its own to
the moto server, and the response back. For each request it counts, by ``X-Amz-Target``
action (``AmazonSQS.ReceiveMessage`` -> ``ReceiveMessage``; ``other`` without one):

* ``requests``: requests forwarded;
* ``entries``: receipt handles in the request (the entries of a DeleteMessageBatch);
* ``messages``: receipt handles in the response (the messages a ReceiveMessage returned).

Entries and messages are counted as occurrences of ``"ReceiptHandle"`` in the JSON body
(a byte count in C, no parsing); message bodies in this benchmark are decimal numbers, so
they never contain that word. Connections accepted are counted too (keep-alive check).

It also times how busy the server was, between the first request forwarded since the last
reset and the last response (``upstream_active_s``): ``upstream_idle_s``, the time with no
request forwarded and unanswered (the server had nothing to do for this client), and
``upstream_mean_outstanding``, the mean number of such requests (how deep the server's
queue of this client's requests was). A consumer that keeps the server fed leaves it idle
close to never.

The proxy answers two requests itself, never forwarded:

* ``GET /__proxy/counts``: the counts as JSON;
* ``POST /__proxy/reset``: the counts as JSON, then zeroes them.

It handles what aiobotocore and moto (cheroot) send: requests with a ``Content-Length``
body, responses with a ``Content-Length`` or a chunked body. It exits on SIGTERM or when
its stdin closes (so a killed benchmark leaves no proxy behind).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

HOST = "127.0.0.1"
_TARGET_PREFIX = "AmazonSQS."
_HANDLE = b'"ReceiptHandle"'
_MAX_HEAD_BYTES = 64 * 1024


class Counts:
    """Requests, request entries and response messages per action; connections."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.entries: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self.connections = 0
        self.outstanding = 0  # requests forwarded upstream and not answered yet
        self._first: float | None = None  # the first request forwarded since the reset
        self._changed = 0.0
        self._idle_s = 0.0
        self._outstanding_s = 0.0  # the integral of ``outstanding`` over time

    def forwarded(self, change: int) -> None:
        """One request went upstream (+1) or its response came back (-1). Idle time is
        counted between requests only: before the first and after the last, the client
        was starting or stopping."""
        now = time.monotonic()
        if self._first is None:
            self._first = now
        else:
            span = now - self._changed
            if self.outstanding == 0:
                self._idle_s += span
            self._outstanding_s += self.outstanding * span
        self._changed = now
        self.outstanding += change

    def as_dict(self) -> dict[str, Any]:
        active_s = 0.0 if self._first is None else self._changed - self._first
        return {
            "requests": dict(self.requests),
            "entries": dict(self.entries),
            "messages": dict(self.messages),
            "connections": self.connections,
            "upstream_active_s": active_s,
            "upstream_idle_s": self._idle_s,
            "upstream_mean_outstanding": self._outstanding_s / active_s if active_s else 0.0,
        }

    def reset(self) -> None:
        outstanding = self.outstanding
        self.__init__()  # type: ignore[misc]
        self.outstanding = outstanding


def _header(head: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lowercase) in a request or response head, or None."""
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    """The body that follows ``head``, in its wire form (chunked stays chunked)."""
    length = _header(head, b"content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    encoding = _header(head, b"transfer-encoding")
    if encoding is None or b"chunked" not in encoding.lower():
        return b""
    parts: list[bytes] = []
    while True:  # each chunk: size line, data, CRLF; the last is 0 and trailers
        size_line = await reader.readuntil(b"\r\n")
        parts.append(size_line)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:
                trailer = await reader.readuntil(b"\r\n")
                parts.append(trailer)
                if trailer == b"\r\n":
                    return b"".join(parts)
        parts.append(await reader.readexactly(size + 2))


class Proxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counts = Counts()
        # asyncio holds only weak references to tasks: a connection's task waiting on a
        # socket whose other end has gone could be collected mid-await without this
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve_client(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.counts.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head = await client_reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed its keep-alive connection
                body = await _read_body(client_reader, head)
                if head.startswith((b"GET /__proxy/", b"POST /__proxy/")):
                    self._answer_itself(head, client_writer)
                    await client_writer.drain()
                    continue
                target = _header(head, b"x-amz-target")
                action = (
                    target.decode("ascii", "replace").removeprefix(_TARGET_PREFIX)
                    if target
                    else "other"
                )
                self.counts.requests[action] += 1
                if _HANDLE in body:
                    self.counts.entries[action] += body.count(_HANDLE)
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream)
                up_reader, up_writer = upstream
                up_writer.write(head + body)
                self.counts.forwarded(+1)
                try:
                    response_head = await up_reader.readuntil(b"\r\n\r\n")
                    response_body = await _read_body(up_reader, response_head)
                finally:
                    self.counts.forwarded(-1)
                if _HANDLE in response_body:
                    self.counts.messages[action] += response_body.count(_HANDLE)
                client_writer.write(response_head + response_body)
                await client_writer.drain()
                connection = _header(response_head, b"connection")
                if connection is not None and connection.lower() == b"close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            if upstream is not None:
                upstream[1].close()
            client_writer.close()
            if task is not None:
                self._tasks.discard(task)

    def _answer_itself(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        payload = json.dumps(self.counts.as_dict()).encode()
        if head.startswith(b"POST /__proxy/reset"):
            self.counts.reset()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )


def _exit_when_parent_goes() -> None:
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass
    os._exit(0)


async def serve(upstream_url: str) -> None:
    parts = urlsplit(upstream_url)
    if parts.hostname is None or parts.port is None:
        raise SystemExit(f"--upstream {upstream_url!r}: expected http://127.0.0.1:PORT")
    proxy = Proxy(parts.hostname, parts.port)
    server = await asyncio.start_server(
        proxy.serve_client, HOST, 0, limit=_MAX_HEAD_BYTES, backlog=128
    )
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the moto server, http://HOST:PORT")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    asyncio.run(serve(args.upstream))


if __name__ == "__main__":
    main()
