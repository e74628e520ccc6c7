"""moto's SQS server in a subprocess on 127.0.0.1, with requests serialised.

``start_moto_server()`` runs this module as a child process, which serves moto's WSGI app
(``DomainDispatcherApplication(create_backend_app)``, what ``moto_server`` serves) with
werkzeug on a port the kernel picks, and prints that port. ``MotoServer.stop()`` ends the
child by its process id: SIGTERM, then SIGKILL after a bounded wait. The child also exits
when its stdin closes, so a killed test run leaves no server behind.

What the setup guarantees, and why it differs from ``moto_server``:

* **One request at a time.** Stock moto on werkzeug's threaded server can lose concurrent
  deletes and hand one message to two receivers (moto rebuilds its message lists without a
  lock). Here every request runs moto's code under one process-wide lock, and the response
  body is read out before the lock is released, so each SQS call is atomic: a message is
  received by exactly one ReceiveMessage while it is visible, and a confirmed delete stays
  deleted. Exact-count tests can rely on that; duplicates seen with this server come from
  SQS semantics (visibility timeouts expiring), not from races in the server.
* **Long polls do not block the server.** A ReceiveMessage that finds nothing waits on the
  same lock's condition (moto's ``Queue.wait_for_messages`` is replaced to do so), which
  releases the lock while waiting; every completed request wakes the waiters, which scan
  the queue again under the lock. Waiters also re-scan every 0.1 s, so messages whose
  visibility timeout or delay ran out are seen promptly.
* Still moto: see /work/shared/reference/moto-notes.md for the fidelity gaps (stale receipt
  handles accepted, no throttling, no ReceiveRequestAttemptId, sizes in characters).
  Werkzeug answers ``Connection: close``, so every call opens a new TCP connection: fine for
  correctness tests, not a throughput substrate.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
_WAKE_INTERVAL_S = 0.1  # how often an idle long poll re-scans for expired visibility/delay
_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class MotoServer:
    """A running moto server child process; ``endpoint_url`` is ``http://127.0.0.1:<port>``."""

    process: subprocess.Popen[bytes]
    endpoint_url: str
    log_path: Path

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the child by its pid: SIGTERM, then SIGKILL if it has not exited in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def reset(self) -> None:
        """Forget every queue and message (moto's ``POST /moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def start_moto_server(timeout_s: float = START_TIMEOUT_S) -> MotoServer:
    """Start the server and return once it answers HTTP, or raise ``RuntimeError`` within
    ``timeout_s`` (the child is stopped and its log quoted)."""
    deadline = time.monotonic() + timeout_s
    log_fd, log_name = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(log_fd, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.moto_server"],
            cwd=_REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env={**os.environ, "PYTHONPATH": str(_REPO_ROOT)},
        )
    server = MotoServer(process, "", log_path)
    try:
        assert process.stdout is not None
        port = _read_port(process.stdout, deadline)
        server.endpoint_url = f"http://{HOST}:{port}"
        _wait_until_answering(server.endpoint_url, deadline)
    except BaseException as exc:
        server.stop()
        raise RuntimeError(f"moto server did not start: {exc}\n{_tail(log_path)}") from exc
    return server


@contextlib.contextmanager
def running_moto_server() -> Iterator[MotoServer]:
    server = start_moto_server()
    try:
        yield server
    finally:
        server.stop()


def _read_port(stdout: IO[bytes], deadline: float) -> int:
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no port announced in time")
        ready, _, _ = select.select([stdout], [], [], remaining)
        if ready:
            chunk = os.read(stdout.fileno(), 64)
            if not chunk:
                raise RuntimeError("the child exited before announcing its port")
            line += chunk
    return int(line.decode().strip())


def _wait_until_answering(endpoint_url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint_url}/moto-api/data.json", timeout=2) as r:
                r.read()
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() >= deadline:
                raise TimeoutError("the server did not answer in time") from None
            time.sleep(0.05)


def _tail(path: Path, max_chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-max_chars:]
    except OSError:
        return ""


# --- the child process ---------------------------------------------------------------

_SERIAL = threading.Condition()


class _Serialised:
    """WSGI middleware: run the wrapped app one request at a time, body included."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with _SERIAL:
            try:
                body = self._app(environ, start_response)
                try:
                    return list(body)
                finally:
                    close = getattr(body, "close", None)
                    if close is not None:
                        close()
            finally:
                _SERIAL.notify_all()  # state may have changed: waiting long polls re-scan


def _wait_for_messages(self: Any, timeout: int) -> None:
    # Called by moto's receive loop while it holds _SERIAL: waiting releases it.
    _SERIAL.wait(timeout=min(timeout, _WAKE_INTERVAL_S))


def _exit_when_parent_goes() -> None:
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass
    os._exit(0)


def _serve() -> None:
    import logging

    import moto.sqs.models
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    if not hasattr(moto.sqs.models.Queue, "wait_for_messages"):
        raise SystemExit("moto.sqs.models.Queue.wait_for_messages is gone: update this module")
    moto.sqs.models.Queue.wait_for_messages = _wait_for_messages  # type: ignore[method-assign]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    app = _Serialised(DomainDispatcherApplication(create_backend_app))
    server = make_server(HOST, 0, app, threaded=True, request_handler=MotoRequestHandler)
    os.environ["MOTO_PORT"] = str(server.port)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    sys.stdout.write(f"{server.port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    _serve()
