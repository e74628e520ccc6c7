"""Observability: Prometheus metrics, health probes, log context (and, with the extras,
OpenTelemetry traces), installed on every app as middleware and observers.

For a web service that embeds an app::

    from aiosqsq.observability import instrument, asgi_app
    instrument(app, registry=my_registry)        # before the app starts
    web.mount("/aiosqsq", asgi_app(registry=my_registry))   # /metrics, /livez, /readyz
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiosqsq.observability.endpoints import asgi_app, process_endpoints
from aiosqsq.observability.log_context import MessageContextFilter
from aiosqsq.observability.runtime import instrument

if TYPE_CHECKING:
    pass

__all__ = ["MessageContextFilter", "asgi_app", "instrument", "process_endpoints"]
