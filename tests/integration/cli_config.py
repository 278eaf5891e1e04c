"""A config file for the CLI that points at a `Harness`'s backends (either kind)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Harness


def write_cli_config(
    h: Harness, path: Path, make_client: Callable[[str], Any] | None, **extra: Any
) -> Path:
    """The harness's settings as a YAML file (plus ``extra`` top-level keys); on AWS with a
    feed-run table, so runs are recorded on both backends."""
    data = h.app.settings.model_dump(mode="json", exclude={"source"}) | extra
    if h.name == "aws":
        from cirrus_feed.backends.aws.dynamodb_feeds import DynamoDbFeedStore

        assert make_client is not None
        table = f"feeds-{uuid.uuid4().hex[:10]}"
        DynamoDbFeedStore.create_table(make_client("dynamodb"), table)
        data["aws"]["feed_table"] = table
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def config(harness: Harness, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    make = request.getfixturevalue("make_aws_client") if harness.name == "aws" else None
    return write_cli_config(harness, tmp_path / "cirrus-feed.yaml", make)
