"""The lean transport's HTTP/1.1 client against a loopback server that answers with the
bytes each test writes: bodies by length, in chunks and up to the close; keep-alive
reuse; the pool's bound; and every way a response can fail, as botocore's exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from botocore import exceptions as boto_errors  # type: ignore[import-untyped]

from aiosqsq.backends.http11 import HTTP11Pool
from tests.helpers import slow

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{}"


class Server:
    """A loopback server: every connection is answered by ``answer``; counts them."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.open_now = 0
        self.most_open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await self.answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_now -= 1
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request (head and Content-Length body), or None at the end of input."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


@asynccontextmanager
async def serving(answer: Answer | None = None) -> AsyncIterator[tuple[str, Server]]:
    server = Server(answer or keep_alive(OK))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        listener.close()
        await listener.wait_closed()


def keep_alive(*responses: bytes) -> Answer:
    """Answer each request on the connection with ``responses`` in turn (the last one
    repeated), keeping it open."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for number in range(1000):
            if await server_of(answer).read_request(reader) is None:
                return
            writer.write(responses[min(number, len(responses) - 1)])
            await writer.drain()

    return answer


_SERVERS: dict[object, Server] = {}


def server_of(answer: object) -> Server:
    return _SERVERS[answer]


@asynccontextmanager
async def pool_for(
    answer: Answer | None = None,
    *,
    read_timeout_s: float | None = 5.0,
    connections: int = 4,
    **options: Any,
) -> AsyncIterator[tuple[HTTP11Pool, Server]]:
    answer = answer or keep_alive(OK)
    async with serving(answer) as (url, server):
        _SERVERS[answer] = server
        pool = HTTP11Pool(
            url,
            ssl_context=None,
            connect_timeout_s=5.0,
            read_timeout_s=read_timeout_s,
            max_connections=connections,
            **options,
        )
        try:
            yield pool, server
        finally:
            await pool.aclose()
            del _SERVERS[answer]


async def post(pool: HTTP11Pool, body: bytes = b"{}") -> tuple[int, dict[str, str], bytes]:
    return await pool.request("POST", "/", [("Host", "127.0.0.1")], body)


async def test_a_request_is_written_once_and_its_response_read() -> None:
    async with pool_for() as (pool, server):
        status, headers, body = await post(pool, b'{"QueueUrl": "q"}')
    assert (status, body) == (200, b"{}")
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert server.requests == [
        b'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 17\r\n\r\n{"QueueUrl": "q"}'
    ]


async def test_one_connection_serves_requests_one_after_another() -> None:
    async with pool_for() as (pool, server):
        for _ in range(5):
            assert (await post(pool))[0] == 200
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_a_connection_idle_past_the_idle_timeout_is_not_reused() -> None:
    now = [0.0]
    async with pool_for(idle_timeout_s=10.0, clock=lambda: now[0]) as (pool, server):
        await post(pool)
        now[0] = 9.0
        await post(pool)  # idle 9 s: reused
        now[0] = 19.5
        await post(pool)  # idle 10.5 s: a new connection
    assert server.connections == 2


async def test_concurrent_requests_use_at_most_the_pools_connections() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server_of(slow).read_request(reader) is not None:
            await asyncio.sleep(0.01)  # the server's own pace, not a test's synchronisation
            writer.write(OK)
            await writer.drain()

    async with pool_for(slow, connections=3) as (pool, server):
        results = await asyncio.gather(*(post(pool) for _ in range(12)))
    assert [status for status, _, _ in results] == [200] * 12
    assert server.connections == 3
    assert server.most_open == 3


async def test_a_response_may_come_in_pieces_and_in_chunks() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )

    async def in_pieces(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server_of(in_pieces).read_request(reader) is not None:
            for start in range(0, len(chunked), 3):  # three bytes at a time
                writer.write(chunked[start : start + 3])
                await writer.drain()

    async with pool_for(in_pieces) as (pool, server):
        assert (await post(pool))[2] == b"hello, world"
        assert (await post(pool))[2] == b"hello, world"
    assert server.connections == 1


async def test_an_interim_100_response_is_skipped() -> None:
    answer = keep_alive(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
    async with pool_for(answer) as (pool, _):
        assert (await post(pool))[:3:2] == (200, b"{}")


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\n\r\n{}",  # no length: the body ends with the connection
    ],
    ids=["connection close", "HTTP/1.0", "until the close"],
)
async def test_a_connection_the_server_will_close_is_not_reused(response: bytes) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await server_of(once).read_request(reader) is not None:
            writer.write(response)
            await writer.drain()

    async with pool_for(once) as (pool, server):
        assert (await post(pool))[::2] == (200, b"{}")
        assert (await post(pool))[::2] == (200, b"{}")
    assert server.connections == 2


async def test_an_idle_connection_the_server_closed_is_not_used() -> None:
    close_now = asyncio.Event()

    async def one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await server_of(one_request).read_request(reader) is not None:
            writer.write(OK)  # says nothing of closing, then closes while idle
            await writer.drain()
            await close_now.wait()

    async with pool_for(one_request) as (pool, server):
        assert (await post(pool))[0] == 200
        assert pool.idle_connections == 1
        close_now.set()
        for _ in range(500):  # until the client has seen the close
            if pool.idle_connections == 0:
                break
            await asyncio.sleep(0.01)
        assert (await post(pool))[0] == 200
    assert server.connections == 2


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",  # closed mid-body
        b"",  # closed without a byte
        b"SSH-2.0-OpenSSH\r\n\r\n",  # not HTTP
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",  # not loaded
    ],
)
async def test_a_broken_response_is_a_closed_connection(response: bytes) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await server_of(broken).read_request(reader) is not None:
            writer.write(response)
            await writer.drain()

    async with pool_for(broken) as (pool, _):
        with pytest.raises(boto_errors.ConnectionClosedError):
            await post(pool)


async def test_a_response_that_does_not_come_is_a_read_timeout() -> None:
    never = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server_of(silent).read_request(reader)
        await never.wait()

    async with pool_for(silent, read_timeout_s=0.05) as (pool, _):
        with pytest.raises(boto_errors.ReadTimeoutError):
            await post(pool)
        never.set()
        assert pool.open_connections == 0  # dropped, not kept for the next request


async def test_nothing_listening_is_an_endpoint_connection_error() -> None:
    async with serving() as (url, _):
        pass  # closed: nothing listens on its port any more
    pool = HTTP11Pool(
        url, ssl_context=None, connect_timeout_s=5.0, read_timeout_s=5.0, max_connections=1
    )
    with pytest.raises(boto_errors.EndpointConnectionError):
        await post(pool)


async def test_a_cancelled_request_leaves_no_connection_to_reuse() -> None:
    never = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server_of(silent).read_request(reader) is not None:
            if len(server_of(silent).requests) > 1:
                writer.write(OK)
                await writer.drain()
            else:
                await never.wait()

    async with pool_for(silent) as (pool, server):
        task = asyncio.ensure_future(post(pool))
        for _ in range(500):
            if server.requests:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        never.set()
        assert (await post(pool))[0] == 200  # on a new connection: the first one is dropped
    assert server.connections == 2


async def test_the_read_timeout_is_per_read_not_for_the_whole_response() -> None:
    timeout_s = slow(0.5)
    pieces = int(2 * timeout_s / 0.05)  # the response takes twice the read timeout in all
    body = b"x" * pieces

    async def trickling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server_of(trickling).read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            for index in range(pieces):
                await asyncio.sleep(0.05)  # the server's pace, far inside the read timeout
                writer.write(body[index : index + 1])
                await writer.drain()

    async with pool_for(trickling, read_timeout_s=timeout_s) as (pool, _):
        assert (await post(pool))[::2] == (200, body)


async def test_bytes_after_a_chunked_body_make_the_connection_not_reused() -> None:
    answer = keep_alive(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\nJUNK"
    )
    async with pool_for(answer) as (pool, server):
        assert (await post(pool))[2] == b"{}"
        assert (await post(pool))[2] == b"{}"
    assert server.connections == 2


async def test_many_interim_responses_are_read_in_a_loop() -> None:
    answer = keep_alive(b"HTTP/1.1 100 Continue\r\n\r\n" * 3000 + OK)
    async with pool_for(answer) as (pool, _):
        assert (await post(pool))[::2] == (200, b"{}")


async def test_a_closed_pool_opens_no_connection() -> None:
    async with pool_for() as (pool, server):
        await post(pool)
        await pool.aclose()
        with pytest.raises(boto_errors.ConnectionClosedError):
            await post(pool)
        assert pool.open_connections == 0
    assert server.connections == 1
