"""A fault-injecting HTTP proxy on 127.0.0.1 between an SQS client and the moto server.

It forwards every request and counts them by action; a test arms faults that moto never
produces (reliability.md 3.2): throttling, 5xx bursts, per-entry batch failures on HTTP
200, and "request applied, response lost". Each armed fault fires a given number of
times on the next requests of its action, then the proxy forwards faithfully again.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web

Fault = Literal["throttle", "server_error", "fail_first_entry", "lose_response"]

_ERRORS: dict[str, tuple[int, str, str]] = {
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "server_error": (500, "InternalFailure", "We encountered an internal error"),
    "lose_response": (500, "InternalFailure", "forged: the request was applied"),
}


@dataclass
class _Armed:
    fault: Fault
    times: int


class FaultProxy:
    """``async with FaultProxy(upstream) as proxy:`` then point the client at
    ``proxy.endpoint_url``; ``proxy.arm(action, fault, times)``; ``proxy.requests``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: Counter[str] = Counter()
        self.faults_fired: Counter[str] = Counter()
        self._armed: dict[str, _Armed] = {}
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def arm(self, action: str, fault: Fault, times: int) -> None:
        self._armed[action] = _Armed(fault, times)

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        action = request.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        self.requests[action] += 1
        body = await request.read()
        armed = self._armed.get(action)
        fault = None
        if armed is not None and armed.times > 0:
            armed.times -= 1
            fault = armed.fault
            self.faults_fired[f"{action}:{fault}"] += 1
        if fault in ("throttle", "server_error"):
            return _error(*_ERRORS[fault])
        if fault == "fail_first_entry":
            return await self._fail_first_entry(request, body)
        status, payload = await self._forward(request, body)
        if fault == "lose_response":
            return _error(*_ERRORS[fault])
        return web.Response(status=status, body=payload, content_type="application/x-amz-json-1.0")

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, bytes]:
        skip = {"host", "content-length", "connection", "transfer-encoding"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with self._session.post(
            self.upstream + request.path_qs, data=body, headers=headers
        ) as response:
            return response.status, await response.read()

    async def _fail_first_entry(self, request: web.Request, body: bytes) -> web.Response:
        """Forward the batch without its first entry and report that entry as a transient
        failure (SenderFault false) in an HTTP 200 answer, as SQS does."""
        params: dict[str, Any] = json.loads(body)
        first, *rest = params["Entries"]
        failed = {
            "Id": first["Id"],
            "SenderFault": False,
            "Code": "InternalError",
            "Message": "forged transient failure",
        }
        result: dict[str, Any] = {"Successful": [], "Failed": [failed]}
        if rest:
            params["Entries"] = rest
            status, payload = await self._forward(request, json.dumps(params).encode())
            if status != 200:
                return web.Response(status=status, body=payload)
            upstream = json.loads(payload)
            result["Successful"] = upstream.get("Successful", [])
            result["Failed"] += upstream.get("Failed", [])
        return web.Response(
            body=json.dumps(result).encode(), content_type="application/x-amz-json-1.0"
        )


def _error(status: int, code: str, message: str) -> web.Response:
    sender = "Sender" if status < 500 else "Receiver"
    return web.Response(
        status=status,
        body=json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode(),
        content_type="application/x-amz-json-1.0",
        headers={"x-amzn-query-error": f"{code};{sender}"},
    )
