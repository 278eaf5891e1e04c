"""Id and asset templates shared by the new-scene mappers, and RFC 3339 timestamps.

Every dataset mapper (``sentinel-2``, ``sentinel-1``, ``landsat-c2``) builds its item with
the Earth Search id and collection by default; `TemplateOptions` lets a config replace them
(``stac-item`` takes ``id`` and ``assets``; ``s3-object`` has its own ``item`` templates):

* ``id``, ``collection``: templates (`feeders.s3.templates` syntax: ``{field}``,
  ``{field|lower}``, ``{field|md5}`` or ``{md5(field)}``, ``replace('a', 'b')``);
* ``assets``: built-in asset name → template of the new name, or ``null`` to drop it.

Fields are the message's top-level scalar values (``landsat_product_id``, ``name``, ...),
then the mapper's own (documented in each mapper module; they win over message fields of
the same name), including ``item_id`` and ``item_collection``, the defaults. So
``id: "{md5(tileinfo_href)}"`` reproduces the payload ids of Earth Search's own Cirrus.
A field missing from a message rejects that item (not retried) naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator

from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.contract import SourceRejection
from feeders.events.mappers import MapperOptions
from feeders.s3.templates import Template


class TemplateOptions(MapperOptions):
    """``id``, ``collection`` and ``assets`` templates (see the module docstring)."""

    id: str | None = None
    collection: str | None = None
    assets: dict[str, str | None] = Field(default_factory=dict)

    @field_validator("id", "collection")
    @classmethod
    def _parses(cls, text: str | None) -> str | None:
        if text is not None:
            _template(text)
        return text

    @field_validator("assets")
    @classmethod
    def _names_parse(cls, names: dict[str, str | None]) -> dict[str, str | None]:
        for text in names.values():
            if text is not None:
                _template(text)
        return names


def _template(text: str) -> Template:
    try:
        return Template(text)
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc


def message_fields(body: Mapping[str, Any]) -> dict[str, str]:
    """The top-level scalar values of a message, as text (``true``/``false`` for booleans)."""
    fields: dict[str, str] = {}
    for key, value in body.items():
        if not isinstance(key, str) or not key.isidentifier():
            continue
        if isinstance(value, bool):
            fields[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            fields[key] = str(value)
    return fields


def apply_templates(
    item: dict[str, Any], fields: Mapping[str, str], options: TemplateOptions, where: str
) -> dict[str, Any] | SourceRejection:
    """``item`` with its id, collection and asset names from ``options``' templates.

    ``fields`` gain ``item_id`` and ``item_collection`` (the item's own values) first.
    """
    values = dict(fields)
    for name, key in (("item_id", "id"), ("item_collection", "collection")):
        if isinstance(item.get(key), str):
            values[name] = item[key]
    try:
        if options.id is not None:
            item["id"] = Template(options.id).render(values)
        if options.collection is not None:
            item["collection"] = Template(options.collection).render(values)
        if options.assets and isinstance(item.get("assets"), Mapping):
            item["assets"] = _renamed(item["assets"], options.assets, values)
    except KeyError as exc:
        return SourceRejection(item, f"{where}: no value for template field {exc}")
    except ValueError as exc:
        return SourceRejection(item, f"{where}: {exc}")
    return item


def _renamed(
    assets: Mapping[str, Any], names: Mapping[str, str | None], values: Mapping[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, asset in assets.items():
        if name in names and names[name] is None:
            continue
        text = names.get(name)
        new = Template(text).render(values) if text is not None else name
        if not new or new in out:
            raise ValueError(f"asset {name!r} would be named {new!r}, empty or taken")
        out[new] = asset
    return out


def rfc3339(value: Any) -> str | None:
    """An ISO 8601 timestamp as RFC 3339: a time without an offset is UTC (``Z`` added).

    Text that already carries an offset is kept as written; anything unparsable is None.
    """
    if not isinstance(value, str):
        return None
    text = value.strip().replace(" ", "T", 1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if "T" not in text:
        return parsed.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    return text if parsed.tzinfo is not None else f"{text}Z"
