"""The one logging configuration of the ``aiosqsq`` command: text for people, JSON for machines.

:func:`configure_logging` gives the root logger one handler on stderr:

* ``text``: ``2025-01-31 12:00:00.123 INFO    [4242] aiosqsq: consuming orders ...``, a
  traceback on the lines that follow;
* ``json``: one object per line, ``{"ts", "level", "logger", "message", "pid"}`` plus
  ``"exc"`` (the traceback) when there is one. Control characters in a message are escaped,
  so a message cannot forge a log line.

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
from datetime import UTC, datetime
from typing import Final, Literal

from aiosqsq.redaction import install_log_redaction, scrub

LogFormat = Literal["text", "json"]
LEVELS: Final = ("critical", "error", "warning", "info", "debug")
WIRE_LOGGERS: Final = ("botocore", "aiobotocore", "aioboto3", "boto3", "urllib3", "aiohttp")

_TEXT_FORMAT: Final = "%(asctime)s.%(msecs)03d %(levelname)-7s [%(process)d] %(name)s: %(message)s"
_FRAME_LINE: Final = re.compile(r'^\s*File "[^"]*", line \d+')


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


def _scrub_traceback(text: str) -> str:
    return "\n".join(line if _FRAME_LINE.match(line) else scrub(line) for line in text.split("\n"))


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = scrub(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return _scrub_traceback(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _scrub_traceback(stack_info)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "pid": record.process,
        }
        details = []
        if record.exc_info:
            details.append(self.formatException(record.exc_info))
        if record.stack_info:
            details.append(record.stack_info)
        if details:
            line["exc"] = _scrub_traceback("\n".join(details))
        return json.dumps(line)
