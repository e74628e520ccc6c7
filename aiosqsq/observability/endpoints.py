"""What ``/metrics``, ``/livez`` and ``/readyz`` answer in a worker, in a supervisor of
``--workers``, and in a web service that embeds an app; and the command's HTTP endpoint.

A supervisor gives its workers two directories through the environment: prometheus-client's
``PROMETHEUS_MULTIPROC_DIR`` (each worker writes its metrics there; the supervisor sums
them, dead workers' counters included) and :data:`~aiosqsq.observability.health.HEALTH_DIR_ENV`
(each worker writes its health there; the supervisor answers for all of them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from aiosqsq.errors import ConfigurationError
from aiosqsq.observability import health as health_module
from aiosqsq.observability.http_server import Endpoints, HTTPEndpoint
from aiosqsq.observability.http_server import asgi_app as endpoints_app

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

logger = logging.getLogger("aiosqsq.observability")

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def _prometheus_text(registry: CollectorRegistry | None) -> Callable[[], tuple[str, bytes]] | None:
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    except ImportError:
        return None
    chosen = registry or REGISTRY

    def text() -> tuple[str, bytes]:
        return CONTENT_TYPE_LATEST, generate_latest(chosen)

    return text


def process_endpoints(registry: CollectorRegistry | None = None) -> Endpoints:
    """The endpoints of the apps consuming in this process, metrics from ``registry``
    (default: prometheus-client's global one)."""
    return Endpoints(_prometheus_text(registry), health_module.process_health)


def asgi_app(registry: CollectorRegistry | None = None) -> Any:
    """An ASGI app serving ``/metrics``, ``/livez`` and ``/readyz`` of the apps consuming
    in this process: mount it in a web service that embeds an app."""
    return endpoints_app(process_endpoints(registry))


def supervisor_endpoints(metrics_dir: str, health_dir: str, *, stale_s: float) -> Endpoints:
    """The endpoints of a supervisor: the workers' metrics summed, their health joined."""
    metrics: Callable[[], tuple[str, bytes]] | None = None
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
    except ImportError:
        pass
    else:

        def metrics() -> tuple[str, bytes]:
            for name in os.listdir(metrics_dir):  # live gauges of workers gone: dropped
                pid = name.rsplit("_", 1)[-1].removesuffix(".db")
                if (
                    name.startswith("gauge_live")
                    and pid.isdigit()
                    and not health_module.process_alive(int(pid))
                ):
                    mark_process_dead(int(pid), metrics_dir)  # type: ignore[no-untyped-call]
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
            return CONTENT_TYPE_LATEST, generate_latest(registry)

    def health() -> tuple[health_module.Verdict, health_module.Verdict]:
        return health_module.workers_health(health_dir, stale_s=stale_s)

    return Endpoints(metrics, health)


def _listen(endpoints: Endpoints, host: str, port: int) -> HTTPEndpoint:
    try:
        return HTTPEndpoint(endpoints, host, port)
    except OSError as exc:
        raise ConfigurationError(
            f"QUEUE_HTTP_PORT={port}: cannot listen on {host}:{port} ({exc.strerror or exc}): "
            "choose a free port, or 0 to serve nothing"
        ) from None


@contextlib.contextmanager
def command_endpoint(
    host: str, port: int, *, supervising: bool, liveness_timeout_s: float
) -> Iterator[None]:
    """Serve the endpoints for ``aiosqsq run`` while the body runs: this process's
    (one worker), or, ``supervising``, the sum of the workers the body starts (their
    directories are set in the environment here, and removed after); a worker silent
    for ``liveness_timeout_s`` is not live. Port 0: nothing is served.

    Raises :class:`~aiosqsq.errors.ConfigurationError` when the port cannot be bound.
    """
    if not port or os.environ.get("AIOSQSQ_SUPERVISED") == "1":
        yield  # a supervised worker writes its files; its supervisor serves
        return
    if not supervising:
        endpoint = _listen(process_endpoints(), host, port)
        logger.info("serving /metrics, /livez and /readyz on http://%s:%d", host, endpoint.port)
        try:
            yield
        finally:
            endpoint.close()
        return
    base = tempfile.mkdtemp(prefix="aiosqsq-")
    metrics_dir = os.environ.setdefault(MULTIPROC_ENV, os.path.join(base, "metrics"))
    health_dir = os.path.join(base, "health")
    os.makedirs(metrics_dir, exist_ok=True)
    os.makedirs(health_dir)
    os.environ[health_module.HEALTH_DIR_ENV] = health_dir
    try:
        endpoint = _listen(
            supervisor_endpoints(metrics_dir, health_dir, stale_s=liveness_timeout_s), host, port
        )
        logger.info(
            "serving /metrics, /livez and /readyz of all workers on http://%s:%d",
            host,
            endpoint.port,
        )
        try:
            yield
        finally:
            endpoint.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
