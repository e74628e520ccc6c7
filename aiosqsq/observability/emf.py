"""``QUEUE_METRICS=emf``: the consumer metrics as CloudWatch Embedded Metric Format lines.

Every :data:`INTERVAL_S` seconds (and when the app stops) one JSON line per queue goes
to standard output, where the CloudWatch agent, ECS's awslogs driver or Lambda turn it
into metrics in the ``aiosqsq`` namespace with the dimension ``Queue``: the messages
received and processed by outcome in the interval (``Count``), the messages in flight,
and the mean handler duration (``Milliseconds``). No Prometheus server is needed.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from typing import IO, TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

NAMESPACE: Final = "aiosqsq"
INTERVAL_S: Final = 60.0
_TICK_S: Final = 0.25


class EmfWriter:
    """Turns the changes in ``registry``'s aiosqsq metrics into EMF lines on ``stream``."""

    every_ticks: int = int(INTERVAL_S / _TICK_S)

    def __init__(self, registry: CollectorRegistry, stream: IO[str] | None = None) -> None:
        self._registry = registry
        self._stream = stream
        self._last: dict[tuple[str, str], float] = {}

    def flush(self) -> None:
        """Write one line per queue with what changed since the last flush."""
        values: dict[str, dict[str, float]] = defaultdict(dict)
        for metric in self._registry.collect():
            for sample in metric.samples:
                queue = sample.labels.get("queue")
                if queue is None:
                    continue
                name = _emf_name(sample.name, sample.labels)
                if name is None:
                    continue
                total = values[queue].get(name, 0.0) + sample.value
                values[queue][name] = total
        stream = self._stream or sys.stdout
        for queue, metrics in sorted(values.items()):
            line = self._line(queue, metrics)
            if line is not None:
                stream.write(json.dumps(line) + "\n")
        stream.flush()

    def _line(self, queue: str, totals: dict[str, float]) -> dict[str, Any] | None:
        line: dict[str, Any] = {}
        units: dict[str, str] = {}
        for name, total in totals.items():
            if name in ("InFlight",):
                line[name], units[name] = total, "Count"
                continue
            delta = total - self._last.get((queue, name), 0.0)
            self._last[(queue, name)] = total
            if not name.startswith("_"):
                line[name], units[name] = delta, "Count"
        count = totals.get("_duration_count", 0.0) - self._last.get((queue, "_dc"), 0.0)
        seconds = totals.get("_duration_sum", 0.0) - self._last.get((queue, "_ds"), 0.0)
        self._last[(queue, "_dc")] = totals.get("_duration_count", 0.0)
        self._last[(queue, "_ds")] = totals.get("_duration_sum", 0.0)
        if count > 0:
            line["HandlerDuration"], units["HandlerDuration"] = (
                seconds / count * 1e3,
                "Milliseconds",
            )
        if not line:
            return None
        line["Queue"] = queue
        line["_aws"] = {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Queue"]],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in units.items()],
                }
            ],
        }
        return line


def _emf_name(sample: str, labels: dict[str, str]) -> str | None:
    if sample == "aiosqsq_messages_received_total":
        return "MessagesReceived"
    if sample == "aiosqsq_messages_processed_total":
        return "Messages" + "".join(p.title() for p in labels["outcome"].split("_"))
    if sample == "aiosqsq_messages_in_flight":
        return "InFlight"
    if sample == "aiosqsq_handler_duration_seconds_count":
        return "_duration_count"
    if sample == "aiosqsq_handler_duration_seconds_sum":
        return "_duration_sum"
    return None
