"""Message fixtures (`tests/fixtures/messages/<case>.json`) and what the events feeder
makes of them, shared by the events feeder and mapper tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cirrus_feed.feeding.contract import Tagged

FIXTURES = Path(__file__).parent.parent / "fixtures" / "messages"


def load(case: str) -> Any:
    return json.loads((FIXTURES / f"{case}.json").read_text())


def item_of(tagged: Tagged) -> dict[str, Any]:
    """The one item of a tagged payload."""
    payload = tagged.payload
    assert isinstance(payload, Mapping)
    item: dict[str, Any] = payload["features"][0]
    return item
