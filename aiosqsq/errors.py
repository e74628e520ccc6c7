"""Exceptions raised by aiosqsq.

The tree::

    AiosqsqError
    ├── ConfigurationError       a QUEUE_* setting is missing or invalid
    ├── HandlerSignatureError    @app.handler was given a function it cannot call
    ├── AppLoadError             MODULE:ATTRIBUTE cannot be loaded (aiosqsq.importer)
    ├── PayloadTooLargeError     a body or batch exceeds the SQS size limit
    ├── PayloadError             a received body does not decode or validate (codec.py)
    ├── LeaseError               Message.extend/release on a message no longer held
    ├── StartupError             the app's lifespan failed to start (exit code 7)
    └── BackendError             a queue operation failed as a whole (carries the SQS error
                                 code; ``retryable``, ``throttled``)
        ├── QueueNotFoundError   the queue does not exist
        ├── AccessError          access denied, or the credentials are invalid or expired
        ├── BatchRequestError    a whole batch request was rejected
        ├── MessageRefusedError  SQS refused a message for its content: it was not sent
        ├── ObjectNotFoundError  a large payload's S3 object does not exist
        └── ObjectTooLargeError  a large payload's S3 object is over the configured maximum

    Retry                        not an error: a handler's way to ask for "again, later"

Per-entry failures inside a batch are not raised: they come back in
:class:`aiosqsq.backends.base.BatchResult`, as SQS returns them with HTTP 200.
"""

from __future__ import annotations


class AiosqsqError(Exception):
    """Base class of every error aiosqsq raises."""


class ConfigurationError(AiosqsqError):
    """A setting is missing or invalid; the message names the ``QUEUE_*`` variable."""


class HandlerSignatureError(AiosqsqError, TypeError):
    """A handler's signature cannot be served; the message names the function."""


class PayloadTooLargeError(AiosqsqError, ValueError):
    """A message body (plus attributes) or a batch is over SQS's 1 MiB limit."""


class BackendError(AiosqsqError):
    """A queue operation failed as a whole.

    ``code`` is SQS's error code (``AWS.SimpleQueueService.NonExistentQueue``,
    ``TooManyEntriesInBatchRequest``, ...) and ``retryable`` says whether trying the
    same request again later may succeed (throttling, 5xx, network). ``throttled`` says
    the service refused the call for its rate: the backend that translated the error
    decides it from the service's code, so that callers (the adaptive limit) never match
    codes themselves. A throttled error is always retryable.
    """

    def __init__(
        self, code: str, message: str, *, retryable: bool = False, throttled: bool = False
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable or throttled
        self.throttled = throttled

    def copy(self) -> BackendError:
        """The same error (its class, text and attributes), as a new exception: for each
        of several callers to raise its own (one request's error, shared by a batch)."""
        fresh = type(self).__new__(type(self))
        fresh.args = self.args
        fresh.__dict__.update(self.__dict__)
        return fresh


class QueueNotFoundError(BackendError):
    """The named queue does not exist (or is not visible to these credentials)."""

    def __init__(self, queue: str, operation: str | None = None) -> None:
        refused = f" (sqs:{operation} refused)" if operation else ""
        super().__init__(
            "AWS.SimpleQueueService.NonExistentQueue",
            f"queue {queue!r} does not exist{refused}: create it or check the name, region "
            "and account",
        )
        self.queue = queue
        self.operation = operation


class AccessError(BackendError):
    """Access was denied, or the credentials are invalid or expired: no retry of any call
    can succeed until the operator fixes the policy or the credentials."""


class BatchRequestError(BackendError):
    """A batch request was rejected whole: too many entries, ids not distinct, too long."""


class MessageRefusedError(BackendError):
    """SQS refused a message for what it holds (its attributes, group id, characters):
    it was not sent, and no attempt to send it can have been taken."""


class Retry(Exception):
    """Raise from a handler to have the message delivered again after ``delay_s`` seconds.

    The message is not deleted; its visibility is set to ``delay_s`` (capped at SQS's
    12-hour limit). Its receive count still grows, so the queue's redrive policy moves
    it to the dead-letter queue after ``maxReceiveCount`` deliveries.
    """

    def __init__(self, delay_s: float = 0) -> None:
        if delay_s < 0:
            raise ValueError(f"Retry(delay_s={delay_s!r}): delay_s must be >= 0")
        super().__init__(f"retry in {delay_s:g} s")
        self.delay_s = delay_s


#: What a failed queue call raises: an SQS error, or the network (OSError, TimeoutError).
CALL_FAILURES = (BackendError, OSError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Whether the same call may succeed later: throttling, 5xx and network errors, not a
    refusal (access, a missing queue, a bad request)."""
    if isinstance(exc, BackendError):
        return exc.retryable
    return isinstance(exc, OSError | TimeoutError)


class LeaseError(AiosqsqError):
    """``Message.extend`` or ``Message.release`` cannot be done: the message was already
    settled (deleted, retried or handed back), or the extension would pass SQS's limit of
    12 hours after the receive."""


class StartupError(AiosqsqError):
    """The app's lifespan raised before it yielded: nothing was received. The original
    exception is the ``__cause__``."""


def describe_error(exc: BaseException) -> str:
    """``Class: text`` of an exception for a log line (its text may be hostile: the log
    format escapes it); never raises."""
    try:
        text = str(exc)
    except Exception:  # a hostile __str__ must not end the worker
        text = "<exception text unavailable>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
