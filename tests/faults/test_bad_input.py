"""Hostile and malformed messages through the real ``aiosqsq run`` command on moto (T25).

A corpus of bodies that do not decode as JSON or do not validate as the strict app's
``Order`` (``extra="forbid"``), some with hostile message attributes, is interleaved with
healthy orders. Documented behaviour (README, "What happens to a message" and "Bad input";
``aiosqsq/codec.py``): such a body never reaches the handler and is moved at once to the
dead-letter queue with the reason in its ``aiosqsq-error`` attribute; the log names the
MessageId and the error class, never the body. A message that already carries SQS's
maximum of 10 attributes keeps them all and has no room for the reason (the engine never
drops the sender's own).

Borderline bodies are decided by the codec's documented parser (orjson, RFC 8259 JSON) and
pydantic: ``NaN``/``Infinity`` and lone surrogate escapes are not JSON (refused); an integer
beyond 64 bits is read as a float (refused by an ``int`` field, as out of range; a
100,000-digit one overflows to infinity, refused by the parser); ``"\\u0000"`` inside a
string field is valid JSON and a valid ``str`` (handled); with duplicate keys the last one
wins (orjson's behaviour; the documentation does not say).

moto accepts raw control characters in bodies and string attributes, which SQS itself
refuses: the worker still must not echo them.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aiosqsq.backends.base import (
    MAX_MESSAGE_BYTES,
    MessageAttributes,
    MessageAttributeValue,
    QueueMessage,
    SendEntry,
)
from aiosqsq.message import ERROR_ATTRIBUTE, SOURCE_ATTRIBUTE
from tests.faults.ledger import Call, Ledger, wait_until
from tests.faults.queues import FaultQueues
from tests.faults.worker import STRICT, start_worker, stop_gracefully, worker_env

SENTINEL = "BodySentinel7f3a"  # in every body and attribute it can be in: never in a log
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
JSON_ERROR, INVALID = "JSONDecodeError", "ValidationError"


@dataclass(frozen=True)
class Case:
    name: str
    body: str
    refused_as: str | None  # the error class, or None: a valid order, handled
    attributes: MessageAttributes = field(default_factory=dict)


class _Canary:
    """Unpickling it creates ``path``: the body must never be unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


def _text(value: str) -> MessageAttributeValue:
    return MessageAttributeValue(DataType="String", StringValue=value)


def _hostile_attributes() -> MessageAttributes:
    return {
        "crlf": _text(f"{SENTINEL}\r\n2026-01-01 00:00:00.000 ERROR   [1] x: {SENTINEL}"),
        "esc": _text(f"\x1b[2J\x1b[31m{SENTINEL}\x1b]0;title\x07"),
        "format": _text(f"%s%n%x%d {{0}} {SENTINEL}"),
        "jndi": _text(f"${{jndi:ldap://127.0.0.1:1/{SENTINEL}}}"),
    }


def _ten_long_binary_attributes() -> MessageAttributes:
    draw = random.Random(25)
    return {
        f"a{i}".ljust(256, "x"): {"DataType": "Binary", "BinaryValue": draw.randbytes(256)}
        for i in range(10)
    }


def _bad(i: int, field_text: str) -> str:
    """An order whose ``sku`` carries ``field_text``: unique per case."""
    return f'{{"seq": {i}, "sku": "{SENTINEL}-{i}{field_text}"}}'


def corpus(canary: Path) -> list[Case]:
    """The invalid inputs of T25, and the borderline ones that are valid orders."""
    pickled = base64.b64encode(pickle.dumps(_Canary(canary))).decode()
    return [
        Case("hello", "hello", JSON_ERROR),
        Case("open-brace", "{", JSON_ERROR),
        Case("close-bracket", "]", JSON_ERROR),
        Case("text", f"hello {SENTINEL}", JSON_ERROR),
        Case("array", "[]", INVALID),
        Case("number", "1", INVALID),
        Case("string", '"s"', INVALID),
        Case("null", "null", INVALID),
        Case("missing-field", f'{{"sku": "{SENTINEL}"}}', INVALID),
        Case("extra-field", f'{{"seq": 1, "sku": "x", "{SENTINEL}": "{SENTINEL}"}}', INVALID),
        Case("wrong-types", f'{{"seq": "{SENTINEL}", "sku": 5}}', INVALID),
        Case("deep-nesting", "[" * 100_000, JSON_ERROR),
        Case("huge-integer", '{"seq": 1' + "0" * 100_000 + ', "sku": "x"}', JSON_ERROR),
        Case("int-over-64-bits", _bad(12_345_678_901_234_567_890_123, ""), INVALID),
        Case("lone-surrogate", _bad(2, "\\ud800"), JSON_ERROR),
        Case("nul-string", '"\\u0000"', INVALID),
        Case("nan", f'{{"seq": NaN, "sku": "{SENTINEL}"}}', JSON_ERROR),
        Case("infinity", f'{{"seq": Infinity, "sku": "{SENTINEL}"}}', JSON_ERROR),
        Case("bare-nan", "NaN", JSON_ERROR),
        Case(
            "duplicate-key-last-invalid", f'{{"seq": 3, "sku": "x", "seq": "{SENTINEL}"}}', INVALID
        ),
        Case("raw-control-characters", f"\x1b[2J\r{SENTINEL}\x00\x07\n{{", JSON_ERROR),
        # Validation code raising what pydantic lets through: a bad payload all the same.
        Case(
            "validator-attribute-error",
            _bad(4, "").replace(SENTINEL, "raise-attribute"),
            "AttributeError",
        ),
        Case(
            "validator-key-error",
            _bad(5, f"-{SENTINEL}").replace(f'"{SENTINEL}', '"raise-key', 1),
            "KeyError",
        ),
        Case(
            "validator-type-error",
            _bad(6, f"-{SENTINEL}").replace(f'"{SENTINEL}', '"raise-type', 1),
            "TypeError",
        ),
        Case(
            "hostile-attributes",
            f'{{"seq": "{SENTINEL}-attrs"}}',
            INVALID,
            _hostile_attributes(),
        ),
        Case(
            "ten-long-binary-attributes",
            f'{{"seq": "{SENTINEL}-binary"}}',
            INVALID,
            _ten_long_binary_attributes(),
        ),
        Case(
            "pickle",
            pickled,
            JSON_ERROR,
            {"content-type": _text("application/x-python-pickle")},
        ),
        # Borderline, and valid: handled once, as documented above.
        Case("nul-in-field", '{"seq": 900001, "sku": "a\\u0000b"}', None),
        Case("duplicate-key-last-valid", '{"seq": "x", "sku": "dup", "seq": 900002}', None),
        Case(
            "healthy-with-hostile-attributes",
            '{"seq": 900003, "sku": "ok"}',
            None,
            _hostile_attributes(),
        ),
    ]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@dataclass
class Outcome:
    """What a run of the worker over a list of cases did."""

    ids: list[str]
    calls: list[Call]
    dead: list[QueueMessage]
    output: str
    moved: Counter[str]
    left: int
    alive: bool
    drain_s: float
    shutdown_s: float
    cpu_s: float
    rss_growth_mib: float


def _run(
    queues: FaultQueues,
    moto_endpoint: str,
    ledger: Ledger,
    cases: list[Case],
    *,
    drain_timeout_s: float = 45,
    max_receive_count: int = 5,
) -> Outcome:
    url = queues.create(max_receive_count=max_receive_count)
    dlq = queues.dead_letter_url(url)
    env = worker_env(moto_endpoint, url, ledger.path, QUEUE_RETRY_MAX_DELAY="2")
    entries = [SendEntry(id="0", body=c.body, message_attributes=c.attributes) for c in cases]
    valid = sum(c.refused_as is None for c in cases)
    refused = len(cases) - valid
    with start_worker(env, app=STRICT) as worker:
        cpu, rss = _cpu_s(worker.pid), _rss_mib(worker.pid)
        started = time.monotonic()
        ids = queues.send_all(url, entries)
        wait_until(
            lambda: sum(c.event == "ok" for c in ledger.events()) >= valid,
            "every valid message handled",
            timeout_s=drain_timeout_s,
        )
        wait_until(
            lambda: queues.depth(dlq).visible >= refused,
            "every refused message in the dead-letter queue",
            timeout_s=drain_timeout_s,
        )
        drain_s = time.monotonic() - started
        cpu, rss = _cpu_s(worker.pid) - cpu, _rss_mib(worker.pid) - rss
        alive = worker.process.poll() is None
        shutdown_s = stop_gracefully(worker)
        output = worker.output
    moved = Counter(
        f"{match[1]} {match[2]}"
        for match in re.finditer(
            r"message (\S+) on \S+ was moved to the dead-letter queue as \S+: (\w+)$", output, re.M
        )
    )
    depth = queues.depth(url)
    return Outcome(
        ids=ids,
        calls=ledger.events(),
        dead=queues.receive_all(dlq),
        output=output,
        moved=moved,
        left=depth.visible + depth.in_flight,
        alive=alive,
        drain_s=drain_s,
        shutdown_s=shutdown_s,
        cpu_s=cpu,
        rss_growth_mib=rss,
    )


def _interleaved(cases: list[Case]) -> list[Case]:
    """Each case followed by a healthy order (seq 0, 1, ...)."""
    mixed = []
    for i, case in enumerate(cases):
        mixed += [case, Case(f"healthy-{i}", json.dumps({"seq": i, "sku": "ok"}), None)]
    return mixed


def _assert_logs_clean(output: str) -> None:
    # The output is read as text with universal newlines, so a raw CR would show as a line
    # break: the sentinel that follows every CR in the corpus catches it.
    assert SENTINEL not in output
    assert CONTROL.findall(output) == []
    problems = [
        line
        for line in output.splitlines()
        if re.search(r" (WARNING|ERROR|CRITICAL) ", line)
        and "was moved to the dead-letter queue as " not in line
    ]
    assert problems == []


def test_bad_input_never_reaches_the_handler_and_is_dead_lettered_at_once(
    queues: FaultQueues, moto_endpoint: str, ledger: Ledger, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    cases = _interleaved(corpus(canary))
    run = _run(queues, moto_endpoint, ledger, cases)

    by_id = dict(zip(run.ids, cases, strict=True))
    refused = {mid: c for mid, c in by_id.items() if c.refused_as}
    handled = Counter(c.mid for c in run.calls if c.event == "ok")
    invalid_calls = [c for c in run.calls if c.mid in refused]
    dead_by_body = {m.body: m for m in run.dead}
    print(
        f"T25 sent={len(cases)} invalid={len(refused)} handled={sum(handled.values())} "
        f"invalid_handler_calls={len(invalid_calls)} "
        f"duplicated={sum(n - 1 for n in handled.values())} dead_lettered={len(run.dead)} "
        f"moved_log_lines={sum(run.moved.values())} left={run.left} "
        f"cpu_ms_per_message={1000 * run.cpu_s / len(cases):.1f} "
        f"rss_growth_mib={run.rss_growth_mib:.1f} drain_s={run.drain_s:.1f} "
        f"shutdown_s={run.shutdown_s:.1f} canary={canary.exists()}"
    )
    assert invalid_calls == []
    assert sorted(handled) == sorted(mid for mid in by_id if mid not in refused)
    assert set(handled.values()) == {1}
    # Each refused message: in the DLQ once, its body and attributes kept, the reason added.
    assert sorted(dead_by_body) == sorted(c.body for c in refused.values())
    for mid, case in refused.items():
        dead = dead_by_body[case.body]
        kept = {k: v for k, v in dead.message_attributes.items() if k in case.attributes}
        assert kept == case.attributes, case.name
        if len(case.attributes) <= 8:  # SQS allows 10 attributes: the sender's come first
            error = dead.message_attributes[ERROR_ATTRIBUTE]["StringValue"]
            assert error.startswith(f"{case.refused_as}: "), case.name
            source = dead.message_attributes[SOURCE_ATTRIBUTE]["StringValue"]
            assert source.endswith(f" {mid}"), case.name
        assert run.moved[f"{mid} {case.refused_as}"] == 1, case.name
    assert sum(run.moved.values()) == len(refused)
    assert f"retried=0 dead_lettered={len(refused)} " in run.output  # never retried
    # Borderline bodies: the handler saw what orjson reads.
    values = {(c.seq, c.sku) for c in run.calls if c.event == "ok"}
    assert {(900001, "a\x00b"), (900002, "dup"), (900003, "ok")} <= values
    hostile = next(c for c in run.calls if c.seq == 900003 and c.event == "ok")
    assert hostile.attributes == sorted(_hostile_attributes())
    _assert_logs_clean(run.output)
    assert not canary.exists()
    assert run.left == 0
    assert run.alive
    assert run.cpu_s / len(cases) <= 0.05


@pytest.mark.timeout(120)
def test_a_body_of_exactly_one_mib_that_does_not_validate_is_dead_lettered_at_once(
    queues: FaultQueues, moto_endpoint: str, ledger: Ledger
) -> None:
    # SQS counts a message's body and attributes against 1 MiB: the copy to the dead-letter
    # queue must still fit, whatever the engine would like to add to it.
    head = f'{{"seq": 1, "sku": "x", "pad": "{SENTINEL}'
    body = head + "a" * (MAX_MESSAGE_BYTES - len(head) - 2) + '"}'
    assert len(body.encode()) == MAX_MESSAGE_BYTES
    cases = _interleaved([Case("one-mib", body, INVALID)])
    # Two receives: if the move fails, the redrive takes it after 2 hidden spells of 2 s.
    run = _run(queues, moto_endpoint, ledger, cases, max_receive_count=2)

    (mid, _) = run.ids
    dead = [m for m in run.dead if m.body == body]
    reasons = [ERROR_ATTRIBUTE in m.message_attributes for m in dead]
    print(
        f"T25-1MiB sent={len(cases)} handled={sum(c.event == 'ok' for c in run.calls)} "
        f"invalid_handler_calls={sum(c.mid == mid for c in run.calls)} "
        f"dead_lettered={len(dead)} with_reason={reasons} "
        f"moved_log_lines={sum(run.moved.values())} left={run.left} "
        f"cpu_ms={1000 * run.cpu_s:.0f} drain_s={run.drain_s:.1f} "
        f"shutdown_s={run.shutdown_s:.1f}"
    )
    assert [c.seq for c in run.calls if c.event == "ok"] == [0]
    assert len(dead) == 1
    assert SENTINEL not in run.output
    assert CONTROL.findall(run.output) == []
    assert run.left == 0
    assert run.alive
    assert run.cpu_s <= 0.2 * 2
    # Documented: moved at once on its first receive, not left to the redrive. (The reason
    # cannot ride along: the body alone is SQS's whole 1 MiB; the log line names it.)
    assert run.moved == Counter({f"{mid} {INVALID}": 1}), run.output
    assert "received=2 succeeded=1 retried=0 dead_lettered=1 " in run.output


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_hundred_of_each_bad_input_costs_bounded_cpu_and_memory(
    queues: FaultQueues, moto_endpoint: str, ledger: Ledger, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    bad = [c for c in corpus(canary) if c.refused_as]
    cases = [
        Case(f"{c.name}-{n}", c.body + " " * n, c.refused_as, c.attributes)
        for n in range(100)
        for c in bad
    ]
    run = _run(queues, moto_endpoint, ledger, cases, drain_timeout_s=400)
    print(
        f"T25x100 sent={len(cases)} handler_calls={len(run.calls)} "
        f"dead_lettered={len(run.dead)} moved_log_lines={sum(run.moved.values())} "
        f"left={run.left} cpu_ms_per_message={1000 * run.cpu_s / len(cases):.1f} "
        f"rss_growth_mib={run.rss_growth_mib:.1f} drain_s={run.drain_s:.1f} "
        f"shutdown_s={run.shutdown_s:.1f}"
    )
    assert run.calls == []
    assert len(run.dead) == len(cases)
    assert sum(run.moved.values()) == len(cases)
    _assert_logs_clean(run.output)
    assert not canary.exists()
    assert run.left == 0
    assert run.alive
    assert run.cpu_s / len(cases) <= 0.05
    assert run.rss_growth_mib <= 50
