"""STAC items as the ``stac-api`` feeder reads them: their time, their stub, their payload.

Per item only what the payload needs: the time that places it in a window (one
``fromisoformat``), an id check, and, for stubs, the kept fields. Payloads are built by a
`PayloadTemplate` checked once per run, so no payload is parsed, validated and dumped again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from cirrus_feed.errors import PayloadValidationError
from cirrus_feed.feeding.contract import SourceRejection
from cirrus_feed.model.payload import PreparedPayload
from cirrus_feed.model.prepared import PayloadTemplate
from feeders.stac_api.config import ItemMapping
from feeders.stac_api.windows import parse_instant

_STUB_PROPERTIES = ("datetime", "start_datetime", "end_datetime", "created", "updated")


def stub_item(item: Mapping[str, Any], assets: Iterable[str]) -> dict[str, Any]:
    """The fields a workflow needs to find an item again, plus the named assets."""
    properties = item.get("properties") or {}
    stub = {key: item[key] for key in ("type", "stac_version", "id", "collection") if key in item}
    stub["geometry"] = item.get("geometry")
    if "bbox" in item:
        stub["bbox"] = item["bbox"]
    stub["properties"] = {key: properties[key] for key in _STUB_PROPERTIES if key in properties}
    all_assets = item.get("assets") or {}
    stub["assets"] = {name: all_assets[name] for name in assets if name in all_assets}
    stub["links"] = [link for link in item.get("links") or [] if link.get("rel") == "self"]
    return stub


def item_instant(raw: Any, time_field: str) -> tuple[datetime | None, str]:
    """The instant that places ``raw`` in a window, or ``None`` and why it has none.

    ``time_field`` is ``datetime`` (a range item's ``start_datetime`` standing in for a
    null one) or ``updated``.
    """
    properties = raw.get("properties") if type(raw) is dict else None
    if type(properties) is not dict:
        return None, "item has no 'properties' object"
    field = time_field
    value = properties.get(field)
    if value is None and field == "datetime":  # a range item: its start decides
        field, value = "start_datetime", properties.get("start_datetime")
    if type(value) is not str:
        wanted = f"properties.{time_field}"
        if field == "start_datetime":
            wanted = "properties.datetime (nor properties.start_datetime)"
        return None, f"item has no {wanted}"
    try:
        return parse_instant(value), ""
    except ValueError:
        return None, f"item properties.{field} {value!r} is not an RFC 3339 timestamp"


def has_id(raw: Mapping[str, Any]) -> bool:
    item_id = raw.get("id")
    return type(item_id) is str and bool(item_id)


class PayloadBuilder:
    """Payloads of one run: ``process`` checked once, items mapped as configured."""

    def __init__(self, process: list[Any], mapping: ItemMapping) -> None:
        self.template = PayloadTemplate(process)
        self._stub_assets = mapping.assets if mapping.mode == "stub" else None

    def build(self, items: Sequence[dict[str, Any]]) -> PreparedPayload | SourceRejection:
        """The payload of ``items``, or its rejection naming the field that failed."""
        assets = self._stub_assets
        features = items if assets is None else [stub_item(i, assets) for i in items]
        try:
            return self.template.prepare(features)
        except PayloadValidationError as exc:
            return SourceRejection(self.template.mapping(features), str(exc))


def digest(item: Mapping[str, Any]) -> str:
    """A short stable digest of an item's collection and id, for a cursor's ``partial``."""
    key = f"{item.get('collection')}/{item.get('id')}"
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
