"""A handler's own log lines carry the message they are about: through the filter, and
as fields of the JSON format."""

from __future__ import annotations

import json
import logging

from aiosqsq.backends.memory import MemoryBackend
from aiosqsq.logconfig import configure_logging
from aiosqsq.observability import MessageContextFilter
from aiosqsq.observability.log_context import current
from aiosqsq.testing import AppTester
from tests.helpers import make_app, make_queue


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_handlers_own_logging_info_carries_the_message() -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend, retry_base_delay=0)
    log = logging.getLogger("tests.user_code")
    collect = Collect()
    collect.addFilter(MessageContextFilter())
    log.addHandler(collect)
    log.setLevel(logging.INFO)

    @app.handler()
    async def work(payload: str) -> None:
        logging.getLogger("tests.user_code").info("working on %s", payload)

    try:
        tester = AppTester(app, backend=backend)
        ids = {await tester.send(str(n)): str(n) for n in range(3)}
        await tester.drain()
    finally:
        log.removeHandler(collect)
    assert len(collect.records) == 3
    for record in collect.records:
        assert ids[record.message_id] == record.getMessage().removeprefix("working on ")  # type: ignore[attr-defined]
        assert record.queue == "jobs"  # type: ignore[attr-defined]
        assert record.receive_count == 1  # type: ignore[attr-defined]
    assert current() == {}  # this task handled no message


async def test_json_lines_have_the_fields(capsys) -> None:
    backend = MemoryBackend()
    await make_queue(backend, "jobs")
    app = make_app(backend)

    @app.handler()
    async def work(payload: str) -> None:
        logging.getLogger("tests.user_code").warning("handled")

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("info", "json")
    try:
        tester = AppTester(app, backend=backend)
        message_id = await tester.send("x")
        await tester.drain()
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (handled,) = [line for line in lines if line["message"] == "handled"]
    assert handled["message_id"] == message_id
    assert handled["queue"] == "jobs"
    assert handled["receive_count"] == 1
    assert all("message_id" not in line for line in lines if line["logger"] == "aiosqsq")
