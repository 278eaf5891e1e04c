"""Feeder discovery through the entry-point group ``cirrus_feed.feeders``.

Built-in feeders register the same way as third-party ones, so there is one code path
(`cirrus_feed.support.registry`): a broken plugin fails only when used.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint
from typing import Any

from cirrus_feed.feeding.contract import Feeder
from cirrus_feed.support.registry import EntryPointRegistry, PluginInfo

GROUP = "cirrus_feed.feeders"

__all__ = ["GROUP", "FeederRegistry", "PluginInfo"]


class FeederRegistry(EntryPointRegistry[Feeder[Any]]):
    """Installed feeder types; entry points are injectable for tests."""

    def __init__(self, points: Mapping[str, EntryPoint] | None = None) -> None:
        super().__init__(GROUP, Feeder, "feeder type", points)
