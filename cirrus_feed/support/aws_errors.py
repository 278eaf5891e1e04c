"""The one classification of botocore's errors: worth retrying, or not.

Worth retrying: throttling and transient service codes, HTTP 429 and 5xx, connection
failures, timeouts and broken response streams. Everything else (access denied, missing
resources, bad parameters, no credentials) is permanent. `translate` turns an error into
the caller's pair of domain errors: `BackendUnavailableError`/`BackendError` for the
adapters, `SourceUnavailableError` and a `FeederError` for feeders (which must not import
`cirrus_feed.backends`). The caller raises the result ``from exc``.
"""

from __future__ import annotations

from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from cirrus_feed.errors import CirrusFeedError

AwsError = ClientError | BotoCoreError
_R = TypeVar("_R", bound=CirrusFeedError)
_P = TypeVar("_P", bound=CirrusFeedError)

# botocore retries these itself (mode "standard"); when they still surface they are transient.
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "BandwidthLimitExceeded",
        "TransactionInProgressException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "KMSThrottlingException",
        "AWS.SimpleQueueService.RequestThrottled",
    }
)
# Connection failures (incl. connect timeouts), read timeouts, closed connections, streams
# broken mid-body: the request may well succeed next time.
_TRANSIENT_BOTOCORE = (BotoConnectionError, HTTPClientError, IncompleteReadError)


def error_code(exc: BaseException) -> str:
    """The service's error code (``"NoSuchKey"``, ``"SlowDown"``); ``""`` if it has none."""
    if not isinstance(exc, ClientError):
        return ""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_retryable(exc: AwsError) -> bool:
    """True when the failed call is worth trying again later."""
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return error_code(exc) in RETRYABLE_CODES or status == 429 or status >= 500
    return isinstance(exc, _TRANSIENT_BOTOCORE)


def translate(exc: AwsError, what: str, *, retryable: type[_R], permanent: type[_P]) -> _R | _P:
    """``retryable`` or ``permanent`` (per `is_retryable`) saying ``"<what> failed: <exc>"``;
    ``what`` names the operation and its subject."""
    kind: type[_R] | type[_P] = retryable if is_retryable(exc) else permanent
    return kind(f"{what} failed: {exc}")
