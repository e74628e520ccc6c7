"""moto's SQS server on 127.0.0.1, one request at a time, for ``aiosqsq run --local``.

Stock moto on a threaded server races: it rebuilds a queue's message list without a lock, so
two concurrent receives can both get one message and a confirmed delete can come back.
Here every request runs moto's code under one process-wide lock (``Serialised``), its
response body read out before the lock is released, so each SQS call is atomic: a visible
message goes to exactly one ReceiveMessage, and a deleted one stays deleted.

A long poll that finds nothing must not hold that lock for its whole wait:
``wait_on_lock()`` replaces moto's ``Queue.wait_for_messages`` (which moto's receive loop
calls while it holds the lock here) with a wait on the lock's condition. Every completed
request wakes the waiters, which scan again; they also re-scan every 0.1 s, so messages
whose visibility timeout or delay ran out are seen promptly.

``busy_groups_in_flight_only()`` mends moto's FIFO group blocking (its docstring says how).

``LoopbackOnly`` keeps the server to what a run needs: any web page open on this machine
can send requests to 127.0.0.1, so moto's own API (``/moto-api/``: reset, state), requests
for another Host and the CORS headers that would let a page read the answers are refused.

The test suite's server (tests/moto_server.py) serves the same two pieces with a keep-alive
WSGI server in a child process.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

from aiosqsq.errors import ConfigurationError

HOST: Final = "127.0.0.1"
MISSING_MOTO: Final = "--local needs moto, which is not installed: pip install 'aiosqsq[local]'"
WAKE_INTERVAL_S: Final = 0.1  # how often an idle long poll re-scans for expired visibility
_STOP_TIMEOUT_S: Final = 5.0

_LOCK = threading.Condition()

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Serialised:
    """WSGI middleware: run the wrapped app one request at a time, body included."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with _LOCK:
            try:
                body = self._app(environ, start_response)
                try:
                    return list(body)
                finally:
                    close = getattr(body, "close", None)
                    if close is not None:
                        close()
            finally:
                _LOCK.notify_all()  # state may have changed: waiting long polls re-scan


def wait_on_lock(before_wait: Callable[[], None] | None = None) -> None:
    """Make moto's long polls wait on ``Serialised``'s lock, releasing it meanwhile.

    ``before_wait`` runs first on each wait (the tests' server grows its worker pool there).
    Raises ``ConfigurationError`` when the installed moto no longer has the method."""
    from moto.sqs.models import Queue

    if not hasattr(Queue, "wait_for_messages"):
        raise ConfigurationError(
            "this moto version has no Queue.wait_for_messages: --local cannot serve it"
        )

    def wait_for_messages(self: Any, timeout: int) -> None:
        if before_wait is not None:
            before_wait()
        _LOCK.wait(timeout=min(timeout, WAKE_INTERVAL_S))

    Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]


def busy_groups_in_flight_only() -> None:
    """Make moto count a FIFO group as busy only while one of its messages is in flight.

    moto also counted messages handed back (or past their visibility timeout) that were
    still on its pending list; its receive then takes them off one by one, skipping the
    group's messages meanwhile, and returns the group's last message first: FIFO order
    broken."""
    from moto.sqs.models import Queue

    if not hasattr(Queue, "pending_message_groups"):
        raise ConfigurationError(
            "this moto version has no Queue.pending_message_groups: --local cannot serve it"
        )

    def pending_message_groups(self: Any) -> set[str]:
        return {
            message.group_id
            for message in self._pending_messages
            if message.group_id is not None and not message.visible
        }

    Queue.pending_message_groups = property(pending_message_groups)  # type: ignore[method-assign,assignment]


def moto_app() -> WsgiApp:
    """moto's WSGI app, what ``moto_server`` serves; ``ConfigurationError`` without moto."""
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    except ImportError:
        raise ConfigurationError(MISSING_MOTO) from None
    app: WsgiApp = DomainDispatcherApplication(create_backend_app)
    return app


class LoopbackOnly:
    """WSGI middleware for a server on 127.0.0.1 that serves SQS and nothing else.

    * ``/moto-api/`` (moto's own API: reset, state, seeding) is refused with 403;
    * so is a request whose Host header is not ``authority`` (``127.0.0.1:<port>``, the
      address served): a web page whose domain was made to resolve to 127.0.0.1 (DNS
      rebinding) sends its own domain;
    * no ``Access-Control-*`` header goes out (moto sends ``Access-Control-Allow-Origin``
      for any origin), so a browser shows no web page what the server answers.
    """

    def __init__(self, app: WsgiApp, authority: str) -> None:
        self._app = app
        self.authority = authority

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith("/moto-api"):
            return _forbidden(start_response, "only SQS is served here")
        if environ.get("HTTP_HOST") != self.authority:
            return _forbidden(start_response, f"this server answers to Host: {self.authority}")

        def without_cors(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            return start_response(status, kept, *args)

        return self._app(environ, without_cors)


def _listening(port: int) -> socket.socket:
    """A TCP socket listening on ``HOST``:``port``; ``ConfigurationError`` naming the port
    when it cannot (taken by another program, or privileged)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise ConfigurationError(
            f"the local SQS server cannot listen on {HOST}:{port} ({exc.strerror}): "
            "choose another port, or 0 for a free one"
        ) from None
    return listener


def _forbidden(start_response: Callable[..., Any], reason: str) -> list[bytes]:
    body = f"403 Forbidden: {reason}\n".encode()
    start_response(
        "403 Forbidden",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


class LocalSQS:
    """moto's SQS-compatible server on 127.0.0.1 and ``port`` (0: a port the kernel picks),
    requests serialised, serving from a daemon thread until ``stop()``.

    Raises ``ConfigurationError`` without moto, or when ``port`` cannot be listened on."""

    def __init__(self, port: int = 0) -> None:
        app = moto_app()
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        wait_on_lock()
        busy_groups_in_flight_only()
        guarded = LoopbackOnly(Serialised(app), authority="")
        # Bound here, not in the thread: a failure to bind raises now instead of hanging.
        with _listening(port) as listener:  # werkzeug would print and sys.exit(1) instead
            self._server: Any = make_server(
                HOST,
                port,
                guarded,
                threaded=True,
                request_handler=MotoRequestHandler,
                fd=listener.fileno(),  # duplicated: the server owns its own copy
            )
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        guarded.authority = f"{HOST}:{self._server.port}"  # the port is known now
        self.endpoint_url = f"http://{guarded.authority}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aiosqsq-local-sqs", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(_STOP_TIMEOUT_S)
