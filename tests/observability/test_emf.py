"""QUEUE_METRICS=emf: CloudWatch Embedded Metric Format lines on standard output."""

from __future__ import annotations

import json

from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.testing import AppTester
from tests.helpers import make_app, make_queue


async def test_emf_lines_count_what_was_handled_per_queue(capsys) -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend, metrics="emf", retry_base_delay=0)

    @app.handler()
    async def work(payload: str) -> None:
        if payload == "bad":
            raise ValueError("no")

    tester = AppTester(app, backend=backend)
    for payload in ["a", "b", "c"]:
        await tester.send(payload)
    await tester.drain()  # the app's stop writes what changed

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (line,) = [line for line in lines if line.get("Queue") == "jobs"]
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "aiosqsq"
    assert directive["Dimensions"] == [["Queue"]]
    units = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
    assert units["MessagesReceived"] == "Count"
    assert units["HandlerDuration"] == "Milliseconds"
    assert line["MessagesReceived"] == 3
    assert line["MessagesSucceeded"] == 3
    assert line["InFlight"] == 0
    assert line["HandlerDuration"] >= 0
    assert isinstance(line["_aws"]["Timestamp"], int)
    # every name in the line is declared, and only those
    assert set(units) == set(line) - {"_aws", "Queue"}
