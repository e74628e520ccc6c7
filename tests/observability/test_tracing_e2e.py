"""End to end through ``aiosqsq run`` on moto: a trace context a producer wrote in a
message's ``traceparent`` attribute is the parent of the worker's CONSUMER span, a send
inside the handler is a PRODUCER span under it, and the message it sends carries the
context on through SQS; a failing handler's span is marked as an error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiosqsq.backends.base import SendEntry
from aiosqsq.exit_codes import ExitCode
from tests.cli.conftest import MotoQueues
from tests.cli.harness import run_cli

APPS = Path(__file__).parent / "apps"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def traced(entry_id: str, body: str) -> SendEntry:
    """A message as an OpenTelemetry-instrumented producer of another stack sends it."""
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    return SendEntry(
        entry_id,
        body,
        message_attributes={"traceparent": {"DataType": "String", "StringValue": traceparent}},
    )


def test_a_producers_trace_goes_on_through_the_worker_and_its_sends(
    sqs_env: dict[str, str], moto_queues: MotoQueues, tmp_path: Path
) -> None:
    url = moto_queues.create()
    forward_url = moto_queues.create()
    name, forward_name = url.rsplit("/", 1)[-1], forward_url.rsplit("/", 1)[-1]
    moto_queues.send_entries(url, [traced("0", "order-1"), traced("1", "bad")])
    spans_file = tmp_path / "spans.jsonl"
    env = {
        **sqs_env,
        "QUEUE_SQS_QUEUE_URL": url,
        "QUEUE_RETRY_BASE_DELAY": "60",
        "SPANS_FILE": str(spans_file),
        "FORWARD_QUEUE": forward_url,
    }
    result = run_cli("run", "traced_app:app", "--burst", "--app-dir", str(APPS), env=env)
    assert result.returncode == ExitCode.OK, result.stderr

    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    processed = [span for span in spans if span["name"] == f"process {name}"]
    assert len(processed) == 2
    by_fate = {span["attributes"]["aiosqsq.fate"]: span for span in processed}
    good, bad = by_fate["succeeded"], by_fate["retried"]
    for span in (good, bad):
        assert span["kind"] == "SpanKind.CONSUMER"
        assert span["context"]["trace_id"] == f"0x{TRACE_ID}"
        assert span["parent_id"] == f"0x{PARENT_ID}"
        assert span["attributes"]["messaging.destination.name"] == name
    assert bad["status"]["status_code"] == "ERROR"
    assert good["status"]["status_code"] != "ERROR"

    (send,) = [span for span in spans if span["name"] == f"send {forward_name}"]
    assert send["kind"] == "SpanKind.PRODUCER"
    assert send["parent_id"] == good["context"]["span_id"]
    assert send["context"]["trace_id"] == f"0x{TRACE_ID}"

    (forwarded,) = moto_queues.receive_all(forward_url)
    assert forwarded.body == "order-1"
    attribute: Any = forwarded.message_attributes["traceparent"]
    _, trace_id, parent_id, _ = attribute["StringValue"].split("-")
    assert (trace_id, parent_id) == (TRACE_ID, send["context"]["span_id"].removeprefix("0x"))
