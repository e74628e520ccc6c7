"""The one logging configuration of the ``aiosqsq`` command: text for people, JSON for machines.

:func:`configure_logging` gives the root logger one handler on stderr:

* ``text``: ``2025-01-31 12:00:00.123 INFO    [4242] aiosqsq: consuming orders ...``, a
  traceback on the lines that follow, each indented by two spaces;
* ``json``: one object per line, ``{"ts", "level", "logger", "message", "pid"}`` plus
  ``"exc"`` (the traceback) when there is one, and, on a line about a message,
  ``message_id``, ``queue``, ``receive_count`` (:mod:`aiosqsq.observability.log_context`).

Text from a queue or a user (a message, an exception's text) can hold a newline followed by
something shaped like a log line, or an ANSI escape sequence. Neither format lets it forge a
record: JSON escapes control characters; the text format writes them escaped
(:func:`aiosqsq.control_chars.escape_controls`), in the message and in the traceback, where
only Python's own line structure is kept (a line per frame and per source line), indented,
so that no line of a traceback can start like a record.

Every line passes :func:`aiosqsq.redaction.scrub` (access key ids, session tokens,
signatures, long tokens) before it is written; in a traceback, the ``File "...", line N``
lines are kept as they are, so that paths stay readable. The AWS SDK's and its HTTP
libraries' loggers stay at INFO or above even at ``debug``: their DEBUG wire logs carry
request signatures, response bodies and receipt handles (boto/botocore#2626). Only
``wire_debug=True`` lets them through, with a warning.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final, Literal

from aiosqsq.control_chars import escape_controls
from aiosqsq.observability.log_context import fields_of
from aiosqsq.redaction import WIRE_LOGGERS, install_log_redaction, scrub

LogFormat = Literal["text", "json"]
LEVELS: Final = ("critical", "error", "warning", "info", "debug")

_TEXT_FORMAT: Final = "%(asctime)s.%(msecs)03d %(levelname)-7s [%(process)d] %(name)s: %(message)s"
# "  File "...", line N" as Python writes it, also inside an exception group's "  | " margin
_FRAME_LINE: Final = re.compile(r'^[ |]*File "[^"]*", line \d+')
_INDENT: Final = "  "  # no traceback line starts where a record does


def configure_logging(
    level: str = "info", fmt: LogFormat = "text", *, wire_debug: bool = False
) -> None:
    """Send every log record at ``level`` or above to stderr, as ``fmt``; idempotent.

    ``level`` is one of :data:`LEVELS` (any case). Replaces the handlers of the root logger.
    """
    numeric = logging.getLevelNamesMapping()[level.upper()]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.getLogger("aiosqsq").setLevel(logging.NOTSET)  # follows the root
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(numeric if wire_debug else max(numeric, logging.INFO))
    install_log_redaction()
    if wire_debug:
        logging.getLogger("aiosqsq").warning(
            "wire debug logging is on: the AWS SDK logs every request and response "
            "(bodies and receipt handles included; key material is masked); "
            "do not use it in production"
        )


def _scrub_line(line: str) -> str:
    return line if _FRAME_LINE.match(line) else scrub(line)


def _scrub_traceback(text: str) -> str:
    return "\n".join(_scrub_line(line) for line in text.split("\n"))


def _traceback_lines(ei: logging._SysExcInfoType) -> Iterable[str]:
    """The traceback of ``ei``, scrubbed, one line per frame, source line, exception and
    chain header: an exception's text (and a note) is one line, its newlines escaped."""
    exc_type, exc, tb = ei
    if exc_type is None or exc is None:
        yield "NoneType: None"  # logging.exception() outside an except block
        return
    for chunk in traceback.TracebackException(exc_type, exc, tb, compact=True).format():
        if _FRAME_LINE.match(chunk):  # Python's own lines: File, source, carets
            yield from (_scrub_line(line) for line in chunk.rstrip("\n").split("\n"))
        elif chunk.strip("\n"):
            yield scrub(chunk.strip("\n"))


def _indented(lines: Iterable[str]) -> str:
    return "\n".join(_INDENT + escape_controls(line) for line in lines)


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        # logging caches a record's traceback text in exc_text: one cached by another
        # handler's formatter would be written here unescaped. Format it here, every time.
        cached, record.exc_text = record.exc_text, None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(scrub(record.message))
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return _indented(_traceback_lines(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(_scrub_line(line) for line in stack_info.rstrip("\n").split("\n"))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "pid": record.process,
        }
        line.update(fields_of(record))  # the message it is about (aiosqsq.observability)
        details = []
        if record.exc_info:
            details.append(self.formatException(record.exc_info))
        if record.stack_info:
            details.append(record.stack_info)
        if details:
            line["exc"] = _scrub_traceback("\n".join(details))
        return json.dumps(line)
