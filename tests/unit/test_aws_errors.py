"""The one classification of botocore errors and its translation to domain errors."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from cirrus_feed.errors import (
    BackendError,
    BackendUnavailableError,
    FeederError,
    InvalidSourceDataError,
    SourceUnavailableError,
)
from cirrus_feed.support.aws_errors import error_code, is_retryable, translate


def client_error(code: str, status: int = 400) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Op")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "exc",
    [
        client_error("SlowDown", 503),
        client_error("ThrottlingException"),
        client_error("ProvisionedThroughputExceededException"),
        client_error("Whatever", 429),
        client_error("Whatever", 500),
        client_error("Whatever", 504),
        EndpointConnectionError(endpoint_url="http://x"),
        ConnectTimeoutError(endpoint_url="http://x"),
        ReadTimeoutError(endpoint_url="http://x"),
        ResponseStreamingError(error="reset"),
        IncompleteReadError(actual_bytes=1, expected_bytes=2),
    ],
)
def test_aws_errors_retryable(exc: ClientError | BotoCoreError) -> None:
    assert is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        client_error("AccessDenied", 403),
        client_error("NoSuchKey", 404),
        client_error("ValidationException"),
        NoCredentialsError(),
        ParamValidationError(report="bad"),
    ],
)
def test_aws_errors_permanent(exc: ClientError | BotoCoreError) -> None:
    assert not is_retryable(exc)


def test_aws_errors_error_code() -> None:
    assert error_code(client_error("NoSuchKey", 404)) == "NoSuchKey"
    assert error_code(NoCredentialsError()) == ""
    assert error_code(ValueError("x")) == ""


def test_aws_errors_translate_picks_the_callers_pair() -> None:
    slow, denied = client_error("SlowDown", 503), client_error("AccessDenied", 403)

    backend = translate(
        slow, "S3 GetObject s3://b/k", retryable=BackendUnavailableError, permanent=BackendError
    )
    assert type(backend) is BackendUnavailableError
    assert str(backend).startswith("S3 GetObject s3://b/k failed: An error occurred (SlowDown)")
    assert (
        type(translate(denied, "x", retryable=BackendUnavailableError, permanent=BackendError))
        is BackendError
    )
    feeder = translate(
        denied, "x", retryable=SourceUnavailableError, permanent=InvalidSourceDataError
    )
    assert type(feeder) is InvalidSourceDataError
    assert isinstance(feeder, FeederError)
    assert translate(slow, "x", retryable=SourceUnavailableError, permanent=FeederError).retryable
