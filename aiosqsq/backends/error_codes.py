"""The AWS error codes that mean "too many requests": throttling, for every backend.

The SQS backend (both transports) and the S3 payload store mark an error whose code is in
:data:`THROTTLING_CODES` as ``throttled`` (:class:`aiosqsq.errors.BackendError`), so the
engine reads a flag instead of matching codes. Codes are compared without SQS's
``AWS.SimpleQueueService.`` prefix.
"""

from __future__ import annotations

from typing import Final

#: What botocore's ``standard`` retry mode retries as throttling
#: (``botocore.retries.standard``): the lean SQS transport retries exactly these, as the
#: botocore transport does.
SDK_RETRIED_THROTTLING_CODES: Final = frozenset(
    {
        "BandwidthLimitExceeded",
        "EC2ThrottledException",
        "LimitExceededException",
        "PriorRequestNotComplete",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "TransactionInProgressException",
    }
)

#: Every code that refuses a call for its rate: the SDK's, plus those botocore does not
#: retry (SQS's ``OverLimit``, the in-flight limit; KMS throttling behind an SSE-KMS queue
#: or an SSE-KMS object).
THROTTLING_CODES: Final = SDK_RETRIED_THROTTLING_CODES | {
    "KMS.ThrottlingException",
    "KmsThrottled",
    "OverLimit",
}
