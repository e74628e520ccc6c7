"""An HTTP proxy on 127.0.0.1 in front of moto's S3, for the faults S3 itself would give:
``deny`` answers every GET or HEAD of a path under the given ``bucket/prefix`` strings
with S3's 403 AccessDenied, and
``hold_deletes`` holds each DeleteObjects request unanswered (``delete_held`` is set once
one arrives) until :meth:`S3Proxy.close`, ``fail_deletes`` answers each with a 500
(``delete_requests`` counts them), and ``fail_gets`` answers that many GetObject requests
with a 503 SlowDown before forwarding the rest. Everything else is forwarded as it came."""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable

_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)
_INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOLD_LIMIT_S = 60.0  # a held request is answered by close(), or after this at the latest


class S3Proxy:
    def __init__(
        self,
        upstream: str,
        *,
        deny: Iterable[str] = (),
        hold_deletes: bool = False,
        fail_deletes: bool = False,
        fail_gets: int = 0,
    ) -> None:
        self.gets_failed = 0
        self.delete_held = threading.Event()
        self.delete_requests = 0
        self._release = threading.Event()
        denied = tuple(f"/{where}" for where in deny)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self._body()
                if self.command in ("GET", "HEAD") and denied and self.path.startswith(denied):
                    self._answer(403, _DENIED)
                    return
                if self.command == "GET" and proxy.gets_failed < fail_gets:
                    proxy.gets_failed += 1
                    self._answer(503, _SLOW_DOWN)
                    return
                if self.command == "POST" and "delete" in self.path.split("?", 1)[-1]:
                    proxy.delete_requests += 1
                    if fail_deletes:
                        self._answer(500, _INTERNAL)
                        return
                    if hold_deletes:
                        proxy.delete_held.set()
                        proxy._release.wait(_HOLD_LIMIT_S)
                        self._answer(503, b"")
                        return
                self._forward(upstream + self.path, body)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length", "0"))
                return self.rfile.read(length) if length else b""

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

            def _forward(self, url: str, body: bytes) -> None:
                skip = {"host", "content-length", "connection", "expect"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                # else urllib sends a form's content type, and moto reads the body as a form
                headers.setdefault("Content-Type", "application/octet-stream")
                request = urllib.request.Request(
                    url, data=body or None, headers=headers, method=self.command
                )
                try:
                    with urllib.request.urlopen(request, timeout=_HOLD_LIMIT_S) as response:
                        self._answer(response.status, response.read(), response.headers.items())
                except urllib.error.HTTPError as exc:
                    self._answer(exc.code, exc.read(), exc.headers.items())

            def _answer(
                self, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()
            ) -> None:
                self.send_response(status)
                length = str(len(body))
                for name, value in headers:
                    if name.lower() == "content-length" and self.command == "HEAD":
                        length = value  # the object's size, not the empty body's
                    elif name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(_HOLD_LIMIT_S)
