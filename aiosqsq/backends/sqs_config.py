"""What the SQS backend is configured with: :class:`SQSConfig`, built from the settings.

The backend takes this small frozen object, not the application's settings, so that
``aiosqsq.backends`` never imports ``aiosqsq.settings`` (the settings build it, see
``QueueSettings.sqs_config``). Secrets are :class:`pydantic.SecretStr`: a repr, a log
line or an exception shows ``'**********'``, never the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

from pydantic import SecretStr

Transport = Literal["lean", "botocore"]

#: The transport of the four calls that run per message (receive, delete, visibility
#: change, send): ``lean`` (aiosqsq's own SigV4 and HTTP/1.1 client) or ``botocore``.
TRANSPORTS: Final[tuple[Transport, ...]] = ("lean", "botocore")


@dataclass(frozen=True, slots=True)
class SQSConfig:
    """Where and as whom the SQS backend connects; each field is one ``QUEUE_*`` setting.

    ``queue_url`` is the default queue (``QUEUE_SQS_QUEUE_URL``): its
    ``sqs.<region>.amazonaws.com`` host names a region when ``region`` is not set. The
    keys are optional: without them the default AWS credential chain applies.
    """

    queue_url: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    transport: Transport = "lean"

    def client_credentials(self) -> dict[str, str]:
        """The keyword arguments an aioboto3 client takes for these keys: none when no
        key is set, so that the default credential chain applies."""
        if self.access_key_id is None or self.secret_access_key is None:
            return {}
        credentials = {
            "aws_access_key_id": self.access_key_id.get_secret_value(),
            "aws_secret_access_key": self.secret_access_key.get_secret_value(),
        }
        if self.session_token is not None:
            credentials["aws_session_token"] = self.session_token.get_secret_value()
        return credentials


class SQSConfigSource(Protocol):
    """Anything that builds an :class:`SQSConfig` (``QueueSettings`` does)."""

    def sqs_config(self) -> SQSConfig: ...
