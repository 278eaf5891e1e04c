"""Feeder discovery through the entry-point group ``cirrus_feed.feeders``.

Built-in feeders register the same way as third-party ones, so there is one code path.
Entry points are listed without importing them: a broken plugin fails only when used.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from cirrus_feed.errors import PluginError
from cirrus_feed.feeding.contract import Feeder

GROUP = "cirrus_feed.feeders"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    target: str  # "module:Class"
    distribution: str | None


class FeederRegistry:
    """Installed feeder types; entry points are injectable for tests."""

    def __init__(self, points: Mapping[str, EntryPoint] | None = None) -> None:
        if points is None:
            points = {ep.name: ep for ep in entry_points(group=GROUP)}
        self._points = dict(points)

    def names(self) -> list[str]:
        return sorted(self._points)

    def info(self) -> list[PluginInfo]:
        return [
            PluginInfo(name, ep.value, ep.dist.name if ep.dist else None)
            for name, ep in sorted(self._points.items())
        ]

    def load(self, name: str) -> type[Feeder[Any]]:
        """The feeder class registered as ``name``.

        Raises:
            PluginError: unknown name (listing the installed ones, with a did-you-mean), an
                import failure, or an object that is not a `Feeder` named ``name``.
        """
        point = self._points.get(name)
        if point is None:
            installed = ", ".join(self.names()) or "none"
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PluginError(f"no feeder type '{name}' (installed: {installed}){hint}")
        try:
            loaded = point.load()
        except Exception as exc:  # any import-time error of a plugin is that plugin's fault
            raise PluginError(
                f"feeder type '{name}' ({point.value}) failed to load: {exc}"
            ) from exc
        if not (isinstance(loaded, type) and issubclass(loaded, Feeder)):
            raise PluginError(f"feeder type '{name}' ({point.value}) is not a Feeder subclass")
        if loaded.name != name:
            raise PluginError(f"feeder type '{name}' ({point.value}) calls itself '{loaded.name}'")
        return loaded
