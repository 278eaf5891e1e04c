"""Message fixtures (`tests/fixtures/messages/<case>.json`) and what the events feeder
makes of them, shared by the events feeder and mapper tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cirrus_feed.feeding.contract import Tagged
from cirrus_feed.model.payload import PreparedPayload, ProcessPayload

FIXTURES = Path(__file__).parent.parent / "fixtures" / "messages"


def load(case: str) -> Any:
    return json.loads((FIXTURES / f"{case}.json").read_text())


def payload_of(tagged: Tagged) -> dict[str, Any]:
    """A tagged payload as the mapping it stands for (a prepared one's body decoded)."""
    payload = tagged.payload
    if isinstance(payload, PreparedPayload | ProcessPayload):
        return payload.to_dict()
    assert isinstance(payload, Mapping)
    return dict(payload)


def item_of(tagged: Tagged) -> dict[str, Any]:
    """The one item of a tagged payload."""
    item: dict[str, Any] = payload_of(tagged)["features"][0]
    return item
