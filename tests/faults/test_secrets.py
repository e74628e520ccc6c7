"""Secrets never leave the process (T26): sentinel ``QUEUE_AWS_*`` credentials, and not one
occurrence of them (raw, base64 or URL-encoded, or a fragment past the 8 characters a masked
token keeps) in what the real ``aiosqsq run`` command prints, at ``--log-level debug``, with
``--wire-debug``, on a handler exception that quotes ``repr(app)`` and ``repr(app.settings)``,
on a configuration error of another variable, on a missing queue and on a crash; nor in the
reprs and errors of an App built in this process.

Covered elsewhere, not repeated here: the settings' own repr, str and JSON dump and their
error (tests/test_settings.py), the SQS backend's repr and in-process wire logs
(tests/backends/test_sqs_backend.py), the scrubbing patterns (tests/test_redaction.py).
"""

from __future__ import annotations

import base64
import json
import traceback
import urllib.parse

import pytest

from aiosqsq import App
from aiosqsq.cli import ExitCode
from aiosqsq.errors import ConfigurationError
from tests.cli.harness import APPS_DIR, records, run_cli
from tests.faults.ledger import Ledger, wait_until
from tests.faults.queues import FaultQueues
from tests.faults.worker import (
    ROOT,
    STRICT,
    order,
    start_worker,
    stop_gracefully,
    worker_env,
)

KEY_ID = "AKIAF3SENTINEL424242"
SECRET = "F3SentinelSecretKey/0123456789+abcdefGHI"
TOKEN = (
    "FwoGZXIvYXdzEF3SentinelSessionToken//////////wEaDJ0123456789abcdefghijklmnopqrstuv"
    "wxyz+ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/abcdefghijklmnop=="
)
CREDENTIALS = {
    "QUEUE_AWS_ACCESS_KEY_ID": KEY_ID,
    "QUEUE_AWS_SECRET_ACCESS_KEY": SECRET,
    "QUEUE_AWS_SESSION_TOKEN": TOKEN,
}


def _forms() -> dict[str, str]:
    """Every way a sentinel might leak: raw, encoded, or a fragment that a mask misses."""
    forms = {"key id past AKIA": KEY_ID[4:]}
    for name, value in (("secret", SECRET), ("token", TOKEN)):
        forms |= {
            f"{name}": value,
            f"{name} base64": base64.b64encode(value.encode()).decode(),
            f"{name} base64url": base64.urlsafe_b64encode(value.encode()).decode(),
            f"{name} URL-encoded": urllib.parse.quote(value, safe=""),
            f"{name} after its 8th character": value[8:28],
        }
    return forms


def leaks(text: str) -> list[str]:
    """The sentinel forms found in ``text``."""
    return [name for name, form in _forms().items() if form in text]


@pytest.mark.parametrize(
    "options",
    [("--log-level", "debug"), ("--log-level", "debug", "--wire-debug")],
    ids=["debug", "wire-debug"],
)
def test_no_secret_in_a_debug_run_with_a_failing_handler(
    queues: FaultQueues, moto_endpoint: str, ledger: Ledger, options: tuple[str, ...]
) -> None:
    url = queues.create(max_receive_count=5)
    env = worker_env(moto_endpoint, url, ledger.path, STRICT_FAIL_SEQS="7", **CREDENTIALS)
    sent = 10
    with start_worker(env, *options, app=STRICT) as worker:
        queues.send(url, [order(seq) for seq in range(sent)])
        wait_until(
            lambda: sum(c.event == "ok" for c in ledger.events()) == sent - 1,
            "every other message handled",
            timeout_s=30,
        )
        worker.wait_for(rf"handler {STRICT.handler} failed on message ")
        shutdown_s = stop_gracefully(worker)
        output = worker.output
    lines = records(output)
    wire = [r for r in lines if r.level == "DEBUG" and r.logger.startswith(("botocore", "aio"))]
    found = leaks(output)
    print(
        f"T26 {' '.join(options)} sent={sent} handled={sent - 1} log_lines={len(lines)} "
        f"wire_debug_lines={len(wire)} leaks={found} shutdown_s={shutdown_s:.1f}"
    )
    assert found == []
    # The handler's error, quoting the app and its settings, was logged with its traceback.
    assert "RuntimeError: order 7 refused by <App backend=sqs" in output
    assert "Traceback (most recent call last)" in output
    if "--wire-debug" in options:
        assert "wire debug logging is on" in output
        assert any("X-Amz-Security-Token" in r.message for r in wire)  # logged, masked
        assert any("Credential=***" in r.message for r in wire)
    else:
        assert wire == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("invalid-variable", ExitCode.CONFIGURATION),
        ("missing-queue-url", ExitCode.CONFIGURATION),
        ("missing-queue", ExitCode.QUEUE_ACCESS_LOST),
        ("crash", ExitCode.UNEXPECTED_ERROR),
    ],
)
def test_no_secret_when_the_command_fails(
    moto_endpoint: str, ledger: Ledger, case: str, expected: ExitCode
) -> None:
    env = worker_env(moto_endpoint, "f3-missing-queue", ledger.path, **CREDENTIALS)
    target = (STRICT.target, "--app-dir", str(ROOT))
    if case == "invalid-variable":
        env["QUEUE_WAIT_TIME_SECONDS"] = "30"
    elif case == "missing-queue-url":
        del env["QUEUE_SQS_QUEUE_URL"]
    elif case == "crash":
        target = ("crashing:app", "--app-dir", str(APPS_DIR))
    result = run_cli("run", *target, "--log-level", "debug", env=env)
    output = result.stdout + result.stderr
    errors = [r.message for r in records(result.stderr) if r.level == "ERROR"]
    found = leaks(output)
    print(f"T26 {case} exit={result.returncode} errors={errors} leaks={found}")
    assert result.returncode == expected, output
    assert len(errors) == 1
    assert found == []


def test_no_secret_in_the_reprs_and_errors_of_an_app(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("QUEUE_BACKEND", "sqs")
    monkeypatch.setenv("QUEUE_SQS_QUEUE_URL", "orders")
    app = App()

    @app.handler()
    async def handle(payload: str) -> None:
        pass

    settings = app.settings
    shown = [
        repr(app),
        str(app),
        repr(app.service),
        repr(settings),
        str(settings.model_dump()),
        json.dumps(settings.model_dump(mode="json")),
        settings.model_dump_json(),
        repr(dict(settings)),
    ]
    monkeypatch.setenv("QUEUE_CONCURRENCY", "lots")
    with pytest.raises(ConfigurationError) as raised:
        App()
    shown.append("".join(traceback.format_exception(raised.value)))
    found = leaks("\n".join(shown))
    print(f"T26 in-process texts={len(shown)} leaks={found}")
    assert found == []
    assert "QUEUE_CONCURRENCY='lots'" in shown[-1]
    assert settings.aws_session_token is not None
    assert settings.aws_session_token.get_secret_value() == TOKEN
