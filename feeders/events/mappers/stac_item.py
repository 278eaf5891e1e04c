"""The ``stac-item`` mapper: the message *is* a STAC Item or ItemCollection.

For chaining off another pipeline's publish topic (a Cirrus ``publish`` SNS topic, Earth
Search's ``cirrus-es-prod-publish``): each Feature passes through unchanged, and the feeder
wraps it in this feeder's ``process`` block. A Cirrus process payload (a FeatureCollection
with ``process``) counts as an ItemCollection: its features are taken, its process dropped.

Created/updated awareness: Cirrus publishes with a ``status`` message attribute
(``created``/``updated``); without it an item whose ``properties.updated`` differs from
``properties.created`` is an update. ``accept: created`` takes only new items (skipping
re-publications of reprocessed ones), ``accept: updated`` only updates.

``id`` and ``assets`` are templates (`feeders.events.mappers.templating`) over the item's
scalar properties, ``item_id`` and ``item_collection``: a chained deployment can give the
items it feeds its own ids (``id: "{item_id}_SR"``) or drop assets it does not want.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal

from cirrus_feed.errors import InvalidRecordError
from cirrus_feed.feeding.contract import SourceRejection
from cirrus_feed.model.envelopes import Envelope
from feeders.events.mappers import Mapped, Mapper, MapperOptions, Skip
from feeders.events.mappers.templating import TemplateOptions, apply_templates, message_fields

Status = Literal["created", "updated"]


class StacItemOptions(TemplateOptions):
    accept: Literal["all", "created", "updated"] = "all"
    collection: str | None = None  # set on items that carry none (not a template here)


class StacItemMapper(Mapper):
    """Message = STAC Item / ItemCollection → its features."""

    name: ClassVar[str] = "stac-item"
    Options: ClassVar[type[MapperOptions]] = StacItemOptions

    @property
    def settings(self) -> StacItemOptions:
        assert isinstance(self.options, StacItemOptions)
        return self.options

    def map(self, envelope: Envelope) -> Iterator[Mapped]:
        if envelope.kind != "payload":
            yield SourceRejection(envelope.raw, f"stac-item: a {envelope.kind} event, not an item")
            return
        for index, feature in enumerate(_features(envelope.body)):
            if not isinstance(feature, Mapping) or not isinstance(feature.get("id"), str):
                reason = f"stac-item: features[{index}] is not a STAC item with a string id"
                yield SourceRejection(feature, reason)
                continue
            status = item_status(feature, envelope.attributes)
            if self.settings.accept not in ("all", status):
                yield Skip(
                    f"item '{feature['id']}' is {status}, accept is {self.settings.accept}",
                    "accept",
                )
                continue
            item = dict(feature)
            if self.settings.collection is not None and not item.get("collection"):
                item["collection"] = self.settings.collection
            yield self._templated(item)

    def _templated(self, item: dict[str, Any]) -> dict[str, Any] | SourceRejection:
        options = self.settings
        if options.id is None and not options.assets:
            return item
        properties = item.get("properties")
        fields = message_fields(properties) if isinstance(properties, Mapping) else {}
        renamed = TemplateOptions(id=options.id, assets=options.assets)
        return apply_templates(item, fields, renamed, f"stac-item {item['id']!r}")


def _features(body: Any) -> list[Any]:
    if not isinstance(body, Mapping):
        raise InvalidRecordError("stac-item: the message is not a JSON object")
    kind = body.get("type")
    if kind == "Feature":
        return [body]
    if kind == "FeatureCollection" and isinstance(body.get("features"), list):
        return list(body["features"])
    if "url" in body and len(body) == 1:
        raise InvalidRecordError(f"stac-item: a payload pointer ({body['url']!r}), not an item")
    raise InvalidRecordError(f"stac-item: 'type' is {kind!r}, not Feature or FeatureCollection")


def item_status(item: Mapping[str, Any], attributes: Mapping[str, str]) -> Status:
    """``created`` or ``updated``: the publisher's ``status`` attribute, else the item's
    ``created``/``updated`` timestamps."""
    status = attributes.get("status")
    if status in ("created", "updated"):
        return "created" if status == "created" else "updated"
    properties = item.get("properties")
    if isinstance(properties, Mapping):
        created, updated = properties.get("created"), properties.get("updated")
        if created is not None and updated is not None and created != updated:
            return "updated"
    return "created"
