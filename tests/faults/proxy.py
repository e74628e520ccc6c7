"""A fault-injecting HTTP proxy on 127.0.0.1 between an SQS client and the moto server.

It forwards every request (body bytes and signature headers untouched) and injects the
faults moto never produces (reliability.md 3.2), by rules matched on the SQS operation
(``X-Amz-Target: AmazonSQS.<Op>``, the JSON protocol aiobotocore speaks):

* :class:`ForgeError`: an error in the AWS JSON shape (``{"__type", "message"}`` and
  ``x-amzn-query-error: <Code>;Sender``), without forwarding; :data:`ERRORS` holds the
  ones SQS sends (throttling, OverLimit, ExpiredToken, 5xx, stale receipt handles).
* :class:`FailEntries`: per-entry batch failures on HTTP 200 that are really not applied:
  the entries are removed before forwarding and reported ``Failed``.
* :class:`LoseResponse`: the request is applied upstream, then the client sees a
  connection reset (or a 500): the ambiguous outcome of F14.
* :class:`Delay`: the request waits before it is forwarded.

A :class:`Rule` fires on a count of requests or with a probability (seeded), inside an
optional time window counted from when it was added. Every request is logged as an
:class:`Exchange` (JSONL-able) for the test's assertions.

Run it on the test's event loop (``async with FaultProxy(upstream)``) or, while a worker
subprocess runs, on its own loop in a background thread (``with FaultProxy(upstream)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
from aiohttp import web

from tests.faults.loop_thread import LoopThread

Fault = Literal["throttle", "server_error", "fail_first_entry", "lose_response"]
_JSON = "application/x-amz-json-1.0"


@dataclass(frozen=True)
class ForgeError:
    """Answer with this error instead of forwarding. ``code`` is what botocore reports as
    ``Error.Code`` (the query-protocol code of ``x-amzn-query-error``); ``type_name`` is the
    ``__type`` (defaults to ``com.amazonaws.sqs#<code>``)."""

    code: str
    message: str
    status: int = 400
    sender_fault: bool = True
    type_name: str | None = None

    @property
    def name(self) -> str:
        return f"error:{self.code}"


@dataclass(frozen=True)
class FailEntries:
    """Remove ``count`` entries of a batch before forwarding it and report them ``Failed``
    (HTTP 200), so they are really not applied."""

    count: int = 1
    code: str = "InternalError"
    message: str = "We encountered an internal error. Please try again."
    sender_fault: bool = False

    @property
    def name(self) -> str:
        return f"fail_entries:{self.code}"


@dataclass(frozen=True)
class LoseResponse:
    """Forward (the request is applied), then reset the connection or answer a 500."""

    how: Literal["reset", "server_error"] = "reset"

    @property
    def name(self) -> str:
        return f"lose_response:{self.how}"


@dataclass(frozen=True)
class Delay:
    """Hold the request ``seconds`` before forwarding it."""

    seconds: float

    @property
    def name(self) -> str:
        return f"delay:{self.seconds:g}"


Action = ForgeError | FailEntries | LoseResponse | Delay


def _stale(code: str, message: str) -> ForgeError:
    return ForgeError(code, message, 400, True)


# The errors SQS sends, as it sends them (status, __type, query code, fault side).
ERRORS: dict[str, ForgeError] = {
    "ThrottlingException": ForgeError("ThrottlingException", "Rate exceeded", 400),
    "RequestThrottled": ForgeError(
        "RequestThrottled", "Request is throttled: visibility updated too recently", 403
    ),
    "KmsThrottled": ForgeError(
        "KmsThrottled", "Amazon SQS could not use the KMS key: request throttled", 400
    ),
    "OverLimit": ForgeError("OverLimit", "Too many messages in flight for this queue", 403),
    "ExpiredToken": ForgeError(
        "ExpiredToken",
        "The security token included in the request is expired",
        403,
        type_name="com.amazon.coral.service#ExpiredTokenException",
    ),
    "AccessDenied": ForgeError(
        "AccessDenied",
        "User: arn:aws:iam::123456789012:user/consumer is not authorized to perform this "
        "action on the queue because no identity-based policy allows it",
        403,
        type_name="com.amazon.coral.service#AccessDeniedException",
    ),
    "InternalError": ForgeError(
        "InternalError", "We encountered an internal error. Please try again.", 500, False
    ),
    "ServiceUnavailable": ForgeError(
        "ServiceUnavailable", "The request has failed due to a temporary failure.", 503, False
    ),
    "InvalidParameterValue": _stale(
        "InvalidParameterValue",
        "Value AQEB... for parameter ReceiptHandle is invalid. Reason: Message does not "
        "exist or is not available for visibility timeout change.",
    ),
    "ReceiptHandleIsInvalid": _stale(
        "ReceiptHandleIsInvalid", 'The input receipt handle "AQEB..." is not a valid one.'
    ),
}

_LEGACY: dict[Fault, Action] = {
    "throttle": ERRORS["ThrottlingException"],
    "server_error": ForgeError("InternalFailure", "We encountered an internal error", 500, False),
    "fail_first_entry": FailEntries(1, "InternalError", "forged transient failure"),
    "lose_response": LoseResponse("server_error"),
}


@dataclass
class Rule:
    """Inject ``action`` into requests of ``operations`` (empty: every operation).

    It fires at most ``times`` times (None: no limit), each matching request with
    ``probability``, from ``start_s`` to ``end_s`` seconds after it was added; with
    ``queue``, only on requests whose ``QueueUrl`` (or ``QueueName``) contains it."""

    operations: frozenset[str]
    action: Action
    times: int | None = None
    probability: float = 1.0
    start_s: float = 0.0
    end_s: float = math.inf
    queue: str | None = None
    label: str = ""
    fired: int = 0
    added_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.label = self.label or self.action.name

    def matches(self, operation: str, queue: str, now: float) -> bool:
        return (
            (not self.operations or operation in self.operations)
            and (self.queue is None or self.queue in queue)
            and (self.times is None or self.fired < self.times)
            and self.start_s <= now - self.added_at < self.end_s
        )


@dataclass
class Exchange:
    """One request as the proxy saw it. ``status`` is what the client got (``"reset"``:
    the connection was reset); ``applied``: upstream answered it. Batch ``entries`` map
    entry ids to receipt handles; ``succeeded``/``failed`` are the ids the client was told
    about; ``received`` lists ``[MessageId, ReceiptHandle]`` of a ReceiveMessage."""

    t: float
    operation: str
    queue: str = ""
    status: int | str = 0
    fault: str | None = None
    applied: bool = False
    entries: dict[str, str] = field(default_factory=dict)
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    received: list[list[str]] = field(default_factory=list)


class FaultProxy:
    """Forwards to ``upstream``; point the client at :attr:`endpoint_url`.

    ``async with FaultProxy(upstream) as proxy`` serves on the current loop; ``with
    FaultProxy(upstream) as proxy`` serves on a loop of its own in a thread (for worker
    subprocesses) and is stopped on exit. :meth:`add` and :meth:`arm` may be called from
    any thread while it runs."""

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        self.upstream = upstream
        self.requests: Counter[str] = Counter()
        self.faults_fired: Counter[str] = Counter()
        self.log: list[Exchange] = []
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.started = time.monotonic()  # Exchange.t counts from here
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._thread = LoopThread("the fault proxy")

    # --- rules and the log ---------------------------------------------------------------

    def add(
        self,
        operations: str | Iterable[str],
        action: Action,
        *,
        times: int | None = None,
        probability: float = 1.0,
        start_s: float = 0.0,
        end_s: float = math.inf,
        queue: str | None = None,
    ) -> Rule:
        """Add a rule (see :class:`Rule`); ``"*"`` matches every operation."""
        names = [operations] if isinstance(operations, str) else list(operations)
        rule = Rule(
            frozenset(name for name in names if name != "*"),
            action,
            times,
            probability,
            start_s,
            end_s,
            queue,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def arm(self, action: str, fault: Fault, times: int) -> None:
        """Fire ``fault`` on the next ``times`` requests of the operation ``action``."""
        self.add(action, _LEGACY[fault], times=times).label = fault

    def clear(self) -> None:
        """Remove every rule: forward faithfully from now on."""
        with self._lock:
            self._rules.clear()

    def exchanges(self, operation: str | None = None) -> list[Exchange]:
        """A copy of the log, of one operation or all."""
        with self._lock:
            return [e for e in self.log if operation is None or e.operation == operation]

    def write_jsonl(self, path: Path) -> None:
        with path.open("w") as out:
            for exchange in self.exchanges():
                out.write(json.dumps(asdict(exchange)) + "\n")

    def _pick(self, operation: str, queue: str) -> Rule | None:
        now = time.monotonic()
        with self._lock:
            self.requests[operation] += 1
            for rule in self._rules:
                if not rule.matches(operation, queue, now):
                    continue
                if self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                self.faults_fired[f"{operation}:{rule.label}"] += 1
                return rule
        return None

    # --- serving -------------------------------------------------------------------------

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._runner.cleanup()
        await self._session.close()

    def __enter__(self) -> FaultProxy:
        self._thread.start(lambda: self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        operation = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        body = await request.read()
        exchange = Exchange(round(time.monotonic() - self.started, 4), operation)
        params = _json(body)
        exchange.entries = {
            str(e.get("Id")): str(e.get("ReceiptHandle", ""))
            for e in params.get("Entries", [])
            if isinstance(e, dict)
        }
        if "ReceiptHandle" in params:
            exchange.entries = {"": str(params["ReceiptHandle"])}
        with self._lock:
            self.log.append(exchange)
        exchange.queue = str(params.get("QueueUrl", params.get("QueueName", "")))
        rule = self._pick(operation, exchange.queue)
        action = rule.action if rule is not None else None
        exchange.fault = rule.label if rule is not None else None
        if isinstance(action, Delay):
            await asyncio.sleep(action.seconds)
        if isinstance(action, ForgeError):
            exchange.status = action.status
            return _error(action)
        if isinstance(action, FailEntries):
            status, payload = await self._fail_entries(request, params, action, exchange)
        else:
            status, payload = await self._forward(request, body)
            exchange.applied = True
        _note_result(exchange, status, payload)
        if isinstance(action, LoseResponse):
            exchange.succeeded, exchange.failed = [], []
            if action.how == "server_error":
                exchange.status = 500
                return _error(ForgeError("InternalFailure", "forged: the request was applied", 500))
            exchange.status = "reset"
            _reset(request)
            return web.Response(status=500)  # never reaches the client: the socket is gone
        exchange.status = status
        return web.Response(status=status, body=payload, content_type=_JSON)

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, bytes]:
        skip = {"host", "content-length", "connection", "transfer-encoding"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with self._session.post(
            self.upstream + request.path_qs, data=body, headers=headers
        ) as response:
            return response.status, await response.read()

    async def _fail_entries(
        self, request: web.Request, params: dict[str, Any], action: FailEntries, ex: Exchange
    ) -> tuple[int, bytes]:
        """Forward the batch without its first ``count`` entries; report those as failed."""
        entries = list(params.get("Entries", []))
        dropped, rest = entries[: action.count], entries[action.count :]
        failed = [
            {
                "Id": entry["Id"],
                "SenderFault": action.sender_fault,
                "Code": action.code,
                "Message": action.message,
            }
            for entry in dropped
        ]
        result: dict[str, Any] = {"Successful": [], "Failed": failed}
        if rest:
            status, payload = await self._forward(
                request, json.dumps({**params, "Entries": rest}).encode()
            )
            ex.applied = True
            if status != 200:
                return status, payload
            upstream = _json(payload)
            result["Successful"] = upstream.get("Successful", [])
            result["Failed"] += upstream.get("Failed", [])
        return 200, json.dumps(result).encode()


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _note_result(exchange: Exchange, status: int, payload: bytes) -> None:
    if status != 200:
        return
    result = _json(payload)
    exchange.succeeded = [str(e.get("Id")) for e in result.get("Successful", [])]
    exchange.failed = [str(e.get("Id")) for e in result.get("Failed", [])]
    exchange.received = [
        [str(m.get("MessageId")), str(m.get("ReceiptHandle"))] for m in result.get("Messages", [])
    ]
    if exchange.entries.keys() == {""}:  # a single-message call that succeeded
        exchange.succeeded = [""]


def _reset(request: web.Request) -> None:
    """Close the client's connection with a TCP RST (SO_LINGER 0)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _error(error: ForgeError) -> web.Response:
    side = "Sender" if error.sender_fault else "Receiver"
    body = {
        "__type": error.type_name or f"com.amazonaws.sqs#{error.code}",
        "message": error.message,
    }
    return web.Response(
        status=error.status,
        body=json.dumps(body).encode(),
        content_type=_JSON,
        headers={"x-amzn-query-error": f"{error.code};{side}", "X-Amzn-Errortype": error.code},
    )
