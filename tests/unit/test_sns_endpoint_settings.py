"""``sns_endpoint.topics``: the SNS topic ARN patterns `serve --http` accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from cirrus_feed.config import load_settings
from cirrus_feed.errors import ConfigError


def test_sns_endpoint_topics_default_to_none() -> None:
    assert load_settings(env={}).sns_endpoint.topics == []


def test_sns_endpoint_topics_read_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("sns_endpoint:\n  topics: ['arn:aws:sns:us-west-2:123456789012:*']\n")

    settings = load_settings(path, env={})

    assert settings.sns_endpoint.topics == ["arn:aws:sns:us-west-2:123456789012:*"]


@pytest.mark.parametrize(
    "pattern",
    ["*", "new-scenes", "arn:aws:sqs:us-west-2:123456789012:q", "arn:aws:sns:us-west-2::t"],
)
def test_sns_endpoint_topic_that_is_no_arn_pattern_is_named(tmp_path: Path, pattern: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"sns_endpoint:\n  topics: ['{pattern}']\n")

    with pytest.raises(ConfigError, match="sns_endpoint") as caught:
        load_settings(path, env={})

    assert repr(pattern) in str(caught.value)
