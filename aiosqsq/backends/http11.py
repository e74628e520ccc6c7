"""A keep-alive HTTP/1.1 client for one origin, made for the lean SQS transport's requests:
small POSTs with a known body, answered with a Content-Length (or chunked) body.

It does what the transport needs and no more, for a fraction of a general client's CPU
per request: one ``bytes`` written per request, the response's head parsed once, no
header multidicts, no cookie jar, no redirects, no proxies (a proxied endpoint keeps the
general client). Connections are pooled, at most ``max_connections`` at once (callers
wait for one), reused while the server keeps them alive, for at most
:data:`IDLE_TIMEOUT_S` of idling.

Failures are raised as botocore's exceptions, as the transport's callers expect:
``EndpointConnectionError`` (the connection could not be made), ``ConnectTimeoutError``,
``ReadTimeoutError`` (no byte of the response for the read timeout: a timeout per read,
as aiohttp's ``sock_read``, so a long response that keeps coming is not cut),
``ConnectionClosedError`` (the server closed the connection, answered what is not
HTTP/1.x, or the pool is closed), ``SSLError``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import urlsplit

from botocore import exceptions as boto_errors  # type: ignore[import-untyped]

_MAX_HEAD_BYTES: Final = 64 * 1024  # a response head longer than this is not SQS's
# A response body longer than this is not SQS's either (10 messages of 1 MiB, in JSON).
_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
#: An idle connection older than this is not reused (aiohttp's default keep-alive).
IDLE_TIMEOUT_S: Final = 12.0
_CRLF: Final = b"\r\n"


class ResponseError(Exception):
    """What the server sent is not an HTTP/1.x response this client reads."""


class _Response:
    """A response being read: its head, then its body (by Content-Length, chunked, or
    until the connection closes)."""

    __slots__ = ("body", "done", "headers", "keep_alive", "status")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.keep_alive = True
        self.done: asyncio.Future[None] = loop.create_future()


class _Connection(asyncio.Protocol):
    """One connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.last_read_at = 0.0  # the event loop's time of the last bytes (or the request)
        self._buffer = bytearray()
        self._body = bytearray()  # a chunked body, as its chunks come
        self._response: _Response | None = None
        self._head_done = False
        self._length: int | None = None  # None: chunked, or until the connection closes
        self._chunked = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None:  # bytes nobody asked for: this connection is not reusable
            self.close()
            return
        self.last_read_at = self._loop.time()
        self._buffer += data
        try:
            self._parse(response)
        except ResponseError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self.closed = True
        response = self._response
        ends_body = self._head_done and self._length is None and not self._chunked
        if response is not None and ends_body:
            response.body = bytes(self._buffer)  # a body that ends with the connection
            response.keep_alive = False
            self._finish(response)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._response is not None:
            self._fail(exc or ResponseError("the server closed the connection"))

    # -- a request ---------------------------------------------------------------------

    def send(self, request: bytes) -> _Response:
        """Write ``request``; the response it is answered with, being read."""
        assert self.transport is not None
        assert self._response is None
        response = self._response = _Response(self._loop)
        self._buffer.clear()
        self._body.clear()
        self._head_done = False
        self._length = None
        self._chunked = False
        self.last_read_at = self._loop.time()
        self.transport.write(request)
        return response

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self, response: _Response) -> None:
        buffer = self._buffer
        while not self._head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD_BYTES:
                    raise ResponseError("the response's head is too long")
                return
            self._read_head(response, bytes(buffer[:end]))
            del buffer[: end + 4]
            # an interim response (100 Continue): the real one follows, read in turn
            self._head_done = not 100 <= response.status < 200
        if len(buffer) + len(self._body) > _MAX_BODY_BYTES:
            raise ResponseError("the response's body is too long")
        if self._chunked:
            self._read_chunks(response)
        elif self._length is not None and len(buffer) >= self._length:
            if len(buffer) > self._length:  # more than the body: not a server to reuse
                response.keep_alive = False
            response.body = bytes(buffer[: self._length])
            self._finish(response)

    def _read_head(self, response: _Response, head: bytes) -> None:
        """Read a head into ``response`` (replacing an interim one's) and decide how its
        body ends. Raises ResponseError."""
        response.headers = {}
        self._length, self._chunked = None, False
        lines = head.split(_CRLF)
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise ResponseError("the response is not HTTP/1.x")
        try:
            response.status = int(status_line[1])
        except ValueError:
            raise ResponseError("the response's status is not a number") from None
        headers = response.headers
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise ResponseError("a response header has no ':'")
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
        connection = headers.get("connection", "").lower()
        response.keep_alive = connection != "close" and status_line[0] != b"HTTP/1.0"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            length = headers["content-length"]
            if not (length.isascii() and length.isdigit()):
                raise ResponseError("the response's Content-Length is not a number")
            self._length = int(length)
            if self._length > _MAX_BODY_BYTES:
                raise ResponseError("the response's body is too long")
        elif response.status in (204, 304):
            self._length = 0
        else:
            response.keep_alive = False  # the body ends with the connection

    def _read_chunks(self, response: _Response) -> None:
        buffer, body = self._buffer, self._body
        while (line_end := buffer.find(_CRLF)) >= 0:
            size_text = bytes(buffer[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ResponseError("a chunk's size is not a number") from None
            if size < 0:
                raise ResponseError("a chunk's size is not a number")
            if size == 0:  # the last chunk, then trailers up to an empty line
                end = buffer.find(b"\r\n\r\n", line_end)
                if end < 0:
                    return
                if len(buffer) > end + 4:  # more than the response: not a server to reuse
                    response.keep_alive = False
                response.body = bytes(body)
                self._finish(response)
                return
            start = line_end + 2
            if len(buffer) < start + size + 2:
                return
            if buffer[start + size : start + size + 2] != _CRLF:
                raise ResponseError("a chunk does not end where its size says")
            body += buffer[start : start + size]
            del buffer[: start + size + 2]

    def _finish(self, response: _Response) -> None:
        self._response = None
        if not response.done.done():
            response.done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        response, self._response = self._response, None
        self.close()
        if response is not None and not response.done.done():
            response.done.set_exception(exc)


class HTTP11Pool:
    """Keep-alive connections to the origin of ``url`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None,
        connect_timeout_s: float | None,
        read_timeout_s: float | None,
        max_connections: int,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl_context if parts.scheme == "https" else None
        if parts.scheme == "https" and self._ssl is None:  # verify=False: no checks
            self._ssl = ssl.create_default_context()
            self._ssl.check_hostname = False
            self._ssl.verify_mode = ssl.CERT_NONE
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._idle: deque[_Connection] = deque()
        self._closed = False
        self._slots = asyncio.Semaphore(max_connections)
        self._open: set[_Connection] = set()

    def __repr__(self) -> str:
        return f"HTTP11Pool(url={self.url!r}, open={len(self._open)})"

    @property
    def open_connections(self) -> int:
        """Connections made and not yet dropped (idle or in use)."""
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        """Connections kept for the next requests, not counting those the server has
        closed since (they are dropped when next looked at)."""
        return sum(1 for connection in self._idle if not connection.closed)

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request (``target``: the path and query; ``headers`` without
        Content-Length, which is added); its status, headers (names in lower case) and
        body. Raises botocore's connection exceptions (see the module docstring)."""
        head = [f"{method} {target} HTTP/1.1"]
        head.extend(f"{name}: {value}" for name, value in headers)
        head.append(f"Content-Length: {len(body)}\r\n\r\n")
        request = "\r\n".join(head).encode("latin-1") + body
        async with self._slots:
            connection = await self._connection()
            response = connection.send(request)
            try:
                await self._response_of(connection, response)
            except TimeoutError as exc:
                self._discard(connection)
                raise boto_errors.ReadTimeoutError(endpoint_url=self.url, error=exc) from None
            except ResponseError as exc:
                self._discard(connection)
                raise boto_errors.ConnectionClosedError(
                    error=exc, request=None, endpoint_url=self.url
                ) from None
            except OSError as exc:
                self._discard(connection)
                raise boto_errors.ConnectionClosedError(
                    error=exc, request=None, endpoint_url=self.url
                ) from None
            except BaseException:  # cancelled mid-request: the connection's state is unknown
                response.done.cancel()  # nobody reads it now
                self._discard(connection)
                raise
            if response.keep_alive and not connection.closed:
                connection.idle_since = self._clock()
                self._idle.append(connection)
            else:
                self._discard(connection)
            return response.status, response.headers, response.body

    async def _response_of(self, connection: _Connection, response: _Response) -> None:
        """Wait for ``response``, whose bytes may take long in all: TimeoutError only when
        none came for the read timeout (a timeout per read, as aiohttp's ``sock_read``)."""
        timeout_s = self._read_timeout_s
        if timeout_s is None:
            await response.done
            return
        wait_s = timeout_s
        while True:
            finished, _ = await asyncio.wait((response.done,), timeout=wait_s)
            if finished:
                response.done.result()  # raises what the connection failed with
                return
            quiet_s = self._loop_time() - connection.last_read_at
            if quiet_s >= timeout_s:
                response.done.cancel()
                raise TimeoutError(f"no byte of the response for {timeout_s:g} s")
            wait_s = timeout_s - quiet_s

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()

    async def aclose(self) -> None:
        """Close every connection; a request after this raises ConnectionClosedError."""
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()

    async def _connection(self) -> _Connection:
        """An idle connection the server has not closed and that has not idled past the
        idle timeout (servers drop those, perhaps just as a request goes out), else a
        new one."""
        stale_before = self._clock() - self._idle_timeout_s
        while self._idle:
            connection = self._idle.pop()  # the most recent: the least likely timed out
            transport = connection.transport
            if (
                not connection.closed
                and transport is not None
                and not transport.is_closing()
                and connection.idle_since > stale_before
            ):
                return connection
            self._discard(connection)
        return await self._connect()

    async def _connect(self) -> _Connection:
        if self._closed:
            raise boto_errors.ConnectionClosedError(
                error=RuntimeError("the connection pool is closed"),
                request=None,
                endpoint_url=self.url,
            )
        loop = asyncio.get_running_loop()
        try:
            connecting = loop.create_connection(
                lambda: _Connection(loop),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            )
            if self._connect_timeout_s is None:
                _, protocol = await connecting
            else:
                _, protocol = await asyncio.wait_for(connecting, self._connect_timeout_s)
        except TimeoutError as exc:
            raise boto_errors.ConnectTimeoutError(endpoint_url=self.url, error=exc) from None
        except ssl.SSLError as exc:
            raise boto_errors.SSLError(endpoint_url=self.url, error=exc) from None
        except OSError as exc:
            raise boto_errors.EndpointConnectionError(endpoint_url=self.url, error=exc) from None
        self._open.add(protocol)
        return protocol

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)
