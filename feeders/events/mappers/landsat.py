"""The ``landsat-c2`` mapper: USGS Collection 2 new-scene messages → one stub item each.

The topic ``public-c2-notify-v2`` (us-west-2) publishes, for every scene written to the
``usgs-landsat`` bucket, ``landsat_product_id``, ``s3_location`` (the scene's folder) and
more (``landsat_scene_id``, ``cloud_cover``, ...).

Product ids follow the USGS naming convention (USGS FAQ "What is the naming convention for
Landsat Collections Level-1 scenes?"; Level-2 alike): ``LXSS_LLLL_PPPRRR_YYYYMMDD_yyyymmdd
_CC_TX``: sensor (``C`` OLI/TIRS, ``O``, ``T``, ``E`` ETM+, ``M`` MSS) and satellite,
correction level (``L1TP``/``L1GT``/``L1GS``, ``L2SP``/``L2SR``), WRS path/row, acquisition
date, processing date, collection number, tier (``T1``, ``T2``, ``RT`` Real-Time).

Ids are Earth Search's: the processing date is dropped (``LC08_L1TP_001005_20230704_02_T1``),
so a reprocessed scene keeps its id and replaces the old item instead of duplicating it. The
Real-Time tier is noisy (every RT scene is later re-released as T1/T2), so ``tiers``
defaults to T1 and T2: RT scenes are skipped (counted as filtered) before they are
enqueued. ``prefixes`` keeps only ``s3_location``s under one of them (a level or sensor).
Collection: ``collection`` (a template), else ``landsat-c2-l1`` / ``landsat-c2-l2`` by level.

Template fields (`feeders.events.mappers.templating`): the message's scalars
(``landsat_product_id``, ...), and ``sensor``, ``satellite``, ``correction``, ``level``
(``l1``/``l2``), ``wrs_path``, ``wrs_row``, ``acquired``, ``processed``,
``collection_number``, ``tier``, ``s3_location``, ``item_id``, ``item_collection``. Earth
Search's own payload ids are ``id: "{landsat_product_id}_SR"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from pydantic import Field

from cirrus_feed.errors import InvalidRecordError
from cirrus_feed.model.envelopes import Envelope
from feeders.events.mappers import Mapped, Mapper, MapperOptions, Skip
from feeders.events.mappers.templating import TemplateOptions, apply_templates, message_fields

PRODUCT_ID = re.compile(
    r"^(?P<sensor>L[COTEM])(?P<satellite>\d{2})_(?P<correction>L1TP|L1GT|L1GS|L2SP|L2SR)"
    r"_(?P<path>\d{3})(?P<row>\d{3})_(?P<acquired>\d{8})_(?P<processed>\d{8})"
    r"_(?P<number>\d{2})_(?P<tier>T1|T2|RT)$"
)
INSTRUMENTS = {"C": ["oli", "tirs"], "O": ["oli"], "T": ["tirs"], "E": ["etm+"], "M": ["mss"]}


class LandsatOptions(TemplateOptions):
    tiers: list[str] = Field(default_factory=lambda: ["T1", "T2"])
    prefixes: list[str] | None = None  # s3_location prefixes to keep


class LandsatC2Mapper(Mapper):
    """USGS Landsat Collection 2 notification → one item."""

    name: ClassVar[str] = "landsat-c2"
    Options: ClassVar[type[MapperOptions]] = LandsatOptions

    @property
    def settings(self) -> LandsatOptions:
        assert isinstance(self.options, LandsatOptions)
        return self.options

    def map(self, envelope: Envelope) -> Iterator[Mapped]:
        body, product_id, location = _fields(envelope)
        match = PRODUCT_ID.match(product_id)
        if match is None:
            raise InvalidRecordError(f"landsat-c2: {product_id!r} is not a C2 product id")
        options = self.settings
        if match["tier"] not in options.tiers:
            yield Skip(f"landsat-c2 {product_id!r}: tier {match['tier']} is not fed", "tier")
            return
        if options.prefixes is not None and not location.startswith(tuple(options.prefixes)):
            yield Skip(
                f"landsat-c2 {product_id!r}: {location!r} is not under a fed prefix", "prefix"
            )
            return
        item = _item(product_id, location, match, body)
        fields = message_fields(body) | {
            "sensor": match["sensor"],
            "satellite": match["satellite"],
            "correction": match["correction"],
            "level": match["correction"][:2].lower(),
            "wrs_path": match["path"],
            "wrs_row": match["row"],
            "acquired": match["acquired"],
            "processed": match["processed"],
            "collection_number": match["number"],
            "tier": match["tier"],
            "s3_location": location,
        }
        yield apply_templates(item, fields, options, f"landsat-c2 {product_id!r}")


def _fields(envelope: Envelope) -> tuple[Mapping[str, Any], str, str]:
    body = envelope.body
    if envelope.kind != "payload" or not isinstance(body, Mapping):
        raise InvalidRecordError(f"landsat-c2: a {envelope.kind} event, not a scene message")
    product_id, location = body.get("landsat_product_id"), body.get("s3_location")
    if not isinstance(product_id, str) or not isinstance(location, str):
        raise InvalidRecordError("landsat-c2: 'landsat_product_id' or 's3_location' is missing")
    return body, product_id, location if location.endswith("/") else f"{location}/"


def _item(
    product_id: str, location: str, match: re.Match[str], body: Mapping[str, Any]
) -> dict[str, Any]:
    level = match["correction"][:2].lower()  # "l1" / "l2"
    acquired = match["acquired"]
    scene = f"{match['sensor']}{match['satellite']}_{match['correction']}"
    wrs = f"{match['path']}{match['row']}"
    stable_id = f"{scene}_{wrs}_{acquired}_{match['number']}_{match['tier']}"
    properties: dict[str, Any] = {
        "datetime": f"{acquired[:4]}-{acquired[4:6]}-{acquired[6:]}T00:00:00Z",
        "platform": f"landsat-{int(match['satellite'])}",
        "instruments": INSTRUMENTS[match["sensor"][1]],
        "landsat:product_id": product_id,
        "landsat:correction": match["correction"],
        "landsat:wrs_path": match["path"],
        "landsat:wrs_row": match["row"],
        "landsat:collection_number": match["number"],
        "landsat:collection_category": match["tier"],
        "landsat:processing_date": match["processed"],
    }
    scene_id, cloud_cover = body.get("landsat_scene_id"), body.get("cloud_cover")
    if isinstance(scene_id, str):
        properties["landsat:scene_id"] = scene_id
    if isinstance(cloud_cover, int | float) and not isinstance(cloud_cover, bool):
        properties["eo:cloud_cover"] = cloud_cover
    assets = {
        f"mtl.{ext}": {
            "href": f"{location}{product_id}_MTL.{ext}",
            "type": media_type,
            "roles": ["metadata"],
        }
        for ext, media_type in (("json", "application/json"), ("txt", "text/plain"))
    }
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": stable_id,
        "collection": f"landsat-c2-{level}",
        "geometry": None,
        "properties": properties,
        "assets": assets,
        "links": [],
    }
