"""The one entry-point registry behind feeder types and mappers."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import ClassVar

import pytest

from cirrus_feed.errors import PluginError
from cirrus_feed.support.registry import EntryPointRegistry, PluginInfo

GROUP = "cirrus_feed.tests"


class Widget:
    name: ClassVar[str] = "widget"


class Gadget(Widget):
    name: ClassVar[str] = "gadget"


class NotAWidget:
    name: ClassVar[str] = "stranger"


def registry(**targets: str) -> EntryPointRegistry[Widget]:
    points = {name: EntryPoint(name, target, GROUP) for name, target in targets.items()}
    return EntryPointRegistry(GROUP, Widget, "widget type", points)


def test_registry_loads_a_subclass_by_its_name() -> None:
    reg = registry(gadget=f"{__name__}:Gadget", widget=f"{__name__}:Widget")

    assert reg.names() == ["gadget", "widget"]
    assert reg.load("gadget") is Gadget
    assert reg.info()[0] == PluginInfo("gadget", f"{__name__}:Gadget", None)


def test_registry_unknown_name_lists_installed_and_suggests() -> None:
    reg = registry(gadget=f"{__name__}:Gadget")

    with pytest.raises(PluginError, match=r"no widget type 'gadgte' \(installed: gadget\)"):
        reg.load("gadgte")
    with pytest.raises(PluginError, match="did you mean 'gadget'"):
        reg.load("gadgte")
    with pytest.raises(PluginError, match=r"installed: none\)$"):
        registry().load("x")


def test_registry_broken_plugin_fails_only_when_loaded() -> None:
    reg = registry(gadget=f"{__name__}:Gadget", broken="no_such_module_xyz:Widget")

    assert reg.load("gadget") is Gadget
    with pytest.raises(PluginError, match=r"widget type 'broken' \(no_such.*failed to load"):
        reg.load("broken")


def test_registry_refuses_other_classes_and_misnamed_ones() -> None:
    reg = registry(stranger=f"{__name__}:NotAWidget", other=f"{__name__}:Gadget")

    with pytest.raises(PluginError, match=r"'stranger' .* is not a Widget subclass"):
        reg.load("stranger")
    with pytest.raises(PluginError, match=r"'other' .* calls itself 'gadget'"):
        reg.load("other")


def test_registry_reads_the_installed_group() -> None:
    assert "stac-api" in EntryPointRegistry("cirrus_feed.feeders", object, "feeder type").names()
