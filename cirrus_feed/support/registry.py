"""The one plugin registry: classes found through an entry-point group.

Built-ins register the same way as third-party plugins, so there is one code path. Entry
points are listed without importing them: a broken plugin fails only when it is loaded.
Messages name the plugin with the registry's ``kind`` ("feeder type", "mapper"); a plugin
whose optional dependency is missing fails with one line naming the extra to install.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar, cast

from cirrus_feed.errors import MissingExtraError, PluginError
from cirrus_feed.support.extras import install_hint

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    target: str  # "module:Class"
    distribution: str | None


class EntryPointRegistry(Generic[T]):
    """Subclasses of ``base`` registered in entry-point ``group``, each under the ``name``
    it gives itself; ``points`` replaces the installed entry points (for tests)."""

    def __init__(
        self,
        group: str,
        base: type,  # not type[T]: mypy refuses an abstract class there (type-abstract)
        kind: str,
        points: Mapping[str, EntryPoint] | None = None,
    ) -> None:
        if points is None:
            points = {ep.name: ep for ep in entry_points(group=group)}
        self.group, self.base, self.kind = group, base, kind
        self._points = dict(points)

    def names(self) -> list[str]:
        return sorted(self._points)

    def info(self) -> list[PluginInfo]:
        return [
            PluginInfo(name, ep.value, ep.dist.name if ep.dist else None)
            for name, ep in sorted(self._points.items())
        ]

    def load(self, name: str) -> type[T]:
        """The class registered as ``name``.

        Raises:
            PluginError: unknown name (listing the installed ones, with a did-you-mean), an
                import failure, or an object that is not a ``base`` subclass named ``name``.
        """
        point = self._points.get(name)
        if point is None:
            installed = ", ".join(self.names()) or "none"
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PluginError(f"no {self.kind} '{name}' (installed: {installed}){hint}")
        where = f"{self.kind} '{name}' ({point.value})"
        try:
            loaded = point.load()
        except ModuleNotFoundError as exc:
            missing = install_hint(exc)
            if missing is None:
                raise PluginError(f"{where} failed to load: {exc}") from exc
            raise MissingExtraError(f"{self.kind} '{name}' {missing}") from exc
        except Exception as exc:  # any import-time error of a plugin is that plugin's fault
            raise PluginError(f"{where} failed to load: {exc}") from exc
        if not (isinstance(loaded, type) and issubclass(loaded, self.base)):
            raise PluginError(f"{where} is not a {self.base.__name__} subclass")
        own = getattr(loaded, "name", None)
        if own != name:
            raise PluginError(f"{where} calls itself '{own}'")
        return cast("type[T]", loaded)
