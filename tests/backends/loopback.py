"""A loopback HTTP server for tests that play an SQS endpoint."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web


@contextlib.asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    *,
    client_max_size: int = 1024**2,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """Serve ``handler`` for every method and path on 127.0.0.1; yield the endpoint URL
    (``http://127.0.0.1:PORT``, https with ``ssl_context``) and stop the server on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = web.Application(client_max_size=client_max_size)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
