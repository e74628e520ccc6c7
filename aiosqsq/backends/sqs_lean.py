"""The lean SQS transport: the calls made per message without botocore's per-call work.

``ReceiveMessage``, ``DeleteMessageBatch``, ``ChangeMessageVisibilityBatch`` and
``SendMessageBatch`` (the backend uses no single-message form) go out as botocore would
send them in SQS's JSON protocol (``X-Amz-Target: AmazonSQS.<Action>``, ``Content-Type:
application/x-amz-json-1.0``, ``x-amzn-query-mode: true``, the same field names, blobs in
base64), signed with SigV4 (:mod:`aiosqsq.backends.sigv4`), with bodies written and read
by orjson. Everything that decides *where* and *as whom* comes from the botocore client
the backend already holds, once, when the transport is built:

* the endpoint URL, signing region and signing name from the client's endpoint rules
  (so ``QUEUE_SQS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_SQS``, FIPS and dual-stack resolve as
  they do for botocore);
* the credentials object of the client's signer, asked for frozen credentials on every
  request, which is when botocore refreshes temporary ones (the same advisory and
  mandatory windows, the same lock);
* the client's own aiohttp session's settings: its pool size, TLS context (the system's
  roots, ``AWS_CA_BUNDLE``) and connect/read timeouts, given to an HTTP/1.1 client of
  our own (:mod:`aiosqsq.backends.http11`, a fraction of aiohttp's CPU per request);
  through a proxy (``HTTPS_PROXY``, ``NO_PROXY``), the aiohttp session itself.

Failures are raised as botocore's exceptions (``ClientError`` with the response botocore's
JSON parser would produce, ``EndpointConnectionError``, ``ReadTimeoutError``, ...), so the
backend translates both transports in one place. Retries follow botocore's ``standard``
mode: the same retryable codes, statuses and exceptions, ``random() * min(2 ** (n - 1),
20)`` seconds between attempts, and a retry quota. Nothing here logs key material: the
debug line per request (a wire log, written only with the HTTP client's wire logs on, as
``--wire-debug`` does) names the action, sizes, status and time only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import inspect
import io
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from botocore import exceptions as boto_errors  # type: ignore[import-untyped]
from botocore.awsrequest import prepare_request_dict  # type: ignore[import-untyped]
from botocore.utils import normalize_url_path  # type: ignore[import-untyped]
from yarl import URL

from aiosqsq.backends.error_codes import SDK_RETRIED_THROTTLING_CODES
from aiosqsq.backends.http11 import HTTP11Pool
from aiosqsq.backends.sigv4 import SigV4Signer

logger = logging.getLogger(__name__)
# The line per request is a wire log: written only when the HTTP client's own wire logs
# are on (``--wire-debug`` turns them on; without it they stay at INFO).
_WIRE = logging.getLogger("aiohttp.client")

#: The operations this transport sends; every other one stays on botocore.
OPERATIONS: Final = frozenset(
    {"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch", "SendMessageBatch"}
)

CONTENT_TYPE: Final = "application/x-amz-json-1.0"
TARGET_PREFIX: Final = "AmazonSQS."

# botocore.retries.standard, the "standard" retry mode the botocore transport runs in:
# its throttling codes (aiosqsq.backends.error_codes), these, and 5xx statuses.
_TRANSIENT_CODES: Final = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"}
)
_TRANSIENT_STATUSES: Final = frozenset({500, 502, 503, 504})
_MAX_BACKOFF_S: Final = 20.0
_LARGE_BODY: Final = 2**20
_QUOTA_CAPACITY: Final = 500
_RETRY_COST: Final = 5
_TIMEOUT_RETRY_COST: Final = 10


class RetryQuota:
    """botocore's retry quota: a retry spends capacity (more after a timeout), a request
    that succeeds at once gives one unit back, one that succeeds on retry gives back what
    its latest retry took. An empty quota stops retries until requests succeed again."""

    __slots__ = ("_available",)

    def __init__(self) -> None:
        self._available = _QUOTA_CAPACITY

    def acquire(self, amount: int) -> bool:
        if amount > self._available:
            return False
        self._available -= amount
        return True

    def release(self, amount: int) -> None:
        self._available = min(_QUOTA_CAPACITY, self._available + amount)


class LeanTransport:
    """Sends the operations in :data:`OPERATIONS` for one botocore client (see the module
    docstring). Build it with :meth:`for_client` once the client is open; it closes with
    the client's session. :meth:`call` raises what the botocore client would raise."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        proxy: str | None,
        proxy_headers: Mapping[str, str] | None,
        signer: SigV4Signer,
        credentials: Any,
        user_agent: str | None,
        max_attempts: int,
        pool: HTTP11Pool | None = None,
    ) -> None:
        parts = urlsplit(url)
        self._session = session
        self._pool = pool
        self._url_text = url
        self._url = URL(url, encoded=True)
        self._path = quote(normalize_url_path(parts.path or "/"), safe="/~")
        self._host = _host_header(url)
        self._proxy = proxy
        self._proxy_headers = dict(proxy_headers) if proxy_headers else None
        self._signer = signer
        self._credentials = credentials
        self._max_attempts = max_attempts
        self._quota = RetryQuota()
        self._random = random.random
        # Sent, not signed (as botocore: User-Agent is never signed; Accept-Encoding:
        # identity is what aiobotocore asks for, so bodies come back uncompressed).
        self._unsigned: dict[str, str] = {"Accept-Encoding": "identity"}
        if user_agent:
            self._unsigned["User-Agent"] = user_agent

    def __repr__(self) -> str:
        return f"LeanTransport(url={self._url_text!r}, signer={self._signer!r})"

    @property
    def http_client(self) -> str:
        """What sends the requests: ``"http11"`` (our own) or ``"aiohttp"`` (a proxy)."""
        return "aiohttp" if self._pool is None else "http11"

    async def aclose(self) -> None:
        """Close the connections of its own HTTP client (the session's close with it)."""
        if self._pool is not None:
            await self._pool.aclose()

    @classmethod
    async def for_client(cls, client: Any, *, max_attempts: int) -> LeanTransport | None:
        """The transport for ``client`` (an open aiobotocore SQS client), or None when the
        client resolves to something this transport does not speak (another signature
        version, a botocore without the internals read here): then botocore sends
        everything, as with ``QUEUE_SQS_TRANSPORT=botocore``."""
        try:
            operation = client.meta.service_model.operation_model("ReceiveMessage")
            context: dict[str, Any] = {}
            endpoint_url, extra_headers, _ = await client._resolve_endpoint_ruleset(
                operation, {}, context
            )
            signing = context.get("signing", {})
            if context.get("auth_type", "v4") not in ("v4", "sigv4") or extra_headers:
                _unsupported(f"auth type {context.get('auth_type')!r}")
                return None
            request: dict[str, Any] = {"url_path": "/", "query_string": "", "headers": {}}
            prepare_request_dict(request, endpoint_url)
            http_session = client._endpoint.http_session
            proxy_url = http_session._proxy_config.proxy_url_for(request["url"])
            proxy_headers = http_session._proxy_config.proxy_headers_for(request["url"])
            session = await http_session._get_session(proxy_url)
            pool = None if proxy_url else _own_pool(request["url"], session)
            credentials = client._request_signer._credentials
            region = signing.get("region") or client.meta.region_name
            service = signing.get("signing_name") or "sqs"
            user_agent = _user_agent(client)
        except AttributeError as exc:
            _unsupported(f"botocore internals changed ({exc})")
            return None
        return cls(
            session=session,
            url=request["url"],
            proxy=proxy_url,
            proxy_headers=proxy_headers,
            signer=SigV4Signer(region, service),
            credentials=credentials,
            user_agent=user_agent,
            max_attempts=max_attempts,
            pool=pool,
        )

    @property
    def url(self) -> str:
        return self._url_text

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``operation`` with ``params`` (botocore's parameter names and shapes) and
        return the parsed response, retried as botocore's standard mode retries.

        Raises ``botocore.exceptions.ClientError`` for an error response, and botocore's
        connection exceptions (``EndpointConnectionError``, ``ReadTimeoutError``, ...)."""
        body = _dump(params)
        payload_sha256 = hashlib.sha256(body).hexdigest()
        target = TARGET_PREFIX + operation
        attempt = 1
        last_cost = 0  # the quota the latest retry took: a success gives it back
        while True:
            try:
                status, headers, raw = await self._send(target, body, payload_sha256)
            except (boto_errors.ConnectionError, boto_errors.HTTPClientError) as exc:
                cost = (
                    _TIMEOUT_RETRY_COST
                    if isinstance(
                        exc, boto_errors.ReadTimeoutError | boto_errors.ConnectTimeoutError
                    )
                    else _RETRY_COST
                )
                if attempt >= self._max_attempts or not self._quota.acquire(cost):
                    raise
            else:
                if 200 <= status < 300:
                    try:
                        parsed = parse_response(operation, raw)
                    except ValueError:  # not SQS's JSON (a proxy's page): a 502 to retry
                        status, error = 502, _unparsable(headers)
                    else:
                        self._quota.release(last_cost or 1)
                        return parsed
                else:
                    error = parse_error(status, headers, raw)
                code = error["Error"]["Code"]
                retryable = (
                    code in SDK_RETRIED_THROTTLING_CODES
                    or code in _TRANSIENT_CODES
                    or status in _TRANSIENT_STATUSES
                )
                if (
                    not retryable
                    or attempt >= self._max_attempts
                    or not self._quota.acquire(_RETRY_COST)
                ):
                    raise boto_errors.ClientError(error, operation)
                cost = _RETRY_COST
            last_cost = cost
            await asyncio.sleep(self._random() * min(2 ** (attempt - 1), _MAX_BACKOFF_S))
            attempt += 1

    async def _send(
        self, target: str, body: bytes, payload_sha256: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        credentials = self._credentials
        if credentials is None:
            raise boto_errors.NoCredentialsError()
        frozen = credentials.get_frozen_credentials()  # refreshes when botocore would
        if inspect.isawaitable(frozen):
            frozen = await frozen
        signer = self._signer
        amz_date = signer.timestamp()
        token = frozen.token
        signed: list[tuple[str, str]] = [
            ("content-type", CONTENT_TYPE),
            ("host", self._host),
            ("x-amz-date", amz_date),
        ]
        if token:
            signed.append(("x-amz-security-token", token))
        signed.append(("x-amz-target", target))
        signed.append(("x-amzn-query-mode", "true"))
        authorization = signer.authorization(
            "POST",
            self._path,
            signed,
            payload_sha256,
            frozen.access_key,
            frozen.secret_key,
            amz_date,
        )
        started = time.perf_counter()
        if self._pool is not None:
            signed.append(("Authorization", authorization))
            signed.extend(self._unsigned.items())
            answer = await self._pool.request("POST", self._path, signed, body)
            _log_request(target, body, answer[0], answer[2], started)
            return answer
        headers = dict(signed)
        del headers["host"]  # aiohttp writes the same Host header from the URL
        headers["Authorization"] = authorization
        headers.update(self._unsigned)
        try:
            async with self._session.post(
                self._url,
                # aiohttp writes a body over 1 MiB from a stream (it warns about raw bytes)
                data=body if len(body) <= _LARGE_BODY else io.BytesIO(body),
                headers=headers,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
            ) as response:
                raw = await response.read()
                status = response.status
                response_headers: Mapping[str, str] = response.headers
        except Exception as exc:
            raise _connection_error(exc, self._url_text, self._proxy) from None
        _log_request(target, body, status, raw, started)
        return status, response_headers, raw


def _log_request(target: str, body: bytes, status: int, raw: bytes, started: float) -> None:
    """The wire log line of one request: action, sizes, status and time, no content."""
    if _WIRE.isEnabledFor(logging.DEBUG) and logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s: %d bytes sent, HTTP %d, %d bytes back in %.1f ms",
            target,
            len(body),
            status,
            len(raw),
            (time.perf_counter() - started) * 1000,
        )


def _own_pool(url: str, session: aiohttp.ClientSession) -> HTTP11Pool:
    """Connections of our own to ``url`` (see :mod:`aiosqsq.backends.http11`), with what
    the botocore client's aiohttp session was given: its TLS context (the roots of
    ``AWS_CA_BUNDLE``; verification off only when botocore's is), its connect and read
    timeouts, and its pool size. The certificate's host name is checked too: botocore's
    context leaves that to urllib3, which this client is not."""
    connector: Any = session.connector
    tls = getattr(connector, "_ssl", True)
    if tls is False:
        context: ssl.SSLContext | None = None  # botocore's verify=False
    elif isinstance(tls, ssl.SSLContext):
        context = tls
        if context.verify_mode == ssl.CERT_REQUIRED:
            context.check_hostname = True
    else:
        context = ssl.create_default_context()
    timeout = session.timeout
    return HTTP11Pool(
        url,
        ssl_context=context,
        connect_timeout_s=timeout.sock_connect,
        read_timeout_s=timeout.sock_read,
        max_connections=connector.limit or 100,
    )


# --- bodies ----------------------------------------------------------------------------


def _blob(value: object) -> str:
    """orjson's fallback: a blob (a binary attribute) as botocore sends it, in base64."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot send a value of type {type(value).__name__}")


def _dump(params: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(params, default=_blob)
    except orjson.JSONEncodeError:
        # Text orjson refuses (a lone surrogate) goes out as botocore sends it, escaped,
        # so that SQS, not the client, decides what it accepts.
        return json.dumps(params, default=_blob).encode("utf-8")


def parse_response(operation: str, raw: bytes) -> dict[str, Any]:
    """A success response as botocore's JSON parser returns it (without
    ``ResponseMetadata``): binary message attributes decoded from base64."""
    parsed = orjson.loads(raw) if raw else {}
    if not isinstance(parsed, dict):
        return {}
    if operation == "ReceiveMessage":
        for message in parsed.get("Messages") or ():
            attributes = message.get("MessageAttributes") if isinstance(message, dict) else None
            if attributes:
                _decode_blobs(attributes)
    return parsed


def _decode_blobs(attributes: Mapping[str, Any]) -> None:
    for value in attributes.values():
        if not isinstance(value, dict):
            continue
        if "BinaryValue" in value:
            value["BinaryValue"] = base64.b64decode(value["BinaryValue"])
        if "BinaryListValues" in value:
            value["BinaryListValues"] = [base64.b64decode(v) for v in value["BinaryListValues"]]


def parse_error(status: int, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
    """An error response as botocore's JSON parser returns it: ``Error`` with ``Code``
    (the ``x-amzn-query-error`` code when SQS sends one, the JSON ``__type`` otherwise),
    ``Message``, and ``QueryErrorCode``/``Type`` when translated; ``ResponseMetadata``."""
    metadata: dict[str, Any] = {}
    request_id = headers.get("x-amzn-requestid")
    if request_id is not None:
        metadata["RequestId"] = request_id
    body = raw.strip()
    if status >= 500 and (not body or body.startswith(b"<html>")):
        error: dict[str, Any] = {
            "Code": str(status),
            "Message": http.client.responses.get(status, ""),
        }
        metadata = {}
    else:
        document = _json_or_message(raw)
        error = {"Message": document.get("message", document.get("Message", "")), "Code": ""}
        code = document.get("__type", str(status))
        if isinstance(code, str):
            code = code.split(":", 1)[0].rsplit("#", 1)[-1]
            query_error = headers.get("x-amzn-query-error")
            if query_error is not None:
                parts = query_error.split(";")
                if len(parts) == 2 and parts[0]:
                    error["QueryErrorCode"] = code
                    error["Type"] = parts[1]
                    code = parts[0]
        error["Code"] = code
    metadata["HTTPStatusCode"] = status
    metadata["HTTPHeaders"] = {name.lower(): value for name, value in headers.items()}
    return {"Error": error, "ResponseMetadata": metadata}


def _unparsable(headers: Mapping[str, str]) -> dict[str, Any]:
    """The error for a success status whose body is not SQS's JSON: retried as a 502."""
    return {
        "Error": {"Code": "MalformedResponse", "Message": "the response could not be parsed"},
        "ResponseMetadata": {
            "HTTPStatusCode": 502,
            "HTTPHeaders": {name.lower(): value for name, value in headers.items()},
        },
    }


def _json_or_message(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    text = raw.decode("utf-8", "replace")  # an error page in another charset: shown as is
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"message": text}
    return parsed if isinstance(parsed, dict) else {"message": text}


# --- connections -----------------------------------------------------------------------


def _connection_error(exc: Exception, url: str, proxy: str | None) -> Any:
    """``exc`` (from aiohttp) as the botocore exception aiobotocore raises for it."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return boto_errors.SSLError(endpoint_url=url, error=exc)
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return boto_errors.ProxyConnectionError(proxy_url=_masked_proxy(proxy), error=exc)
    if isinstance(
        exc,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.http_exceptions.BadStatusLine,
    ):
        return boto_errors.ConnectionClosedError(error=exc, request=None, endpoint_url=url)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        if str(exc).lower().startswith("connect"):
            return boto_errors.ConnectTimeoutError(endpoint_url=url, error=exc)
        return boto_errors.ReadTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, aiohttp.ClientConnectionError | socket.gaierror):
        return boto_errors.EndpointConnectionError(endpoint_url=url, error=exc)
    if isinstance(exc, asyncio.TimeoutError):
        return boto_errors.ReadTimeoutError(endpoint_url=url, error=exc)
    return boto_errors.HTTPClientError(error=exc)


def _masked_proxy(proxy: str | None) -> str:
    from botocore.utils import mask_proxy_url

    return str(mask_proxy_url(proxy or ""))


def _host_header(url: str) -> str:
    """The Host header botocore signs: the URL's host, with its port unless default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is not None and parts.port != default:
        return f"{host}:{parts.port}"
    return host


def _user_agent(client: Any) -> str | None:
    creator = getattr(client, "_user_agent_creator", None)
    build = getattr(creator, "to_string", None)
    return str(build()) if callable(build) else None


def _unsupported(reason: str) -> None:
    logger.warning(
        "QUEUE_SQS_TRANSPORT=lean is not available for this endpoint (%s): the AWS SDK "
        "sends every call instead",
        reason,
    )
