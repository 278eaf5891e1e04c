"""`load_settings` from an SSM parameter (``CIRRUS_FEED_CONFIG_PARAMETER``), on moto's server:
how the deployed functions get their feeders."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cirrus_feed.app import feeder_configs
from cirrus_feed.config import load_settings
from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.plugins import FeederRegistry

pytestmark = pytest.mark.aws

FEEDERS = {
    "feeders": {"pushed": {"type": "events", "mapper": "stac-item", "process": {"workflow": "wf"}}}
}


def lambda_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "AWS_LAMBDA_FUNCTION_NAME": "feeder",
        "AWS_REGION": "us-east-1",
        "CIRRUS_FEED_AWS_ENDPOINT_URL": endpoint,
        "CIRRUS_STATE_DB": "state",
        "CIRRUS_PAYLOAD_BUCKET": "payloads",
        "CIRRUS_BASE_WORKFLOW_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:c-",
        "CIRRUS_PROCESS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/process",
        **extra,
    }


@pytest.fixture
def parameter(make_aws_client: Callable[[str], Any]) -> str:
    name = f"/t{uuid.uuid4().hex[:8]}/feeders"
    make_aws_client("ssm").put_parameter(Name=name, Type="String", Value=yaml.safe_dump(FEEDERS))
    return name


def test_config_parameter_gives_the_feeders(parameter: str, aws_endpoint: str) -> None:
    env = lambda_env(aws_endpoint, CIRRUS_FEED_CONFIG_PARAMETER=parameter)
    settings = load_settings(env=env)
    assert settings.source == f"ssm:{parameter}"
    assert settings.feeders == FEEDERS["feeders"]
    assert settings.backend == "aws"  # Cirrus's variables still select the backend
    assert settings.aws.state_db == "state"


def test_config_parameter_errors_name_the_parameter(
    parameter: str, aws_endpoint: str, make_aws_client: Callable[[str], Any]
) -> None:
    missing = f"{parameter}-missing"
    with pytest.raises(
        ConfigError, match=f"CIRRUS_FEED_CONFIG_PARAMETER={missing}.*does not exist"
    ):
        load_settings(env=lambda_env(aws_endpoint, CIRRUS_FEED_CONFIG_PARAMETER=missing))
    make_aws_client("ssm").put_parameter(
        Name=parameter, Type="String", Value="feeders: [unclosed", Overwrite=True
    )
    with pytest.raises(ConfigError, match=f"config ssm:{parameter} is not valid YAML"):
        load_settings(env=lambda_env(aws_endpoint, CIRRUS_FEED_CONFIG_PARAMETER=parameter))
    make_aws_client("ssm").put_parameter(
        Name=parameter, Type="String", Value="feeders: {x: {process: {}}}", Overwrite=True
    )
    settings = load_settings(env=lambda_env(aws_endpoint, CIRRUS_FEED_CONFIG_PARAMETER=parameter))
    with pytest.raises(ConfigError, match=f"ssm:{parameter}: feeders.x: needs a 'type'"):
        feeder_configs(settings, FeederRegistry())


def test_config_parameter_and_file_together_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}")
    env = {"CIRRUS_FEED_CONFIG": str(config), "CIRRUS_FEED_CONFIG_PARAMETER": "/x/feeders"}
    with pytest.raises(
        ConfigError, match="set one of CIRRUS_FEED_CONFIG and CIRRUS_FEED_CONFIG_PARAMETER"
    ):
        load_settings(env=env)
