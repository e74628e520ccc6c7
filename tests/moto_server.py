"""moto's SQS server in a subprocess on 127.0.0.1, with requests serialised.

``start_moto_server()`` runs this module as a child process, which serves moto's WSGI app
(``DomainDispatcherApplication(create_backend_app)``, what ``moto_server`` serves) with
cheroot, a keep-alive WSGI server, on a port the kernel picks, and prints that port.
``MotoServer.stop()`` ends the child by its process id: SIGTERM, then SIGKILL after a bounded
wait. The child also exits when its stdin closes, so a killed test run leaves no server
behind.

What the setup guarantees, and why it differs from ``moto_server``:

* **One request at a time.** Stock moto on werkzeug's threaded server can lose concurrent
  deletes and hand one message to two receivers (moto rebuilds its message lists without a
  lock). Here every request runs moto's code under one process-wide lock, and the response
  body is read out before the lock is released, so each SQS call is atomic: a message is
  received by exactly one ReceiveMessage while it is visible, and a confirmed delete stays
  deleted. Exact-count tests can rely on that; duplicates seen with this server come from
  SQS semantics (visibility timeouts expiring), not from races in the server. The lock and
  the long-poll wait below are ``aiosqsq.cli.local_server``'s, which ``run --local`` uses.
* **Long polls do not block the server.** A ReceiveMessage that finds nothing waits on the
  same lock's condition (moto's ``Queue.wait_for_messages`` is replaced to do so), which
  releases the lock while waiting; every completed request wakes the waiters, which scan
  the queue again under the lock. Waiters also re-scan every 0.1 s, so messages whose
  visibility timeout or delay ran out are seen promptly. A waiting long poll keeps its
  cheroot worker thread, so the pool is grown to keep spare workers (``_PoolKeeper``).
* **Fast enough to drain thousands of messages.** Connections are kept alive (werkzeug,
  what ``moto_server`` uses, closes every one: ~2.5-3 ms a call here), and moto's
  O(queue length) hot spots are replaced in the child (below). Measured from aiobotocore
  on 2 cores: SendMessageBatch(10) ~3.5 ms, ReceiveMessage(10) + DeleteMessageBatch(10)
  ~5-7 ms whether 200 or 5,000 messages are queued, about 1,300-1,600 messages/s for one
  sequential consumer (stock moto on werkzeug: ~26 ms and ~75 ms with 200 queued, ~100 ms
  and ~400 ms with 1,000). What is left is aiobotocore's own CPU (~1-1.5 ms a call),
  cheroot (~0.4 ms a request) and moto's generic request parsing and response
  serialisation (~0.4 ms a request, ~0.7 ms for a ReceiveMessage of 10).
* Still moto: see the README's "The local emulator's limits" for the fidelity gaps (stale
  receipt handles accepted, no throttling, no ReceiveRequestAttemptId, sizes in characters).

moto hot spots replaced in the child (``_patch_moto_hot_spots``, numbered as there). Each
gives the same answers as moto; the child refuses to start if what they replace is gone.

1. ``unix_time``/``unix_time_millis`` in ``moto.sqs.models`` read ``time.time()``: moto
   built two datetimes per reading, and reads the clock twice per message per scan.
2. Receipt handles are still 185 random lowercase letters from moto's seedable random,
   drawn as 185 bytes at once instead of by 185 ``choice()`` calls.
3. The copy of each received message that moto filters and returns is shallow, not deep
   (the filter replaces the copy's message attributes; the response only reads it).
4. ``Queue.messages`` is walked lazily with one clock reading: ReceiveMessage stops after
   the count it wants instead of first listing every visible message.
5. Receipt handles are indexed, so DeleteMessage(Batch) and ChangeMessageVisibility(Batch)
   find their message without two scans of the queue (misses fall back to the scan).
6. The retention check of each received message reads the queue's retention period, not
   every attribute of the queue (three message counts) three times.
7. While a SendMessage(Batch) runs, the queue's attributes leave out the three message
   counts (moto reads only ContentBasedDeduplication there, once or more per message).
8. moto's dispatcher lists its own package directory (one ``stat`` per service) twice per
   request: it is listed once.
9. The response class's method names are listed once per class, not per request with
   ``inspect.getmembers()``.

And, shared with ``run --local`` (``aiosqsq.cli.local_server.busy_groups_in_flight_only``):
a FIFO group counts as busy only while one of its messages is really in flight (a fidelity
fix, not a speed-up: moto could return a group's last message first).
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
_MIN_WORKERS = 8  # cheroot worker threads at start; _PoolKeeper adds more for long polls
_SPARE_WORKERS = 4  # idle workers kept while long polls wait
_LISTEN_BACKLOG = 128  # a client pool opening many connections at once is not refused
_IDLE_TIMEOUT_S = 60  # above aiobotocore's 12 s keep-alive: the client closes idle ones first
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


class _PoolKeeper:
    """Grows cheroot's worker pool so that waiting long polls never hold every worker.

    cheroot hands each request to a worker from a pool that does not grow by itself; a long
    poll keeps its worker while it waits. Before a long poll waits it calls
    ``ensure_spares()``, and this keeper's thread (not the poll, which holds the lock)
    adds workers until ``_SPARE_WORKERS`` are idle again."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._wanted = threading.Event()

    def _spares(self) -> int:
        return int(self._pool.idle) - int(self._pool.qsize)

    def ensure_spares(self) -> None:
        if self._spares() < _SPARE_WORKERS:
            self._wanted.set()

    def run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            while (missing := _SPARE_WORKERS - self._spares()) > 0:
                self._pool.grow(missing)


# moto's O(queue length) hot spots, replaced in the child only; each keeps moto's behaviour
# (see "moto hot spots" in the module docstring). All run under the serialising lock.

_COUNT_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
)
_PATCHED = {  # what the patches below replace or rely on, by owner in moto
    "sqs.models": ("unix_time", "unix_time_millis", "generate_receipt_handle", "deepcopy"),
    "sqs.models.Queue": (
        "BASE_ATTRIBUTES",
        "attributes",
        "messages",
        "approximate_number_of_messages",
        "delete_message",
    ),
    "sqs.models.Message": ("mark_received", "had_receipt_handle", "all_receipt_handles"),
    "sqs.models.SQSBackend": (
        "send_message",
        "send_message_batch",
        "change_message_visibility",
        "is_message_valid_based_on_retention_period",
    ),
    "backends": ("list_of_moto_modules",),
    "core.responses": ("method_names_from_class",),
}


def _patch_moto_hot_spots(models: Any, moto_backends: Any, moto_responses: Any) -> None:
    import copy
    import functools
    import weakref

    owners = {
        "sqs.models": models,
        "sqs.models.Queue": models.Queue,
        "sqs.models.Message": models.Message,
        "sqs.models.SQSBackend": models.SQSBackend,
        "backends": moto_backends,
        "core.responses": moto_responses,
    }
    for owner, names in _PATCHED.items():
        if lacking := [name for name in names if not hasattr(owners[owner], name)]:
            raise SystemExit(f"moto.{owner} lacks {lacking}: update tests/moto_server.py")
    if not set(_COUNT_ATTRIBUTES) <= set(models.Queue.BASE_ATTRIBUTES):
        raise SystemExit("moto.sqs.models.Queue.BASE_ATTRIBUTES changed: update this module")

    stock_unix_time, stock_unix_time_millis = models.unix_time, models.unix_time_millis
    stock_mark_received = models.Message.mark_received
    stock_send_message = models.SQSBackend.send_message
    stock_send_message_batch = models.SQSBackend.send_message_batch
    random = models.random
    to_letters = bytes.maketrans(
        bytes(range(256)), (models.string.ascii_lowercase.encode() * 10)[:256]
    )
    handles: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
    queue_attributes_without_counts = [
        name for name in models.Queue.BASE_ATTRIBUTES if name not in _COUNT_ATTRIBUTES
    ]

    # 1. The clock: the same wall clock (UTC seconds or ms since the epoch), from
    #    time.time() instead of building two datetimes per reading.
    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(stock_unix_time(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(stock_unix_time_millis(dt))

    models.unix_time, models.unix_time_millis = unix_time, unix_time_millis

    # 2. Receipt handles: still 185 lowercase letters from moto's seedable random, from 185
    #    random bytes mapped onto the alphabet instead of 185 choice() calls (a-v are then
    #    drawn 10 times in 256, w-z 9 times: still 185 * 4.7 bits, never reused).
    models.generate_receipt_handle = lambda: random.randbytes(185).translate(to_letters).decode()

    # 3. The copy of each received message that moto filters and returns: shallow, since
    #    the filter replaces its message_attributes and the response only reads it. Other
    #    deepcopy() calls in moto.sqs.models stay deep.
    def deepcopy(value: Any, memo: Any = None) -> Any:
        if type(value) is models.Message:
            return copy.copy(value)
        return copy.deepcopy(value, memo)

    models.deepcopy = deepcopy

    # 4. Visible messages: moto's ReceiveMessage walks queue.messages, a list of every
    #    visible message built first, and stops after the count asked for; read lazily
    #    instead, with one clock reading, it walks only the in-flight head of the queue and
    #    the messages it returns. The walk does not reorder or remove messages (dead-letter
    #    moves happen after it) and re-checks visibility itself. Its only other reader,
    #    ApproximateNumberOfMessages, counts the same messages.
    def messages(self: Any) -> Iterator[Any]:
        now = unix_time_millis()
        return (m for m in self._messages if now > m.visible_at and now >= m.delayed_until)

    def approximate_number_of_messages(self: Any) -> int:
        return sum(1 for _ in self.messages)

    models.Queue.messages = property(messages)
    models.Queue.approximate_number_of_messages = property(approximate_number_of_messages)

    # 5. Receipt handle -> message index, so DeleteMessage and ChangeMessageVisibility find
    #    the message without scanning the queue (moto scans it, building a list per
    #    message, twice per delete). Every handle ever issued stays valid, as in moto; an
    #    index miss falls back to moto's scan.
    def mark_received(self: Any, visibility_timeout: int | None = None) -> None:
        stock_mark_received(self, visibility_timeout)
        handles[self.receipt_handle] = self

    def message_with_handle(queue: Any, receipt_handle: str) -> Any:
        message = handles.get(receipt_handle)
        if message is not None and message in queue._messages:  # identity: no Message.__eq__
            return message
        for message in queue._messages:
            if message.had_receipt_handle(receipt_handle):
                return message
        return None

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # already deleted: moto accepts it again
        message = message_with_handle(self, receipt_handle)
        if message is None:
            raise models.ReceiptHandleIsInvalid()
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)
        remaining = list(self._messages)
        remaining.remove(message)
        self._messages = remaining

    def change_message_visibility(
        self: Any, queue_name: str, receipt_handle: str, visibility_timeout: int
    ) -> None:
        # moto's method, with the lookup of step 5 instead of a scan.
        queue = self.get_queue(queue_name)
        message = message_with_handle(queue, receipt_handle)
        if message is None:
            raise models.ReceiptHandleIsInvalid
        visibility_timeout_msec = int(visibility_timeout) * 1000
        given_visibility_timeout = unix_time_millis() + visibility_timeout_msec
        if given_visibility_timeout - message.sent_timestamp > 43200 * 1000:
            raise models.InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. "
                "Reason: Total VisibilityTimeout for the message is beyond the limit "
                "[43200 seconds]"
            )
        message.change_visibility(visibility_timeout)
        if message.visible and message in queue.pending_messages:
            queue.pending_messages.remove(message)

    models.Message.mark_received = mark_received
    models.Queue.delete_message = delete_message
    models.SQSBackend.change_message_visibility = change_message_visibility

    # 6. The retention check of each received message reads the retention period itself;
    #    moto rebuilt every queue attribute (three message counts) three times for it.
    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        retention_period = self.get_queue(queue_name).message_retention_period
        return bool(retention_period + message.sent_timestamp / 1000 > unix_time())

    models.SQSBackend.is_message_valid_based_on_retention_period = (
        is_message_valid_based_on_retention_period
    )

    # 7. Sending reads queue.attributes only for ContentBasedDeduplication, once or more per
    #    message, and each read counted the queue's messages three times: while a send
    #    runs, the queue's attributes leave out the three counts it never reads.
    @contextlib.contextmanager
    def counts_left_out(backend: Any, queue_name: str) -> Iterator[None]:
        queue = backend.queues.get(queue_name)
        if (
            queue is None
            or "BASE_ATTRIBUTES" in vars(queue)
            or getattr(queue, "lambda_event_source_mappings", None)
        ):
            # No such queue (moto raises), already left out (a batch's sends), or a Lambda
            # event source mapping, whose receive may wait and so let other requests in.
            yield
            return
        queue.BASE_ATTRIBUTES = queue_attributes_without_counts  # shadows the class's
        try:
            yield
        finally:
            del queue.BASE_ATTRIBUTES

    def send_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        with counts_left_out(self, queue_name):
            return stock_send_message(self, queue_name, *args, **kwargs)

    def send_message_batch(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        with counts_left_out(self, queue_name):
            return stock_send_message_batch(self, queue_name, *args, **kwargs)

    models.SQSBackend.send_message = send_message
    models.SQSBackend.send_message_batch = send_message_batch

    # 8. moto's dispatcher asks, twice per request, whether the host names a moto module,
    #    listing moto's package directory each time (one stat per service): list it once.
    modules = tuple(moto_backends.list_of_moto_modules())
    moto_backends.list_of_moto_modules = lambda: modules

    # 9. moto looks up the action's method among the response class's methods, listed by
    #    inspect.getmembers() on every request: list each class's methods once.
    method_names = functools.lru_cache(maxsize=None)(moto_responses.method_names_from_class)
    moto_responses.method_names_from_class = method_names


def _exit_when_parent_goes() -> None:
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass
    os._exit(0)


def _serve() -> None:
    import moto.backends
    import moto.core.responses
    import moto.sqs.models
    from cheroot import wsgi

    from aiosqsq.cli.local_server import (
        Serialised,
        busy_groups_in_flight_only,
        moto_app,
        wait_on_lock,
    )

    _patch_moto_hot_spots(moto.sqs.models, moto.backends, moto.core.responses)
    busy_groups_in_flight_only()

    os.environ.pop("LISTEN_PID", None)  # else cheroot serves an inherited fd 3 (systemd)
    server = wsgi.Server(
        (HOST, 0),
        Serialised(moto_app()),
        numthreads=_MIN_WORKERS,
        request_queue_size=_LISTEN_BACKLOG,
        timeout=_IDLE_TIMEOUT_S,
    )
    server.keep_alive_conn_limit = None  # type: ignore[assignment]  # None: no limit (documented)
    server.prepare()  # binds and listens: bind_addr now holds the port the kernel chose
    port = server.bind_addr[1]
    os.environ["MOTO_PORT"] = str(port)

    keeper = _PoolKeeper(server.requests)
    wait_on_lock(before_wait=keeper.ensure_spares)
    threading.Thread(target=keeper.run, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    server.serve()


if __name__ == "__main__":
    _serve()
