"""Publish-topic attributes of STAC items: the three Cirrus fixture cases (spec §6.2) and the
documented departures for unusable inputs."""

from __future__ import annotations

from typing import Any

import pytest

from cirrus_feed.model.item_attributes import MAX_ATTRIBUTES, item_attributes

BBOX = [-71.5, -33.25, -70.25, -32.0]

# Cirrus fixture `item.json`: datetime, cloud cover, created == updated.
ITEM: dict[str, Any] = {
    "type": "Feature",
    "stac_version": "1.0.0",
    "id": "S2B_19HCC_20201101_0_L2A",
    "collection": "sentinel-s2-l2a",
    "bbox": BBOX,
    "geometry": None,
    "properties": {
        "datetime": "2020-11-01T14:43:41Z",
        "eo:cloud_cover": 12.5,
        "created": "2020-11-02T01:02:03Z",
        "updated": "2020-11-02T01:02:03Z",
    },
    "links": [],
    "assets": {},
}

# Cirrus fixture `item_alt.json`: a range instead of datetime, no cloud cover, re-published.
ITEM_ALT: dict[str, Any] = {
    "type": "Feature",
    "id": "mosaic-2020-11",
    "collection": "monthly-mosaic",
    "bbox": BBOX,
    "properties": {
        "datetime": None,
        "start_datetime": "2020-11-01T00:00:00Z",
        "end_datetime": "2020-11-30T23:59:59Z",
        "created": "2020-12-01T00:00:00Z",
        "updated": "2021-01-15T08:00:00Z",
    },
}

# Cirrus fixture `item_no_properties.json`.
ITEM_NO_PROPERTIES: dict[str, Any] = {
    "type": "Feature",
    "id": "bare",
    "collection": "bare-collection",
    "bbox": BBOX,
}

BBOX_ATTRIBUTES = {
    "bbox.ll_lon": ("Number", "-71.5"),
    "bbox.ll_lat": ("Number", "-33.25"),
    "bbox.ur_lon": ("Number", "-70.25"),
    "bbox.ur_lat": ("Number", "-32.0"),
}


def test_item_attributes_item_with_datetime_and_cloud_cover_gives_ten() -> None:
    assert item_attributes(ITEM) == {
        "collection": ("String", "sentinel-s2-l2a"),
        **BBOX_ATTRIBUTES,
        "start_datetime": ("String", "2020-11-01T14:43:41Z"),
        "end_datetime": ("String", "2020-11-01T14:43:41Z"),
        "datetime": ("String", "2020-11-01T14:43:41Z"),
        "cloud_cover": ("Number", "12.5"),
        "status": ("String", "created"),
    }
    assert len(item_attributes(ITEM)) == MAX_ATTRIBUTES


def test_item_attributes_item_with_range_reports_updated_status() -> None:
    assert item_attributes(ITEM_ALT) == {
        "collection": ("String", "monthly-mosaic"),
        **BBOX_ATTRIBUTES,
        "start_datetime": ("String", "2020-11-01T00:00:00Z"),
        "end_datetime": ("String", "2020-11-30T23:59:59Z"),
        "status": ("String", "updated"),
    }


def test_item_attributes_item_without_properties_gives_collection_and_bbox() -> None:
    assert item_attributes(ITEM_NO_PROPERTIES) == {
        "collection": ("String", "bare-collection"),
        **BBOX_ATTRIBUTES,
    }


def test_item_attributes_start_datetime_falls_back_to_datetime_per_bound() -> None:
    item = {"properties": {"datetime": "2020-01-01T00:00:00Z", "end_datetime": "2020-02-01"}}

    attributes = item_attributes(item)

    assert attributes["start_datetime"] == ("String", "2020-01-01T00:00:00Z")
    assert attributes["end_datetime"] == ("String", "2020-02-01")


@pytest.mark.parametrize(
    "bbox",
    [[1.0, 2.0, 3.0], [], "1,2,3,4", None, [1, 2, 3, 4, 5], [1, 2, "3", 4], [1, 2, True, 4]],
)
def test_item_attributes_unusable_bbox_is_skipped(bbox: Any) -> None:
    attributes = item_attributes({"collection": "c", "bbox": bbox})

    assert attributes == {"collection": ("String", "c")}


def test_item_attributes_3d_bbox_uses_horizontal_corners() -> None:
    attributes = item_attributes({"bbox": [10, 20, -5, 30, 40, 100]})

    assert attributes == {
        "bbox.ll_lon": ("Number", "10"),
        "bbox.ll_lat": ("Number", "20"),
        "bbox.ur_lon": ("Number", "30"),
        "bbox.ur_lat": ("Number", "40"),
    }


def test_item_attributes_missing_or_empty_sources_are_left_out() -> None:
    item = {
        "collection": "",
        "properties": {"datetime": None, "eo:cloud_cover": None, "created": "2020"},
    }

    assert item_attributes(item) == {}


def test_item_attributes_non_numeric_cloud_cover_is_left_out() -> None:
    attributes = item_attributes({"properties": {"eo:cloud_cover": "cloudy"}})

    assert "cloud_cover" not in attributes


def test_item_attributes_never_exceed_the_sns_limit() -> None:
    crowded = {**ITEM, "properties": {**ITEM["properties"], **ITEM_ALT["properties"]}}
    crowded["properties"]["datetime"] = "2020-11-15T00:00:00Z"
    crowded["properties"]["eo:cloud_cover"] = 0
    crowded["extra"] = "ignored"

    attributes = item_attributes(crowded)

    assert len(attributes) == MAX_ATTRIBUTES
    assert attributes["start_datetime"] == ("String", "2020-11-01T00:00:00Z")
    assert attributes["cloud_cover"] == ("Number", "0")
