"""`config/demo.yaml` (the README tour's config) is the demo's folder and workflows."""

from __future__ import annotations

from pathlib import Path

from cirrus_feed.config import load_settings
from cirrus_feed.demo.run import DEMO_WORKFLOWS

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_demo_config_has_the_demo_workflows() -> None:
    settings = load_settings(CONFIG / "demo.yaml", env={})

    assert settings.workflows == DEMO_WORKFLOWS


def test_demo_config_points_at_the_folder_the_demo_writes() -> None:
    default = load_settings(CONFIG / "local.yaml", env={})
    demo = load_settings(CONFIG / "demo.yaml", env={})

    assert demo.backend == "local"
    assert demo.local.root == default.local.root / "demo"  # `cirrus-feed demo`'s default root
