"""Drive the real ``aiosqsq`` command in subprocesses, with bounded waits.

``run_cli`` runs it to completion; ``CliProcess`` keeps it running and lets a test wait for
log lines (it synchronises on what the process says, never on sleeps) and send signals.
Every process is stopped on exit: SIGTERM, then SIGKILL. Workers of a killed supervisor
stop by themselves when their standard input closes. ``MoveTaskProxy`` stands in front of
moto for the SQS calls moto lacks.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.helpers import slow

AIOSQSQ = [sys.executable, "-m", "aiosqsq"]
APPS_DIR = Path(__file__).parent / "apps"
RUN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

_TEXT_LINE = re.compile(
    r"^\S+ \S+ (?P<level>[A-Z]+) +\[(?P<pid>\d+)\] (?P<logger>[\w.]+): (?P<message>.*)$"
)


@dataclass(frozen=True)
class Record:
    """One text log line: level, pid, logger and message."""

    level: str
    pid: int
    logger: str
    message: str


def records(output: str) -> list[Record]:
    """The log lines in ``output`` (tracebacks and other lines are skipped)."""
    found = []
    for line in output.splitlines():
        match = _TEXT_LINE.match(line)
        if match:
            found.append(
                Record(match["level"], int(match["pid"]), match["logger"], match["message"])
            )
    return found


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # os.environ is free of QUEUE_*/AWS_* here: tests/conftest.py removes them.
    return {**os.environ, **(extra or {})}


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
    python_flags: tuple[str, ...] = (),
    stdin_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m aiosqsq ARGS`` in the current directory until it exits; with
    ``stdin_text``, that is its standard input."""
    command = [AIOSQSQ[0], *python_flags, *AIOSQSQ[1:], *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=slow(timeout_s),
        env=cli_env(env),
        check=False,
        input=stdin_text,
    )


class CliProcess:
    """``python -m aiosqsq ARGS`` running in the background; stdout and stderr merged."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*AIOSQSQ, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=cli_env(env),
        )
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self._lines)

    def records(self) -> list[Record]:
        return records(self.output)

    def wait_for(self, pattern: str, *, count: int = 1, timeout_s: float = 30.0) -> list[str]:
        """Wait until ``count`` lines match the regex ``pattern``; return the matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + slow(timeout_s)
        with self._changed:
            while True:
                matches = [line for line in self._lines if regex.search(line)]
                if len(matches) >= count:
                    return matches
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:  # at end of output no line can come any more
                    raise AssertionError(
                        f"{count} line(s) matching {pattern!r} not seen in {timeout_s} s; "
                        f"output:\n" + "\n".join(self._lines)
                    )
                self._changed.wait(remaining)

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """The exit code, once the process and every worker writing to its pipe are done."""
        code = self.process.wait(timeout=slow(timeout_s))
        self._reader.join(slow(timeout_s))
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        self._reader.join(STOP_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> CliProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()


def wait_for_lines(path: Path, count: int, *, timeout_s: float = 60.0) -> list[str]:
    """Wait (bounded) until the file at ``path`` has ``count`` lines: progress only the
    worker processes can bring, so there is no event to wait on but the file."""
    deadline = time.monotonic() + slow(timeout_s)
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has {len(lines)} lines after {timeout_s} s, not {count}")
        time.sleep(0.05)


class MoveTaskProxy:
    """An HTTP proxy on 127.0.0.1 in front of moto that answers the two message move task
    calls moto lacks (``ListMessageMoveTasks`` with ``tasks``, ``StartMessageMoveTask`` with
    a handle) and forwards every other request to ``upstream``. ``calls`` records the
    answered ones as (operation, request parameters). Stop it with :meth:`close`."""

    HANDLE = "move-task-handle-1"

    def __init__(self, upstream: str, tasks: Sequence[Mapping[str, object]] = ()) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                if operation == "ListMessageMoveTasks":
                    proxy.calls.append((operation, json.loads(body)))
                    self._answer(200, json.dumps({"Results": list(tasks)}).encode())
                elif operation == "StartMessageMoveTask":
                    proxy.calls.append((operation, json.loads(body)))
                    self._answer(200, json.dumps({"TaskHandle": proxy.HANDLE}).encode())
                else:
                    self._answer(*_forward(upstream + self.path, body, dict(self.headers.items())))

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_TIMEOUT_S)


def _forward(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
    skip = {"host", "content-length", "connection"}
    kept = {name: value for name, value in headers.items() if name.lower() not in skip}
    request = urllib.request.Request(url, data=body, headers=kept, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=RUN_TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
