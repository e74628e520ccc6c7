"""The one logging configuration: JSON lines and text, start and stop lines, no secret, no
wire logs unless asked."""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aiosqsq.cli import ExitCode
from aiosqsq.logconfig import configure_logging
from tests.cli.conftest import SECRET, MotoQueues
from tests.cli.harness import APPS_DIR, records, run_cli

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
    assert f'    File "{folder / "refusing.py"}", line 2, in refuse' in traceback
    assert traceback[-1] == "  ValueError: no AKIA***"


# What a handler's exception can carry: a line shaped like a record, a terminal escape
# sequence (clear screen) and a carriage return.
FORGED = "\n2026-01-01 00:00:00 INFO aiosqsq forged line"
HOSTILE = f"no stock{FORGED} \x1b[2J\r"
ESCAPED = "no stock\\n2026-01-01 00:00:00 INFO aiosqsq forged line \\x1b[2J\\r"


def _fail_handler() -> None:
    try:
        raise KeyError("sku")
    except KeyError:
        raise RuntimeError(HOSTILE) from None


def _log_handler_failure(exc: Exception) -> None:
    """As the consumer logs a handler's exception: its text in the message, and its
    traceback."""
    logging.getLogger("aiosqsq.engine.consumer").error(
        "handler fulfil failed on message m-1 (receive 1): %s: %s",
        type(exc).__name__,
        exc,
        exc_info=exc,
    )


def test_text_lines_cannot_be_forged_by_a_handlers_exception(
    stderr: Callable[[], str],
) -> None:
    configure_logging("info", "text")
    try:
        _fail_handler()
    except RuntimeError as exc:
        exc.add_note("note\x1b[31m\nred")
        _log_handler_failure(exc)
    text = stderr()

    assert [r.message for r in records(text)] == [
        f"handler fulfil failed on message m-1 (receive 1): RuntimeError: {ESCAPED}"
    ]
    assert "\x1b" not in text
    assert "\r" not in text
    _record, *block = text.splitlines()
    assert block[0] == "  Traceback (most recent call last):"
    assert all(line.startswith("  ") for line in block)  # one indented block
    # Python writes a note's lines as lines of their own: they stay in the block
    assert block[-3:] == [f"  RuntimeError: {ESCAPED}", "  note\\x1b[31m", "  red"]


def test_a_traceback_another_handler_formatted_first_is_escaped_all_the_same(
    stderr: Callable[[], str],
) -> None:
    configure_logging("info", "text")
    other = logging.StreamHandler(io.StringIO())  # a plain formatter, added by someone else
    logger = logging.getLogger("aiosqsq.engine.consumer")
    logger.addHandler(other)
    try:
        try:
            _fail_handler()
        except RuntimeError as exc:
            _log_handler_failure(exc)
    finally:
        logger.removeHandler(other)
    text = stderr()
    assert len(records(text)) == 1
    assert text.splitlines()[-1] == f"  RuntimeError: {ESCAPED}"


def test_a_chained_exception_group_stays_one_indented_block(stderr: Callable[[], str]) -> None:
    configure_logging("info", "text")
    try:
        try:
            _fail_handler()
        except RuntimeError as exc:
            raise ExceptionGroup("handlers failed", [exc, ValueError(HOSTILE)]) from exc
    except ExceptionGroup as group:
        _log_handler_failure(group)
    text = stderr()

    assert len(records(text)) == 1
    _record, *block = text.splitlines()
    assert all(line.startswith("  ") for line in block)
    assert "  The above exception was the direct cause of the following exception:" in block
    forged = [line for line in block if "forged line" in line]
    assert len(forged) == 3  # the cause, and the group's two exceptions
    assert all("Error: no stock\\n" in line for line in forged)


def test_json_lines_escape_control_characters(stderr: Callable[[], str]) -> None:
    configure_logging("info", "json")
    logging.getLogger("aiosqsq.test").warning("forged\nline \x1b[31m")
    try:
        _fail_handler()
    except RuntimeError as exc:
        _log_handler_failure(exc)
    first, second = stderr().splitlines()  # one object per line
    assert json.loads(first)["message"] == "forged\nline \x1b[31m"
    record = json.loads(second)
    assert record["message"].endswith(f"RuntimeError: {HOSTILE}")
    assert record["exc"].endswith(f"RuntimeError: {HOSTILE}")


@pytest.mark.parametrize(("wire_debug", "level"), [(False, logging.INFO), (True, logging.DEBUG)])
def test_wire_loggers_stay_at_info_unless_asked(
    stderr: Callable[[], str], wire_debug: bool, level: int
) -> None:
    configure_logging("debug", "text", wire_debug=wire_debug)
    assert logging.getLogger("botocore").level == level
    assert logging.getLogger("urllib3").level == level
    assert ("wire debug logging is on" in stderr()) is wire_debug
