"""Fixtures of the deployment tests: the Lambda code zip, and the STAC API servers of
tests/feeders (re-exported, not copied)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FEEDER_TESTS = ROOT / "tests" / "feeders"


def _feeder_fixtures() -> Any:
    """tests/feeders/conftest.py, loaded under its own name: it imports its data module as
    `stac_data` (tests/feeders on sys.path), and mypy knows it as the module ``conftest``."""
    if str(FEEDER_TESTS) not in sys.path:
        sys.path.insert(0, str(FEEDER_TESTS))
    spec = importlib.util.spec_from_file_location("feeder_fixtures", FEEDER_TESTS / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


serve_items = _feeder_fixtures().serve_items  # the session fixture: rustac STAC API servers


@pytest.fixture(scope="session")
def lambda_zip(lambda_package: tuple[Path, dict[str, Any]]) -> bytes:
    """The code zip the template's functions run: the one `cirrus-feed package` builds (moto
    never runs it; the handlers are invoked in-process with each function's environment)."""
    return lambda_package[0].read_bytes()
