"""The fault tests' worker: a ledger app (``tests/faults/apps/``) under the real
``aiosqsq run`` command on moto, its environment, its start (once it consumes), its
graceful stop, and the counts of its summary line."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from aiosqsq.cli import ExitCode
from tests.cli.harness import CliProcess, records
from tests.faults.ledger import Ledger
from tests.faults.queues import FaultQueues

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LedgerApp:
    """An app ``aiosqsq run`` loads: its target and its handler's name in the log."""

    target: str
    handler: str


# Bodies ``{"seq": n}``; each call lasts HANDLER_MIN_S to HANDLER_MAX_S.
LIFECYCLE = LedgerApp("tests.faults.apps.lifecycle:app", "tests.faults.apps.lifecycle.lifecycle")
# Bodies :func:`order`, validated by a strict pydantic model; STRICT_* knobs make calls fail.
STRICT = LedgerApp("tests.faults.apps.strict:app", "tests.faults.apps.strict.handle")


def order(seq: int, **extra: object) -> str:
    """A body the strict app accepts."""
    return json.dumps({"seq": seq, "sku": f"sku-{seq}", **extra})


def worker_env(endpoint_url: str, queue_url: str, ledger: Path, **knobs: object) -> dict[str, str]:
    """The environment of a ledger app worker on ``queue_url``: ``knobs`` are QUEUE_*
    settings (``concurrency=4`` is ``QUEUE_CONCURRENCY=4``) or, given in capitals, any
    variable (``HANDLER_MIN_S``, ``STRICT_FAIL_SEQS``, ``QUEUE_AWS_SESSION_TOKEN``)."""
    env = {
        "QUEUE_BACKEND": "sqs",
        "QUEUE_SQS_ENDPOINT_URL": endpoint_url,
        "QUEUE_SQS_QUEUE_URL": queue_url,
        "QUEUE_AWS_REGION": "us-east-1",
        "QUEUE_AWS_ACCESS_KEY_ID": "testing",
        "QUEUE_AWS_SECRET_ACCESS_KEY": "testing",
        "QUEUE_WAIT_TIME_SECONDS": "1",
        "LEDGER_PATH": str(ledger),
    }
    for key, value in knobs.items():
        env[key if key.isupper() else f"QUEUE_{key.upper()}"] = str(value)
    return env


class Prepared(NamedTuple):
    url: str  # a new queue
    env: dict[str, str]  # of a worker on it
    sent_at: float  # time.monotonic() when the send began


def prepare(
    queues: FaultQueues,
    ledger: Ledger,
    endpoint_url: str,
    total: int,
    *,
    visibility_timeout_s: int,
    **knobs: object,
) -> Prepared:
    """A lifecycle-app run: a queue with that visibility timeout, holding the ``total``
    messages ``{"seq": 0}`` .. ``{"seq": total - 1}``, and the environment of a worker on
    it (``knobs`` as for :func:`worker_env`)."""
    url = queues.create_with(visibility_timeout_s=visibility_timeout_s)
    sent_at = time.monotonic()
    queues.send_seqs(url, range(total))
    return Prepared(url, worker_env(endpoint_url, url, ledger.path, **knobs), sent_at)


def start_worker(env: Mapping[str, str], *options: str, app: LedgerApp = LIFECYCLE) -> CliProcess:
    """``python -m aiosqsq run <app>`` in the background, once it says it is consuming."""
    worker = CliProcess("run", app.target, "--app-dir", str(ROOT), *options, env=env)
    try:
        worker.wait_for(rf"aiosqsq: consuming \S+ with {re.escape(app.handler)}:", timeout_s=30)
    except BaseException:
        worker.stop()
        raise
    return worker


def stop_worker(worker: CliProcess) -> tuple[int, float]:
    """SIGTERM the running worker; its exit code and the seconds from the signal to its
    exit."""
    assert worker.process.poll() is None, "the worker exited:\n" + worker.output
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait()
    return code, time.monotonic() - signalled


def stop_gracefully(worker: CliProcess) -> float:
    """SIGTERM, then the seconds until exit code 0."""
    code, shutdown_s = stop_worker(worker)
    assert code == ExitCode.OK, worker.output
    return shutdown_s


_PLAN = re.compile(r"consuming \S+ with \S+: .*\bconcurrency=(\d+) pollers=(\d+) ")


def plan(worker: CliProcess) -> tuple[int, int]:
    """The concurrency and pollers the worker said it consumes with (its first
    ``consuming`` line): what it really runs with, defaults resolved."""
    for record in worker.records():
        if match := _PLAN.search(record.message):
            return int(match[1]), int(match[2])
    raise AssertionError(f"no consuming line; output:\n{worker.output}")


_SUMMARY = re.compile(r"stopped after [\d.]+ s: (?P<counts>.*)$")


def summary(worker: CliProcess) -> dict[str, int]:
    """The counts of the worker's last ``stopped after`` line."""
    lines = [r.message for r in worker.records() if _SUMMARY.match(r.message)]
    assert lines, f"no summary line; output:\n{worker.output}"
    match = _SUMMARY.match(lines[-1])
    assert match is not None
    return {
        name: int(value) for name, value in (pair.split("=") for pair in match["counts"].split())
    }


LOST_ACCESS = "lost access to the queue: "  # the operator's line of an exit 5


def lost_access_line(output: str, url: str, *actions: str, besides: str = "") -> str:
    """The only ERROR line of a worker's ``output`` (with ``besides``: of those that do
    not start with it), checked to be the lost-access line naming the queue ``url`` and
    ``sqs:<action>`` for one of ``actions``; returned."""
    errors = [
        r.message
        for r in records(output)
        if r.level == "ERROR" and not (besides and r.message.startswith(besides))
    ]
    assert len(errors) == 1, output
    line = errors[0]
    assert line.startswith(LOST_ACCESS), line
    assert repr(url) in line, line  # the queue as the worker was given it
    assert any(f"sqs:{action} " in line for action in actions), line
    return line
