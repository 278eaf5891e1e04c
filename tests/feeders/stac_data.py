"""Deterministic Sentinel-2-like STAC items for the stac-api feeder tests.

Besides items spread over two days, the set holds the cases that broke the old feeder:
a crowd of items at one instant (more than the tests' window cap), items at ``…:59:59.5``,
items exactly on the instants where halving the range puts window edges, a timestamp
with nanoseconds, one with a ``+02:00`` offset, and items just outside the range.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

COLLECTION = "sentinel-2-l2a-test"
RANGE_START = datetime(2024, 1, 1, tzinfo=UTC)
RANGE_END = datetime(2024, 1, 3, tzinfo=UTC)

CROWD_INSTANT = "2024-01-02T07:13:42.123456Z"  # 12 items at one instant
CROWD_SIZE = 12
BOUNDARY_CROWD_INSTANT = "2024-01-01T12:00:00Z"  # 9 items where the first split cuts
HALF_SECONDS = ("2024-01-01T05:59:59.5Z", "2024-01-01T23:59:59.5Z", "2024-01-02T17:59:59.5Z")
# Edges of the windows that halving [RANGE_START, RANGE_END) produces.
BOUNDARIES = (
    "2024-01-01T00:00:00Z",
    "2024-01-01T01:30:00Z",
    "2024-01-01T03:00:00Z",
    "2024-01-01T06:00:00Z",
    "2024-01-02T00:00:00Z",
    "2024-01-02T18:00:00Z",
)
OTHER_EDGES = (
    "2024-01-01T02:59:59.999999Z",
    "2024-01-01T08:59:59.999999500Z",  # nanoseconds: belongs before 09:00
    "2024-01-01T10:00:00+02:00",  # 08:00Z
)
OUTSIDE = ("2023-12-31T23:59:59.999999Z", "2024-01-03T00:00:00Z", "2024-01-03T00:00:00.5Z")


def parse(text: str) -> datetime:
    """A test-side parser, independent of the feeder's: cut digits past microseconds."""
    head, _, fraction = text.partition(".")
    if fraction:
        digits = "".join(c for c in fraction if c.isdigit())
        zone = fraction[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def make_item(item_id: str, when: str | None, **properties: Any) -> dict[str, Any]:
    """One S2-like item: a one-degree tile, cloud cover, three assets."""
    number = sum(map(ord, item_id))
    lon, lat = number % 360 - 180, number % 170 - 85
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": COLLECTION,
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[lon, lat], [lon + 1, lat], [lon + 1, lat + 1], [lon, lat + 1], [lon, lat]]
            ],
        },
        "bbox": [lon, lat, lon + 1, lat + 1],
        "properties": {
            "datetime": when,
            "eo:cloud_cover": number % 100,
            "updated": "2024-02-01T00:00:00Z",
            **properties,
        },
        "assets": {
            name: {"href": f"s3://bucket/{item_id}/{name}.tif", "type": "image/tiff"}
            for name in ("B04", "B08", "thumbnail")
        },
        "links": [
            {"rel": "self", "href": f"http://example.test/items/{item_id}"},
            {"rel": "license", "href": "http://example.test/license"},
        ],
    }


def items() -> list[dict[str, Any]]:
    """The full served set (in and out of range), in a fixed order."""
    result = []
    for n in range(150):  # every 19 min 7 s from the range start, never on an edge
        when = RANGE_START + timedelta(minutes=19 * n + 3, seconds=7 * n % 60)
        result.append(make_item(f"S2A_T{n:03d}_{when:%Y%m%dT%H%M%S}", isoz(when)))
    result += [make_item(f"S2B_CROWD_{n:02d}", CROWD_INSTANT) for n in range(CROWD_SIZE)]
    result += [make_item(f"S2B_EDGE12_{n}", BOUNDARY_CROWD_INSTANT) for n in range(9)]
    for group, stamps in (("HALF", HALF_SECONDS), ("BOUND", BOUNDARIES), ("EDGE", OTHER_EDGES)):
        result += [make_item(f"S2C_{group}_{n}", when) for n, when in enumerate(stamps)]
    result += [make_item(f"S2D_OUT_{n}", when) for n, when in enumerate(OUTSIDE)]
    # A range item: no datetime, its start decides its window (the API matches any overlap).
    result.append(
        make_item(
            "S2E_RANGE_0",
            None,
            start_datetime="2024-01-01T20:00:00Z",
            end_datetime="2024-01-02T04:00:00Z",
        )
    )
    return result


def isoz(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def instant(item: dict[str, Any]) -> datetime:
    properties = item["properties"]
    return parse(properties["datetime"] or properties["start_datetime"])


def ids_between(start: datetime, end: datetime, source: list[dict[str, Any]]) -> set[str]:
    """Ids of the items with ``start <= time < end``."""
    return {item["id"] for item in source if start <= instant(item) < end}


def collection() -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": COLLECTION,
        "description": "Generated S2-like items",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2023-12-31T00:00:00Z", None]]},
        },
        "links": [],
    }


def write_catalog(directory: Path, source: list[dict[str, Any]]) -> tuple[Path, Path]:
    """``collection.json`` and ``items.ndjson`` in ``directory``, for ``rustac serve``."""
    collection_path = directory / "collection.json"
    items_path = directory / "items.ndjson"
    collection_path.write_text(json.dumps(collection()))
    items_path.write_text("".join(json.dumps(item) + "\n" for item in source))
    return collection_path, items_path
