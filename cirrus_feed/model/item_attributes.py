"""Message attributes of a published STAC item (Cirrus ``build_item_sns_attributes``, §6.2).

Subscribers of the publish topic filter on these, so names, types and values match Cirrus:
``collection``; ``bbox.ll_lon``, ``bbox.ll_lat``, ``bbox.ur_lon``, ``bbox.ur_lat``
(Number); and, from ``properties``, ``start_datetime``, ``end_datetime``, ``datetime``,
``cloud_cover`` (Number, from ``eo:cloud_cover``) and ``status`` (``created`` when
``created == updated``, else ``updated``). That is at most 10, SNS's limit per message.

Deliberate differences from Cirrus, which raises or sends unusable values instead:

* an attribute whose source is missing, null or empty is left out (SNS rejects empty values);
* a bbox that is not 4 or 6 numbers yields no bbox attributes (Cirrus raises IndexError on
  fewer than 4 values);
* a 3D bbox ``[w, s, zmin, e, n, zmax]`` takes its corners from positions 0, 1, 3, 4
  (Cirrus takes 0..3, i.e. reports ``zmin`` as ``ur_lon``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_ATTRIBUTES = 10

AttributeValue = tuple[str, str]  # (SNS DataType "String" | "Number", value)

_BBOX_NAMES = ("bbox.ll_lon", "bbox.ll_lat", "bbox.ur_lon", "bbox.ur_lat")
_BBOX_POSITIONS = {4: (0, 1, 2, 3), 6: (0, 1, 3, 4)}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _bbox_attributes(bbox: Any) -> dict[str, AttributeValue]:
    if not isinstance(bbox, list | tuple) or len(bbox) not in _BBOX_POSITIONS:
        return {}
    corners = [bbox[i] for i in _BBOX_POSITIONS[len(bbox)]]
    if not all(_is_number(c) for c in corners):
        return {}
    return {name: ("Number", str(c)) for name, c in zip(_BBOX_NAMES, corners, strict=True)}


def _property_attributes(properties: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    moment = _text(properties.get("datetime"))
    strings = {
        "start_datetime": _text(properties.get("start_datetime")) or moment,
        "end_datetime": _text(properties.get("end_datetime")) or moment,
        "datetime": moment,
    }
    for name, value in strings.items():
        if value is not None:
            attributes[name] = ("String", value)
    cloud_cover = properties.get("eo:cloud_cover")
    if _is_number(cloud_cover):
        attributes["cloud_cover"] = ("Number", str(cloud_cover))
    if "created" in properties and "updated" in properties:
        same = properties["created"] == properties["updated"]
        attributes["status"] = ("String", "created" if same else "updated")
    return attributes


def item_attributes(item: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Name → (DataType, value) for ``item``; never more than `MAX_ATTRIBUTES` entries."""
    attributes: dict[str, AttributeValue] = {}
    collection = _text(item.get("collection"))
    if collection is not None:
        attributes["collection"] = ("String", collection)
    attributes |= _bbox_attributes(item.get("bbox"))
    properties = item.get("properties")
    if isinstance(properties, Mapping):
        attributes |= _property_attributes(properties)
    return attributes
