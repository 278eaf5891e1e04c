"""AWS plumbing shared by the adapters: building clients, translating errors, backing off.

`make_client` is the one place a boto3 client is built; adapters receive their client by
injection. `translate` turns botocore's errors into the `cirrus_feed.errors` tree: anything
worth retrying (throttling, 5xx, timeouts, connection failures) becomes
`BackendUnavailableError`, the rest `BackendError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from cirrus_feed.errors import BackendError, BackendUnavailableError
from cirrus_feed.support.clock import SYSTEM_CLOCK, Clock

_T = TypeVar("_T")

# botocore retries these itself (mode "standard"); when they still surface they are transient.
_RETRYABLE_CODES = frozenset(
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
_TRANSIENT_BOTOCORE = (
    ConnectionError,
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra="cirrus-feed",
)

# Per-entry batch failures (SQS/SNS) and DynamoDB UnprocessedKeys are retried by the adapters.
BATCH_ATTEMPTS = 4
_BACKOFF_BASE_SECONDS = 0.05


def make_client(
    service: str,
    *,
    region: str,
    endpoint_url: str | None = None,
    session: boto3.session.Session | None = None,
) -> Any:
    """A boto3 client for ``service`` with standard retries and bounded timeouts.

    ``endpoint_url`` points it at moto's server or LocalStack; ``session`` carries
    credentials (default: a new session reading the usual AWS configuration chain).
    """
    session = session or boto3.session.Session()
    return session.client(  # type: ignore[call-overload]
        service, region_name=region, endpoint_url=endpoint_url, config=_CONFIG
    )


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: ClientError | BotoCoreError, what: str) -> BackendError:
    """The domain error for a failed call; ``what`` names the operation and its subject.

    Accepts `BotoCoreError` too, since connection failures and timeouts are not
    `ClientError`s. The caller raises the result ``from exc``.
    """
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = f"{what} failed: {exc}"
        if code in _RETRYABLE_CODES or status == 429 or status >= 500:
            return BackendUnavailableError(message)
        return BackendError(message)
    if isinstance(exc, _TRANSIENT_BOTOCORE):
        return BackendUnavailableError(f"{what} failed: {exc}")
    return BackendError(f"{what} failed: {exc}")


def call(client: Any, operation: str, what: str, **kwargs: Any) -> dict[str, Any]:
    """``client.<operation>(**kwargs)`` with every botocore error translated."""
    try:
        response: dict[str, Any] = getattr(client, operation)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, what) from exc
    return response


def backoff(attempt: int, clock: Clock = SYSTEM_CLOCK) -> None:
    """Sleep before retry number ``attempt`` (1-based): 50 ms, 100 ms, 200 ms, ..."""
    clock.sleep(_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sized_chunks(
    items: Iterable[tuple[_T, int]], *, max_entries: int, max_bytes: int
) -> Iterator[list[_T]]:
    """Group ``(item, size)`` pairs in order into batches within both limits.

    An item bigger than ``max_bytes`` on its own still gets a batch of one; callers drop
    such items beforehand when the service would refuse them.
    """
    batch: list[_T] = []
    total = 0
    for item, size in items:
        if batch and (len(batch) == max_entries or total + size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size
    if batch:
        yield batch
