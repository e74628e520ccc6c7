"""Where the SQS backend's requests go, on both transports alike: TLS roots and proxies.

The lean transport posts with the botocore client's own HTTP settings, so it must verify
TLS with the same roots (``AWS_CA_BUNDLE`` when set) and take the same proxy
(``HTTP(S)_PROXY``, ``NO_PROXY``) as botocore. A loopback server with a self-signed
certificate, and a loopback "proxy" that answers itself, show both.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from aiosqsq.backends import sqs
from aiosqsq.backends.sqs import SQSBackend
from aiosqsq.backends.sqs_config import TRANSPORTS, SQSConfig, Transport
from aiosqsq.errors import BackendError
from tests.backends.loopback import serve

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


def _config(endpoint_url: str, transport: Transport) -> SQSConfig:
    return SQSConfig(
        endpoint_url=endpoint_url,
        region="us-east-1",
        access_key_id=SecretStr("testing"),
        secret_access_key=SecretStr("testing"),
        transport=transport,
    )


class Answering:
    """Answers every request with an empty success and remembers its Host and target."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.headers.get("Host", ""), request.headers.get("X-Amz-Target", "")))
        return web.Response(body=b"{}", content_type="application/x-amz-json-1.0")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    return _self_signed(tmp_path_factory, x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


@pytest.fixture(scope="module")
def other_host_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for another host than 127.0.0.1, and its key."""
    return _self_signed(tmp_path_factory, x509.DNSName("other.example"))


def _self_signed(
    tmp_path_factory: pytest.TempPathFactory, name_of_host: x509.GeneralName
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aiosqsq test endpoint")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([name_of_host]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    value: Transport = request.param
    return value


@pytest.fixture
async def tls_endpoint(certificate: tuple[Path, Path]) -> AsyncIterator[tuple[str, Answering]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    answering = Answering()
    async with serve(answering.handle, ssl_context=context) as url:
        yield url, answering


async def test_tls_is_verified_against_aws_ca_bundle(
    tls_endpoint: tuple[str, Answering],
    certificate: tuple[Path, Path],
    transport: Transport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, answering = tls_endpoint
    monkeypatch.setattr(sqs, "MAX_ATTEMPTS", 1)
    async with SQSBackend(_config(url, transport)) as backend:
        with pytest.raises(BackendError) as caught:  # a self-signed certificate: refused
            await backend.receive(QUEUE, max_messages=1, wait_time_s=0)
    assert (caught.value.code, caught.value.retryable) == ("SSLError", False)
    assert str(caught.value).startswith(
        f"SSLError: sqs:ReceiveMessage on queue {QUEUE!r} failed: TLS verification of the "
        "endpoint failed"
    )
    assert answering.seen == []

    monkeypatch.setenv("AWS_CA_BUNDLE", str(certificate[0]))
    async with SQSBackend(_config(url, transport)) as backend:
        assert await backend.receive(QUEUE, max_messages=1, wait_time_s=0) == []
        assert (backend._lean is not None) == (transport == "lean")
    assert answering.seen == [(url.removeprefix("https://"), "AmazonSQS.ReceiveMessage")]


async def test_the_lean_transport_checks_the_certificates_host_name(
    other_host_certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*other_host_certificate)
    answering = Answering()
    monkeypatch.setattr(sqs, "MAX_ATTEMPTS", 1)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(other_host_certificate[0]))  # a trusted root
    async with (
        serve(answering.handle, ssl_context=context) as url,
        SQSBackend(_config(url, "lean")) as backend,
    ):
        with pytest.raises(BackendError) as caught:  # issued to other.example
            await backend.receive(QUEUE, max_messages=1, wait_time_s=0)
        assert backend.transport == "lean"
    assert caught.value.code == "SSLError"
    assert answering.seen == []


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return port


async def test_requests_take_the_proxy_the_environment_names(
    closed_port: int, transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqs, "MAX_ATTEMPTS", 1)
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    endpoint = f"http://127.0.0.1:{closed_port}"
    answering = Answering()
    async with serve(answering.handle) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        async with SQSBackend(_config(endpoint, transport)) as backend:
            assert await backend.receive(QUEUE, max_messages=1, wait_time_s=0) == []
            proxied = backend.transport
        assert proxied == ("lean through aiohttp" if transport == "lean" else "botocore")
        # the proxy got the request for the endpoint, which nothing serves
        assert answering.seen == [(f"127.0.0.1:{closed_port}", "AmazonSQS.ReceiveMessage")]

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with SQSBackend(_config(endpoint, transport)) as backend:
            with pytest.raises(BackendError) as caught:
                await backend.receive(QUEUE, max_messages=1, wait_time_s=0)
            assert backend.transport == transport  # "lean": our own HTTP/1.1 client
        assert (caught.value.code, caught.value.retryable) == ("EndpointConnectionError", True)
        assert len(answering.seen) == 1
