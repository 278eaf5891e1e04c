"""AWS plumbing shared by the adapters: building clients, calling them, translating errors.

`make_client` is the one place a boto3 client is built; adapters receive their client by
injection. `translate` turns botocore's errors into the `cirrus_feed.errors` tree with the
one classification of `cirrus_feed.support.aws_errors`: anything worth retrying
(throttling, 5xx, timeouts, connection failures) becomes `BackendUnavailableError`, the
rest `BackendError`. Batching lives in `cirrus_feed.support.batching`, per-entry retries
in `cirrus_feed.support.retry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.errors import BackendError, BackendUnavailableError
from cirrus_feed.support import aws_errors
from cirrus_feed.support.aws_errors import error_code

__all__ = [
    "BATCH_ATTEMPTS",
    "call",
    "call_errors_per_entry",
    "error_code",
    "make_client",
    "retryable_ids",
    "translate",
]

E = TypeVar("E")

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra="cirrus-feed",
)

# Per-entry batch failures (SQS/SNS) are retried by the adapters (`support.retry`).
BATCH_ATTEMPTS = 4


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


def translate(exc: ClientError | BotoCoreError, what: str) -> BackendError:
    """The adapters' domain error for a failed call (`support.aws_errors.translate`):
    `BackendUnavailableError` when worth retrying, else `BackendError`."""
    return aws_errors.translate(
        exc, what, retryable=BackendUnavailableError, permanent=BackendError
    )


def call(client: Any, operation: str, what: str, **kwargs: Any) -> dict[str, Any]:
    """``client.<operation>(**kwargs)`` with every botocore error translated."""
    try:
        response: dict[str, Any] = getattr(client, operation)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, what) from exc
    return response


def retryable_ids(response: dict[str, Any]) -> list[int]:
    """The ``Id``s (entry indexes) in a SQS/SNS ``*Batch`` response's ``Failed`` list that
    failed through no fault of the sender: worth sending again."""
    return [int(f["Id"]) for f in response.get("Failed", []) if not f.get("SenderFault", False)]


def call_errors_per_entry(
    send: Callable[[Sequence[E]], Sequence[E]],
    on_error: Callable[[Sequence[E], BackendError], None],
) -> Callable[[Sequence[E]], list[E]]:
    """``send`` (one batch call, for `support.retry.retry_entries`) whose call-level failure
    is a failure of every entry it carried: ``on_error`` notes it for each, and the entries
    come back for another try (with backoff) when it is worth one (throttling, 5xx, a
    connection lost before or after the request went out). Nothing is raised: the caller
    reports every entry."""

    def wrapped(pending: Sequence[E]) -> list[E]:
        try:
            return list(send(pending))
        except BackendError as exc:
            on_error(pending, exc)
            return list(pending) if exc.retryable else []

    return wrapped
