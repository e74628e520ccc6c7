"""Settings read from ``QUEUE_*`` environment variables and ``.env``.

Every field is one variable: ``QueueSettings.concurrency`` is ``QUEUE_CONCURRENCY``.
A bad value raises :class:`~aiosqsq.errors.ConfigurationError` naming the variable,
the value given and the form expected; secrets are never echoed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiosqsq.backends.base import MAX_MESSAGE_BYTES, MAX_VISIBILITY_TIMEOUT_S
from aiosqsq.backends.sqs_config import SQSConfig, Transport
from aiosqsq.errors import ConfigurationError

ENV_PREFIX = "QUEUE_"

# The expected form of each value, quoted in error messages.
_EXPECTED: dict[str, str] = {
    "backend": "one of: memory, sqs",
    "concurrency": "an integer from 1 to 10000",
    "concurrency_min": "an integer from 1 to 10000",
    "concurrency_max": "an integer from 1 to 10000",
    "pollers": "an integer from 1 to 64",
    "wait_time_seconds": "an integer from 0 to 20",
    "max_messages": "an integer from 1 to 10",
    "visibility_timeout": "an integer from 0 to 43200 (seconds)",
    "shutdown_timeout": "a number of seconds >= 0",
    "retry_base_delay": "a number of seconds >= 0",
    "retry_max_delay": "a number of seconds from 0 to 43200",
    "sqs_queue_url": "a queue URL or name",
    "sqs_endpoint_url": "a URL such as http://127.0.0.1:5000",
    "aws_region": "a region name such as eu-west-1",
    "sqs_transport": "one of: lean, botocore",
    "metrics": "one of: on, off, emf",
    "tracing": "one of: on, off",
    "queue_stats_interval": "a number of seconds >= 0 (0: off)",
    "liveness_timeout": "a number of seconds > 0",
    "large_payload_bucket": "an S3 bucket name (unset: large payloads off)",
    "large_payload_threshold": "a number of bytes from 0 to 1048576",
    "large_payload_always": "true or false",
    "large_payload_prefix": "an S3 key prefix such as payloads/",
    "large_payload_cleanup": "true or false",
    "large_payload_max_bytes": "a number of bytes >= 1",
    "large_payload_size_attribute": "one of: ExtendedPayloadSize, SQSLargePayloadSize",
    "large_payload_kms_key_id": "a KMS key id, alias or ARN",
    "large_payload_ignore_missing": "true or false",
    "s3_endpoint_url": "a URL such as http://127.0.0.1:5000",
}
_SECRETS = {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"}


class QueueSettings(BaseSettings):
    """Configuration of an :class:`~aiosqsq.App` or a :class:`~aiosqsq.QueueService`.

    Values come from keyword arguments, then ``QUEUE_*`` environment variables, then
    ``.env`` in the current directory, then the defaults below. AWS keys are optional:
    without them the default AWS credential chain (environment, profile, IAM role) applies.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    backend: Literal["memory", "sqs"] = "memory"
    sqs_queue_url: str | None = None
    sqs_endpoint_url: str | None = None
    aws_region: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    sqs_transport: Transport = "lean"

    # None: each handler's limit adapts within [concurrency_min, concurrency_max]
    concurrency: int | None = Field(default=None, ge=1, le=10_000)
    concurrency_min: int = Field(default=1, ge=1, le=10_000)
    concurrency_max: int = Field(default=200, ge=1, le=10_000)
    pollers: int | None = Field(default=None, ge=1, le=64)
    wait_time_seconds: int = Field(default=5, ge=0, le=20)
    max_messages: int = Field(default=10, ge=1, le=10)
    visibility_timeout: int | None = Field(default=None, ge=0, le=MAX_VISIBILITY_TIMEOUT_S)
    shutdown_timeout: float = Field(default=20.0, ge=0)
    retry_base_delay: float = Field(default=1.0, ge=0)
    retry_max_delay: float = Field(default=900.0, ge=0, le=MAX_VISIBILITY_TIMEOUT_S)

    # observability (aiosqsq.observability)
    metrics: Literal["on", "off", "emf"] = "on"
    tracing: Literal["on", "off"] = "on"
    queue_stats_interval: float = Field(default=60.0, ge=0)
    liveness_timeout: float = Field(default=60.0, gt=0)

    # large payloads through S3 (aiosqsq.large_payload); off while no bucket is set
    large_payload_bucket: str | None = None
    large_payload_threshold: int = Field(default=MAX_MESSAGE_BYTES, ge=0, le=MAX_MESSAGE_BYTES)
    large_payload_always: bool = False
    large_payload_prefix: str = ""
    large_payload_cleanup: bool = False
    large_payload_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    large_payload_size_attribute: Literal["ExtendedPayloadSize", "SQSLargePayloadSize"] = (
        "ExtendedPayloadSize"
    )
    large_payload_kms_key_id: str | None = None
    large_payload_ignore_missing: bool = False
    s3_endpoint_url: str | None = None

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc)) from None

    @field_validator(*sorted(_SECRETS), mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty key or token is none: ``QUEUE_AWS_SESSION_TOKEN=`` in the environment
        hides a token in ``.env`` (what ``run --local`` does)."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _concurrency_bounds(self) -> QueueSettings:
        if self.concurrency_min > self.concurrency_max:
            raise ValueError(
                f"QUEUE_CONCURRENCY_MIN={self.concurrency_min} is above "
                f"QUEUE_CONCURRENCY_MAX={self.concurrency_max}: set the minimum at most "
                "the maximum"
            )
        return self

    @model_validator(mode="after")
    def _required_for_backend(self) -> QueueSettings:
        if self.backend == "sqs" and not self.sqs_queue_url:
            raise ValueError(
                "QUEUE_SQS_QUEUE_URL is required when QUEUE_BACKEND=sqs: set it to the "
                "default queue's URL or name, e.g. "
                "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
            )
        return self

    def sqs_config(self) -> SQSConfig:
        """What the SQS backend needs of these settings (it never sees the rest)."""
        return SQSConfig(
            queue_url=self.sqs_queue_url,
            endpoint_url=self.sqs_endpoint_url,
            region=self.aws_region,
            access_key_id=self.aws_access_key_id,
            secret_access_key=self.aws_secret_access_key,
            session_token=self.aws_session_token,
            transport=self.sqs_transport,
        )

    @property
    def default_queue(self) -> str:
        """The queue a handler without ``queue=`` consumes: QUEUE_SQS_QUEUE_URL or "default"."""
        return self.sqs_queue_url or "default"

    def pollers_for(self, concurrency: int) -> int:
        """Pollers for a handler: QUEUE_POLLERS, else one per full batch of 10 slots (at
        least 1, at most 4): more pollers than full batches fit in the slots would split
        the free slots between them, and each receive would ask for fewer than 10."""
        if self.pollers is not None:
            return self.pollers
        return max(1, min(4, concurrency // 10))


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        location = error["loc"]
        if not location:  # a model-level check: its message names the variables itself
            lines.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        field = str(location[0])
        variable = f"{ENV_PREFIX}{field.upper()}"
        if field in _SECRETS:
            lines.append(f"{variable} is invalid (value hidden): expected a string")
            continue
        expected = _EXPECTED.get(field, str(error["msg"]))
        lines.append(f"{variable}={error['input']!r} is invalid: expected {expected}")
    return "; ".join(lines)
