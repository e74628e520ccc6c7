"""``/metrics``, ``/livez`` and ``/readyz``: a small HTTP server on a thread of its own,
and the same endpoints as an ASGI app to mount in a web service.

The server runs on its own thread, not on the event loop: a probe is answered (503)
while a handler blocks the loop, which is when it matters. It serves GET and HEAD on
the three paths and nothing else; bodies are plain text.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from aiosqsq.observability.health import Verdict

PATHS: Final = ("/metrics", "/livez", "/readyz")
_TEXT: Final = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """What the paths answer: ``metrics()`` returns (content type, body), or None when
    metrics are off; ``health()`` returns (liveness, readiness)."""

    metrics: Callable[[], tuple[str, bytes]] | None
    health: Callable[[], tuple[Verdict, Verdict]]

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path``."""
        path = path.split("?", 1)[0]
        if path == "/metrics":
            if self.metrics is None:
                return 404, _TEXT, b"metrics are off (QUEUE_METRICS=off, or no prometheus-client)\n"
            content_type, body = self.metrics()
            return 200, content_type, body
        if path in ("/livez", "/readyz"):
            live, ready = self.health()
            verdict = live if path == "/livez" else ready
            return (200 if verdict.ok else 503), _TEXT, f"{verdict.reason}\n".encode()
        return 404, _TEXT, b"not found: /metrics, /livez and /readyz are served\n"


class HTTPEndpoint:
    """Serves ``endpoints`` on ``host:port`` from a daemon thread until :meth:`close`.

    Raises OSError when the address cannot be bound (in use, not permitted).
    """

    def __init__(self, endpoints: Endpoints, host: str, port: int) -> None:
        handler = _handler_class(endpoints)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aiosqsq-http", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _handler_class(endpoints: Endpoints) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "aiosqsq"

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, *, body: bool) -> None:
            status, content_type, payload = endpoints.answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes every few seconds: not logged."""

    return Handler


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def asgi_app(endpoints: Endpoints) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app answering the three paths (mount it at the root of a sub-path)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, root = scope.get("path", "/"), scope.get("root_path", "")
        if root and path.startswith(root):  # mounted under a prefix
            path = path[len(root) :] or "/"
        status, content_type, payload = endpoints.answer(path)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app
