"""Credentials against the real ``aiosqsq run`` command (reliability.md 3.4: T17b, T28).

* T17b: no ``QUEUE_AWS_*`` keys, so the default AWS credential chain applies, here the
  container provider (``AWS_CONTAINER_CREDENTIALS_FULL_URI`` on 127.0.0.1, which the SDKs
  allow over plain http). It serves a first token that expires 15 min + 4 s after it is
  served: botocore refreshes temporary credentials once less than 15 min are left (its
  advisory window; 10 min is the mandatory one), so the first request after ~4 s fetches
  the second token. A fault proxy answers ``ExpiredToken`` to every request signed with
  the first token from 7 s on: a worker that froze its credentials would exit 5 there.
* T28: least-privilege IAM on a moto server of the test's own, with IAM authentication
  turned on (moto's ``/moto-api/reset-auth``) once the queues and users exist. The
  README's policy must be enough to consume and to move an undecodable message to the
  dead-letter queue; without ``sqs:ChangeMessageVisibility``, a failing handler's
  hand-back is denied, and the README promises exit code 5 with a message naming the
  queue and the call.

  What moto's IAM emulation cannot express, and how the tests bridge it: it authorizes a
  batch call as an action of its own name (``sqs:DeleteMessageBatch``), where SQS checks
  the single-message action, so the policy gets those names too; it checks
  ``GetQueueUrl`` against the resource ``*``, never a queue's ARN; its IAM errors are
  XML even on the JSON protocol (botocore reports the code ``403``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from aiohttp import web

from aiosqsq.cli import ExitCode
from aiosqsq.settings import QueueSettings
from tests.cli.harness import records
from tests.faults.ledger import Ledger, wait_until
from tests.faults.network_run import drain, send
from tests.faults.proxy import ERRORS, FaultProxy, _error
from tests.faults.queues import FaultQueues
from tests.faults.worker import (
    ROOT,
    STRICT,
    lost_access_line,
    order,
    start_worker,
    stop_worker,
    worker_env,
)
from tests.helpers import slow
from tests.moto_server import MotoServer, start_moto_server

# Sentinels: none may appear in anything the worker prints.
KEY_ID = "ASIAT17BSENTINEL4242"
SECRET = "T17bSentinelSecretKey/0123456789+abcdefGH"
TOKEN_1 = "T17bSentinelTokenOne//////////wEaDJ0123456789abcdefghijklmnopqrstuv+A=="
TOKEN_2 = "T17bSentinelTokenTwo//////////wEaDJ0123456789abcdefghijklmnopqrstuv+B=="

ADVISORY_REFRESH_S = 15 * 60  # botocore's window before expiry: refresh when less is left
REFRESH_AFTER_S = 4  # the first token enters that window this long after it is served
REJECT_AFTER_S = 7  # the proxy refuses the first token from then on


# --- T17b: credentials that refresh ------------------------------------------------------


class CredentialServer:
    """The container credential endpoint on 127.0.0.1: the first GET serves TOKEN_1 (due to
    be refreshed ``REFRESH_AFTER_S`` later), every later one TOKEN_2 (valid for an hour)."""

    def __init__(self) -> None:
        self.hits: list[float] = []  # time.monotonic() of each request
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                now = dt.datetime.now(dt.UTC)
                first = not server.hits
                server.hits.append(time.monotonic())
                lifetime_s = ADVISORY_REFRESH_S + REFRESH_AFTER_S if first else 3600
                body = json.dumps(
                    {
                        "AccessKeyId": KEY_ID,
                        "SecretAccessKey": SECRET,
                        "Token": TOKEN_1 if first else TOKEN_2,
                        "Expiration": (now + dt.timedelta(seconds=lifetime_s)).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        ),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/creds"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CredentialServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


class TokenProxy(FaultProxy):
    """The fault proxy, counting requests by session token and answering ``ExpiredToken``
    to those signed with TOKEN_1 once ``reject_from`` (time.monotonic()) has passed."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.reject_from = float("inf")
        self.by_token: Counter[str] = Counter()
        self.rejected = 0
        self.last_token_1 = 0.0  # time.monotonic() of the last TOKEN_1 request
        self.token_2_after_cutoff = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("X-Amz-Security-Token", "")
        now = time.monotonic()
        name = {TOKEN_1: "token_1", TOKEN_2: "token_2"}.get(token, "other")
        self.by_token[name] += 1
        if token == TOKEN_1:
            self.last_token_1 = now
            if now >= self.reject_from:
                self.rejected += 1
                return _error(ERRORS["ExpiredToken"])
        elif token == TOKEN_2 and now >= self.reject_from:
            self.token_2_after_cutoff += 1
        return await super()._handle(request)


@contextlib.contextmanager
def token_proxy(upstream: str) -> Iterator[TokenProxy]:
    proxy = TokenProxy(upstream)
    with proxy:
        yield proxy


def default_chain_env(
    endpoint_url: str, queue_url: str, ledger: Ledger, credentials_url: str, home: Path
) -> dict[str, str]:
    """A worker with no ``QUEUE_AWS_*`` keys: the container provider is the only link of
    the default chain that can answer (no profile files, no instance metadata)."""
    env = worker_env(
        endpoint_url,
        queue_url,
        ledger.path,
        QUEUE_CONCURRENCY="10",
        HANDLER_MIN_S="0.02",
        AWS_CONTAINER_CREDENTIALS_FULL_URI=credentials_url,
        AWS_CONFIG_FILE=str(home / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    del env["QUEUE_AWS_ACCESS_KEY_ID"], env["QUEUE_AWS_SECRET_ACCESS_KEY"]
    return env


@pytest.mark.slow  # 7-14 s: the slow tier (scripts/test -m slow)
def test_t17b_refreshable_credentials_are_refreshed_before_they_expire(
    moto_endpoint: str, queues: FaultQueues, ledger: Ledger, tmp_path: Path
) -> None:
    first, second = 40, 40
    url = send(queues, first)
    with CredentialServer() as credentials, token_proxy(moto_endpoint) as proxy:
        env = default_chain_env(proxy.endpoint_url, url, ledger, credentials.url, tmp_path)
        with start_worker(env) as worker:
            assert credentials.hits, "the worker did not fetch credentials from the endpoint"
            proxy.reject_from = credentials.hits[0] + REJECT_AFTER_S
            ledger.wait_for("ok", first, unique=True, timeout_s=20)
            # the worker's own polls bring a request signed with the second token past
            # the point where the first one is refused
            wait_until(
                lambda: proxy.token_2_after_cutoff > 0 or worker.process.poll() is not None,
                "a request with the refreshed token after the cutoff",
                timeout_s=20,
            )
            if worker.process.poll() is None:
                queues.send_seqs(url, range(100, 100 + second))
                figures = drain(queues, url, ledger, first + second, time.monotonic())
            else:  # it stopped: the figures of what it did, at once
                figures = drain(queues, url, ledger, first, time.monotonic(), 0)
            alive = worker.process.poll() is None
            code, t_shutdown = stop_worker(worker) if alive else (worker.wait(), 0.0)
            output = worker.output
    fetched_at = [round(t - credentials.hits[0], 1) for t in credentials.hits]
    last_token_1 = proxy.last_token_1 - credentials.hits[0]
    print(
        figures.line(
            "T17b",
            credential_fetches=len(credentials.hits),
            fetched_at=fetched_at,
            requests_by_token=dict(proxy.by_token),
            last_token_1_at=f"{last_token_1:.1f}s",
            rejected=proxy.rejected,
            alive=alive,
            t_shutdown=f"{t_shutdown:.1f}s",
        )
    )
    assert alive, output
    assert code == 0, output
    assert len(credentials.hits) >= 2
    assert REFRESH_AFTER_S - 2 <= fetched_at[1] < REJECT_AFTER_S  # refreshed in advance
    assert proxy.rejected == 0  # the first token was never used past its end
    assert proxy.by_token["other"] == 0  # every request signed with a served token
    assert (figures.handled, figures.dup, figures.lost) == (first + second, 0, 0)
    assert (figures.dlq, figures.residual) == (0, 0)
    assert "the default chain" in output
    for sentinel in (TOKEN_1, TOKEN_2, SECRET):
        assert sentinel not in output


# --- T28: least-privilege IAM (smoke) ----------------------------------------------------

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
# moto authorizes each batch call as an action of its own name; SQS authorizes it as
# the single-message action (README: "The batch calls need no permissions of their own").
MOTO_BATCH_ALIASES = {
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
    "sqs:SendMessage": "sqs:SendMessageBatch",
}


def readme_policy(queue_name: str, *, without: str | None = None) -> dict[str, Any]:
    """The README's consumer policy for ``queue_name`` (its JSON block under "The IAM
    policy a consumer needs"), less the action ``without``, with moto's batch names."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### The IAM policy a consumer needs", 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    block = block.replace("REGION", REGION).replace("ACCOUNT_ID", ACCOUNT_ID)
    policy: dict[str, Any] = json.loads(block.replace("QUEUE_NAME", queue_name))
    for statement in policy["Statement"]:
        actions = [a for a in statement["Action"] if a != without]
        statement["Action"] = actions + [
            MOTO_BATCH_ALIASES[a] for a in actions if a in MOTO_BATCH_ALIASES
        ]
    return policy


class IamMoto:
    """A moto server of the test's own (the session's is shared and unauthenticated):
    queues and IAM users are made before :meth:`authenticate`; from then on moto checks
    every request's signature and the caller's policies."""

    def __init__(self, server: MotoServer) -> None:
        self.server = server
        self.endpoint_url = server.endpoint_url
        self._iam: Any = boto3.client(
            "iam",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        admin = self.user(
            "admin",
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            },
        )
        self.queues = FaultQueues(
            QueueSettings(
                backend="sqs",
                sqs_queue_url="default",
                sqs_endpoint_url=self.endpoint_url,
                aws_region=REGION,
                aws_access_key_id=admin[0],
                aws_secret_access_key=admin[1],
            )
        )

    def user(self, name: str, policy: dict[str, Any]) -> tuple[str, str]:
        """A new IAM user with ``policy`` inline; its access key id and secret."""
        self._iam.create_user(UserName=name)
        self._iam.put_user_policy(
            UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy)
        )
        key = self._iam.create_access_key(UserName=name)["AccessKey"]
        return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

    def close(self) -> None:
        self._iam.close()

    def authenticate(self) -> None:
        """Turn IAM authentication on for every request from now on."""
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0",  # requests moto lets through unauthenticated from now on
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


@pytest.fixture
def iam_moto() -> Iterator[IamMoto]:
    server = start_moto_server()
    try:
        iam = IamMoto(server)
        yield iam
        iam.close()
    finally:
        server.stop()


def consumer_env(
    iam: IamMoto, url: str, ledger: Ledger, key: tuple[str, str], **knobs: str
) -> dict[str, str]:
    return worker_env(
        iam.endpoint_url,
        url,
        ledger.path,
        QUEUE_AWS_ACCESS_KEY_ID=key[0],
        QUEUE_AWS_SECRET_ACCESS_KEY=key[1],
        **knobs,
    )


def test_t28_the_readme_policy_is_enough_to_consume_and_dead_letter(
    iam_moto: IamMoto, ledger: Ledger
) -> None:
    sent = 50
    url = iam_moto.queues.create_with(visibility_timeout_s=30)
    name = url.rsplit("/", 1)[1]
    key = iam_moto.user("consumer", readme_policy(name))
    iam_moto.authenticate()
    iam_moto.queues.send_seqs(url, range(sent))
    iam_moto.queues.send(url, ["not json {"])
    started = time.monotonic()
    with start_worker(consumer_env(iam_moto, url, ledger, key)) as worker:
        consuming = worker.process.poll() is None
        timeout_s = 20 if consuming else 0
        figures = drain(iam_moto.queues, url, ledger, sent, started, timeout_s=timeout_s)
        code, t_shutdown = stop_worker(worker) if consuming else (worker.wait(), 0.0)
        output = worker.output
    errors = [r.message for r in records(output) if r.level == "ERROR"]
    print(
        figures.line(
            "T28",
            policy="README",
            exit_code=code,
            errors=len(errors),
            t_shutdown=f"{t_shutdown:.1f}s",
        )
    )
    assert consuming, output
    assert code == 0, output
    assert (figures.handled, figures.dup, figures.residual) == (sent, 0, 0)
    assert figures.dlq == 1  # the undecodable message, moved at once
    assert len(errors) == 1, output
    assert "moved to the dead-letter queue" in errors[0], output


def test_t28_without_change_message_visibility_a_nack_stops_the_worker_with_exit_5(
    iam_moto: IamMoto, ledger: Ledger
) -> None:
    url = iam_moto.queues.create_with(visibility_timeout_s=30)
    name = url.rsplit("/", 1)[1]
    # GetQueueUrl on any resource: moto authorizes it against "*", never a queue's ARN
    # (the first T28 test covers the README's own policy)
    policy = readme_policy(name, without="sqs:ChangeMessageVisibility")
    policy["Statement"].append({"Effect": "Allow", "Action": ["sqs:GetQueueUrl"], "Resource": "*"})
    key = iam_moto.user("consumer", policy)
    iam_moto.authenticate()
    iam_moto.queues.send(url, [order(0)])
    env = consumer_env(iam_moto, url, ledger, key, STRICT_FAIL_SEQS="0", QUEUE_SHUTDOWN_TIMEOUT="2")
    with start_worker(env, app=STRICT) as worker:
        consuming = worker.process.poll() is None
        failed_at = time.monotonic()
        if consuming:
            ledger.wait_for("fail", 1, timeout_s=20)  # the handler raised: its nack is denied
            failed_at = time.monotonic()
        try:
            code: int | None = worker.wait(timeout_s=10)
        except subprocess.TimeoutExpired:
            code = None
        t_exit = time.monotonic() - failed_at
        output = worker.output
    errors = [r.message for r in records(output) if r.level == "ERROR"]
    denied = [m for m in errors if "sqs:ChangeMessageVisibility" in m and "denied" in m.lower()]
    nack_warnings = [r for r in records(output) if "visibility change" in r.message]
    print(
        f"T28-denied: sent=1 handled=0 failed={len(ledger.events('fail'))} "
        f"consuming={consuming} exit_code={code} t_exit={t_exit:.1f}s "
        f"denied_errors={len(denied)} nack_warnings={len(nack_warnings)}"
    )
    assert consuming, output
    # README: "A missing queue or denied access stops it with exit code 5 and a message
    # naming the queue and the call."
    assert code == ExitCode.QUEUE_ACCESS_LOST, output
    assert t_exit <= slow(2 * 5)  # the shutdown timeout of 2 s and a flush, 2x slack
    assert len(denied) == 1, output
    # the only ERROR lines: the handler's failure, and the one naming the queue and the call
    lost_access_line(output, url, "ChangeMessageVisibilityBatch", besides="handler ")
