"""Fixtures for the network fault tests: the fault proxies in front of the session's moto
server, queues on moto, and the environment of a worker that talks through a proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aiosqsq.settings import QueueSettings
from tests.cli.conftest import MotoQueues
from tests.faults.proxy import FaultProxy
from tests.faults.tcp_proxy import TcpProxy


@pytest.fixture
def fault_proxy(moto_endpoint: str, tmp_path: Path) -> Iterator[FaultProxy]:
    """The HTTP fault proxy in front of moto, served from a background thread; its
    request log is left in the test's ``proxy.jsonl`` for a failure's post-mortem."""
    with FaultProxy(moto_endpoint) as proxy:
        yield proxy
    proxy.write_jsonl(tmp_path / "proxy.jsonl")


@pytest.fixture
def tcp_proxy(moto_endpoint: str) -> Iterator[TcpProxy]:
    """The TCP fault proxy in front of moto, served from a background thread."""
    port = urlsplit(moto_endpoint).port
    assert port is not None
    with TcpProxy(port) as proxy:
        yield proxy


@pytest.fixture
def net_queues(sqs_settings: QueueSettings) -> Iterator[MotoQueues]:
    """Queues on moto (reached directly, not through a proxy), removed after the test."""
    queues = MotoQueues(sqs_settings)
    yield queues
    queues.delete_all()


@pytest.fixture
def net_ledger(tmp_path: Path) -> Path:
    """Where tests/faults/apps/network_ledger.py records handler calls (LEDGER_PATH)."""
    return tmp_path / "ledger.jsonl"
