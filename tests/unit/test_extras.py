"""The install hints name the extra that really installs each optional dependency."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from cirrus_feed.errors import ConfigError, MissingExtraError, PluginError
from cirrus_feed.support.extras import EXTRAS, install_hint, raise_missing_extra

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return extras


def _module(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match is not None
    return match[0].lower().replace("-", "_")


def test_every_hinted_module_is_installed_by_its_extra() -> None:
    extras = _extras()
    for module, extra in EXTRAS.items():
        assert module in {_module(r) for r in extras[extra]}, (module, extra)


def test_every_runtime_extra_dependency_has_a_hint() -> None:
    runtime = ("stac", "inventory", "serve")
    hinted = {(m, e) for m, e in EXTRAS.items()}
    for extra in runtime:
        for requirement in _extras()[extra]:
            assert (_module(requirement), extra) in hinted, requirement


def test_core_dependencies_need_no_extra() -> None:
    core = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert not {_module(r) for r in core} & set(EXTRAS)


def test_install_hint_names_the_extra_for_a_submodule() -> None:
    exc = ModuleNotFoundError("No module named 'pyarrow'", name="pyarrow.compute")
    assert install_hint(exc) == (
        "needs pyarrow, which is not installed: pip install 'cirrus-feed[inventory]'"
    )


def test_an_unknown_missing_module_is_not_hidden() -> None:
    exc = ModuleNotFoundError("No module named 'nope'", name="nope")
    assert install_hint(exc) is None
    with pytest.raises(ModuleNotFoundError, match="nope"):
        raise_missing_extra(exc, "something")


def test_missing_extra_is_a_config_and_a_plugin_error() -> None:
    exc = ModuleNotFoundError("No module named 'apscheduler'", name="apscheduler")
    with pytest.raises(MissingExtraError, match=r"serve needs apscheduler.*\[serve\]") as info:
        raise_missing_extra(exc, "serve")
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, PluginError)
