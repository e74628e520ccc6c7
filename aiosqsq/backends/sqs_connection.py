"""Where and as whom the SQS backend connects: the checks of its :class:`SQSConfig`.

The endpoint must be https, or http on a loopback host (the S3 payload store's too);
the keys come as a pair; the region is resolved once, from the first place that names
one. Every check raises :class:`~aiosqsq.errors.ConfigurationError` naming the
``QUEUE_*`` variable, and never quotes a user name, password or key.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlsplit

from aiosqsq.backends.object_store import is_loopback_url
from aiosqsq.backends.queue_address import is_queue_url
from aiosqsq.backends.sqs_config import SQSConfig
from aiosqsq.errors import ConfigurationError

DEFAULT_REGION: Final = "us-east-1"  # only when no region is configured anywhere

_AWS_QUEUE_HOST = re.compile(r"sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?")


def checked_endpoint(
    url: str | None,
    variable: str = "QUEUE_SQS_ENDPOINT_URL",
    example: str = "https://sqs.eu-west-1.amazonaws.com",
) -> str | None:
    """``url`` (the setting ``variable``) if it is an https URL, or http on a loopback
    host; raises :class:`ConfigurationError` otherwise, showing ``example``. The S3
    payload store checks ``QUEUE_S3_ENDPOINT_URL`` with it too."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"{variable} is invalid (value hidden): it must not contain a user "
            f"name or password, expected a URL such as {example}"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{variable}={url!r} is invalid: expected a URL such as "
            f"{example} or http://127.0.0.1:5000"
        )
    if parts.scheme == "http" and not is_loopback_url(url):
        raise ConfigurationError(
            f"{variable}={url!r} is invalid: plain http is allowed only for a "
            "loopback host (127.0.0.0/8, localhost, ::1); use https"
        )
    return url


def check_credentials(config: SQSConfig) -> None:
    """Raise :class:`ConfigurationError` unless the keys are set as a pair (a session
    token only with them), or not at all (the default AWS credential chain)."""
    has_key = config.access_key_id is not None
    has_secret = config.secret_access_key is not None
    if has_key != has_secret:
        raise ConfigurationError(
            "QUEUE_AWS_ACCESS_KEY_ID and QUEUE_AWS_SECRET_ACCESS_KEY must be set together "
            "(or neither, to use the default AWS credential chain)"
        )
    if config.session_token is not None and not has_key:
        raise ConfigurationError(
            "QUEUE_AWS_SESSION_TOKEN needs QUEUE_AWS_ACCESS_KEY_ID and "
            "QUEUE_AWS_SECRET_ACCESS_KEY as well"
        )


def resolve_region(config: SQSConfig, session: Any) -> tuple[str, str]:
    """(region, where it came from): ``QUEUE_AWS_REGION``, else the region of an
    ``sqs.<region>.amazonaws.com`` queue URL, else the AWS configuration ``session``
    reads (``AWS_REGION``, ``AWS_DEFAULT_REGION``, profile), else :data:`DEFAULT_REGION`."""
    if config.region:
        return config.region, "QUEUE_AWS_REGION"
    if config.queue_url and is_queue_url(config.queue_url):
        match = _AWS_QUEUE_HOST.fullmatch(urlsplit(config.queue_url).hostname or "")
        if match:
            return match.group(1), "the queue URL"
    configured = session.region_name
    if isinstance(configured, str) and configured:
        return configured, "the AWS configuration"
    return DEFAULT_REGION, "default: no region configured"
