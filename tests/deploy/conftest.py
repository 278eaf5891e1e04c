"""Fixtures of the deployment tests: the Lambda code zip, and the STAC API servers of
tests/feeders (re-exported, not copied)."""

from __future__ import annotations

import importlib.util
import io
import sys
import zipfile
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
def lambda_zip() -> bytes:
    """The code zip the template's functions run. Until the Lambda package builder is here,
    the source tree alone (the handlers' modules; the dependencies are not needed by moto,
    which never runs the code). The one place to swap in ``cirrus_feed.packaging``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for package in ("cirrus_feed", "feeders"):
            for path in sorted((ROOT / package).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    zipped.write(path, path.relative_to(ROOT).as_posix())
    return buffer.getvalue()
