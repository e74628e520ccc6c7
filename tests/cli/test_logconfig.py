"""The one logging configuration: JSON lines and text, start and stop lines, no secret, no
wire logs unless asked."""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aiosqsq.cli import ExitCode
from aiosqsq.logconfig import configure_logging
from tests.cli.conftest import SECRET, MotoQueues
from tests.cli.harness import APPS_DIR, run_cli

KEY_ID = "AKIAABCDEFGHIJKLMNOP"


def test_burst_drains_the_queue_logging_json_lines_with_no_secret_and_no_wire_debug(
    moto_queues: MotoQueues, sqs_env: dict[str, str], ledger: Path
) -> None:
    url = moto_queues.create()
    moto_queues.send(url, [str(i) for i in range(30)])
    env = {**sqs_env, "QUEUE_SQS_QUEUE_URL": url, "LEDGER_PATH": str(ledger)}
    args = ("--app-dir", str(APPS_DIR), "--burst", "--log-format", "json", "--log-level", "debug")
    result = run_cli("run", "ledger:app", *args, env=env)

    assert result.returncode == ExitCode.OK, result.stderr
    assert sorted(int(json.loads(line)["seq"]) for line in ledger.read_text().splitlines()) == (
        list(range(30))
    )
    depth = moto_queues.depth(url)
    assert (depth.visible, depth.in_flight) == (0, 0)

    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert all(set(line) == {"ts", "level", "logger", "message", "pid"} for line in lines)
    messages = [line["message"] for line in lines]
    assert messages[0] == (
        "aiosqsq 0.1.0 running ledger:app on the sqs backend (burst: exits once the queues "
        "are drained)"
    )
    name = url.rsplit("/", 1)[1]
    assert any(
        m.startswith(f"consuming {name} with ledger.record: backend=sqs concurrency=10 pollers=1 ")
        for m in messages
    )
    assert messages[-1].startswith("stopped after ")
    assert messages[-1].endswith(
        "received=30 succeeded=30 retried=0 dead_lettered=0 released=0 lease_lost=0 "
        "heartbeats_sent=0 in_flight=0"
    )
    wire = ("botocore", "aiobotocore", "aioboto3", "urllib3", "aiohttp")
    assert not [x for x in lines if x["level"] == "DEBUG" and x["logger"].startswith(wire)]
    assert SECRET not in result.stderr + result.stdout


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What configure_logging writes (to stderr, captured); the loggers are restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    wire = {name: logging.getLogger(name).level for name in ("botocore", "urllib3")}
    yield lambda: capsys.readouterr().err
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.handlers[:], root.level = saved
    for name, level in wire.items():
        logging.getLogger(name).setLevel(level)


def test_text_lines_mask_secrets_but_keep_traceback_paths(
    stderr: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A path long and plain enough for scrub() to take it for a token, outside frame lines.
    folder = tmp_path / ("d" * 48)
    folder.mkdir()
    (folder / "refusing.py").write_text("def refuse(key):\n    raise ValueError(f'no {key}')\n")
    monkeypatch.syspath_prepend(str(folder))
    refusing = importlib.import_module("refusing")
    configure_logging("info", "text")
    try:
        refusing.refuse(KEY_ID)
    except ValueError:
        logging.getLogger("aiosqsq.test").exception("the key %s was refused", KEY_ID)
    text = stderr()
    assert KEY_ID not in text
    first, *traceback = text.splitlines()
    assert first.endswith(f"ERROR   [{os.getpid()}] aiosqsq.test: the key AKIA*** was refused")
    assert f'  File "{folder / "refusing.py"}", line 2, in refuse' in traceback
    assert traceback[-1] == "ValueError: no AKIA***"


def test_json_lines_escape_control_characters(stderr: Callable[[], str]) -> None:
    configure_logging("info", "json")
    logging.getLogger("aiosqsq.test").warning("forged\nline \x1b[31m")
    (line,) = stderr().splitlines()
    assert json.loads(line)["message"] == "forged\nline \x1b[31m"


@pytest.mark.parametrize(("wire_debug", "level"), [(False, logging.INFO), (True, logging.DEBUG)])
def test_wire_loggers_stay_at_info_unless_asked(
    stderr: Callable[[], str], wire_debug: bool, level: int
) -> None:
    configure_logging("debug", "text", wire_debug=wire_debug)
    assert logging.getLogger("botocore").level == level
    assert logging.getLogger("urllib3").level == level
    assert ("wire debug logging is on" in stderr()) is wire_debug
