"""Every example config in config/ loads and validates, feeders included: the README's
examples must run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cirrus_feed.app import feeder_configs
from cirrus_feed.config import load_settings
from cirrus_feed.feeding.plugins import FeederRegistry

CONFIG = Path(__file__).resolve().parents[2] / "config"
EXAMPLES = sorted(CONFIG.glob("*.yaml")) + sorted((CONFIG / "feeders").glob("*.yaml"))


def test_config_examples_exist() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_config_example_validates_with_its_feeders(path: Path) -> None:
    settings = load_settings(path, env={})

    # as the feeders run here: on the local backend, their workflows must be local ones
    configs = feeder_configs(settings, FeederRegistry(), runs_here=True)

    assert set(configs) == set(settings.feeders)
    for _name, (cls, config) in configs.items():
        assert config.type == cls.name
