"""A TCP (L4) fault proxy on 127.0.0.1: network faults below HTTP, on the byte stream.

Each accepted connection gets its own upstream connection and a pipe each way. Knobs, set
from any thread while it runs:

* ``latency_s``: every chunk waits that long before it is passed on (each direction);
* :meth:`blackhole`: for a window, nothing passes either way and new connections are
  accepted but not served; held bytes flow again when it ends (packets dropped, then
  retransmitted), unless ``reset_after`` resets the held connections instead;
* :meth:`reset_all`: every open connection is closed with a TCP RST (``SO_LINGER`` 0).

``with TcpProxy(port) as proxy`` serves on its own event loop in a background thread
(``asyncio.start_server``) and closes everything on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator

from tests.faults.loop_thread import LoopThread

_CHUNK = 64 * 1024
_POLL_S = 0.02


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.latency_s = 0.0
        self.connections = 0  # accepted so far
        self.resets = 0  # sockets closed with an RST (both ends of a connection count)
        self._blackhole_until = 0.0
        self._reset_after_blackhole = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._thread = LoopThread("the TCP proxy")

    def blackhole(self, seconds: float, *, reset_after: bool = False) -> None:
        """Pass nothing for ``seconds`` from now; then resume, or with ``reset_after``
        reset every connection that was open during the window."""
        self._reset_after_blackhole = reset_after
        self._blackhole_until = time.monotonic() + seconds

    @property
    def blackholed(self) -> bool:
        return time.monotonic() < self._blackhole_until

    def reset_all(self) -> None:
        """Reset every open connection (thread-safe)."""
        self._thread.call_soon(self._reset_open)

    def __enter__(self) -> TcpProxy:
        self._thread.start(self._serving)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.stop()

    @contextlib.asynccontextmanager
    async def _serving(self) -> AsyncIterator[None]:
        self._socket.listen(128)
        server = await asyncio.start_server(self._serve, sock=self._socket)
        async with server:
            yield
            self._reset_open()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if not await self._hold():
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(upstream_writer)
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        except OSError:
            pass
        finally:
            for end in (writer, upstream_writer):
                if end is not None:
                    self._writers.discard(end)
                    end.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(_CHUNK):
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                if not await self._hold():
                    return
                writer.write(chunk)
                await writer.drain()
        except OSError:
            return
        finally:
            if writer.can_write_eof() and not writer.is_closing():
                with contextlib.suppress(OSError):
                    writer.write_eof()

    async def _hold(self) -> bool:
        """Wait out a blackhole; False when the connection was reset after it."""
        held = False
        while self.blackholed:
            held = True
            await asyncio.sleep(_POLL_S)
        if held and self._reset_after_blackhole:
            self._reset_open()
            return False
        return True

    def _reset_open(self) -> None:
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            self.resets += 1
        self._writers.clear()
