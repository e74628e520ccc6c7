"""The message a log line is about: its id, queue and receive count (and, with tracing,
the trace and span ids), in context variables.

aiosqsq sets them when a message's handling starts (its middleware is the first to see
it), in the task that handles it; they stay set until the next message that task handles,
so the engine's own lines about the message (a failure, a timeout, a move to the
dead-letter queue) carry them too. ``--log-format json`` writes them as fields; a user's
own logging gets them with :class:`MessageContextFilter`::

    handler.addFilter(MessageContextFilter())   # record.message_id, record.queue, ...

or reads them with :func:`current`.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any, Final

#: The fields, in the order a JSON line writes them.
FIELDS: Final = ("message_id", "queue", "receive_count", "trace_id", "span_id")

_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("aiosqsq_message", default=None)


def set_message(message_id: str, queue: str, receive_count: int) -> None:
    """The current task now handles this message (replaces what was set)."""
    _CONTEXT.set({"message_id": message_id, "queue": queue, "receive_count": receive_count})


def set_trace(trace_id: str, span_id: str) -> None:
    """Add the trace and span ids (hex) of the message's span."""
    current = _CONTEXT.get()
    if current is not None:
        current["trace_id"] = trace_id
        current["span_id"] = span_id


def clear() -> None:
    _CONTEXT.set(None)


def current() -> dict[str, Any]:
    """The fields of the message this task handles ({} outside one)."""
    return dict(_CONTEXT.get() or {})


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The fields for ``record``: those a filter or ``extra=`` put on it, else the
    current context's."""
    found = {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}
    return found or current()


class MessageContextFilter(logging.Filter):
    """Puts the current message's fields on every record (as attributes) it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True
