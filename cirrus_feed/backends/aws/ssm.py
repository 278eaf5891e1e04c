"""Reading one SSM Parameter Store parameter: where a Lambda deployment keeps its feeder
config (`cirrus_feed.config`, ``CIRRUS_FEED_CONFIG_PARAMETER``), so changing a feeder's
settings needs no new code package."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from cirrus_feed.backends.aws.clients import error_code, make_client, translate


def read_parameter(name: str, *, region: str, endpoint_url: str | None = None) -> str:
    """The value of the SSM parameter ``name`` (decrypted when it is a SecureString).

    Raises:
        BackendError: the parameter does not exist or cannot be read (named), or
            BackendUnavailableError when worth retrying.
    """
    client = make_client("ssm", region=region, endpoint_url=endpoint_url)
    try:
        response = client.get_parameter(Name=name, WithDecryption=True)
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) == "ParameterNotFound":
            raise translate(exc, f"SSM parameter {name!r} does not exist") from exc
        raise translate(exc, f"SSM GetParameter {name!r}") from exc
    value: str = response["Parameter"]["Value"]
    return value
