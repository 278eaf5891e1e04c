"""The composition root builds every registered feeder type, wired the same way: each
shipped example config becomes an app whose feeders are typed and have their context."""

from __future__ import annotations

from pathlib import Path

import pytest

from cirrus_feed.app import build_app
from cirrus_feed.config import LocalSettings, load_settings
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.seen import FeedStoreSeenCache
from cirrus_feed.support.clock import FakeClock

CONFIG = Path(__file__).resolve().parents[2] / "config"


def example_for(feeder_type: str) -> Path:
    return CONFIG / "feeders" / f"{feeder_type}.yaml"


def test_every_registered_feeder_type_has_an_example_config() -> None:
    missing = [t for t in FeederRegistry().names() if not example_for(t).exists()]
    assert missing == []


@pytest.mark.parametrize("feeder_type", FeederRegistry().names())
def test_composition_root_builds_every_registered_feeder(feeder_type: str, tmp_path: Path) -> None:
    registry = FeederRegistry()
    cls = registry.load(feeder_type)
    settings = load_settings(example_for(feeder_type), env={})
    settings = settings.model_copy(update={"local": LocalSettings(root=tmp_path)})
    clock = FakeClock()

    app = build_app(settings, registry, clock=clock)

    try:
        ours = {n: f for n, f in app.feeders.items() if settings.feeders[n]["type"] == feeder_type}
        assert ours, f"{example_for(feeder_type).name} configures no {feeder_type} feeder"
        for name, feeder in ours.items():
            assert type(feeder) is cls
            assert feeder.instance == name
            assert isinstance(feeder.config, cls.Config)
            assert feeder.context.clock is clock
            assert feeder.context.state is app.backends.state
            assert feeder.context.store is app.backends.store
            assert feeder.context.clients is app.clients
            assert isinstance(feeder.context.seen, FeedStoreSeenCache)
            assert feeder.context.seen.feeder == name
    finally:
        app.close()


def test_feeder_config_type_comes_from_the_generic_argument() -> None:
    registry = FeederRegistry()
    configs = {registry.load(t).Config.__name__ for t in registry.names()}
    assert "FeederConfig" not in configs  # every built-in narrows its settings
