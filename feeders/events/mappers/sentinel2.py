"""The ``sentinel-2`` mapper: Sinergise new-product messages → one stub item per tile.

The topics ``NewSentinel2Product`` (L1C, eu-west-1) and ``SentinelS2L2A`` (L2A,
eu-central-1) publish the product's ``productInfo.json``: ``name``, ``id`` (a UUID),
``path``, ``timestamp``, ``datatakeIdentifier`` and ``tiles[]`` (``path``
``tiles/<utm>/<band>/<square>/Y/M/D/<seq>``, ``timestamp``, ``utmZone``, ``latitudeBand``,
``gridSquare``, ``datastrip``), as the bucket's documentation describes.

Product names come in the two ESA generations, both accepted:

* compact (since December 2016): ``S2B_MSIL2A_20240430T142739_N0510_R139_T24VUR_…``
  (mission, level, sensing start, ``N`` baseline, ``R`` relative orbit, ``T`` tile);
* the earlier long form, still in the L1C bucket:
  ``S2A_OPER_PRD_MSIL1C_PDMC_20151230T202002_R008_V20151230T105153_20151230T105153``
  (mission, file class, level, site, creation time, relative orbit, ``V`` validity start
  and stop). It names neither tile (a product held many) nor baseline: the tiles come
  from ``tiles[]``, the baseline from the ``…_N02.01`` end of ``datatakeIdentifier``
  (or of the tile's datastrip id); a product without one is skipped by baseline filters.

Item ids are Earth Search's: ``<mission>_<zone><band><square>_<YYYYMMDD>_<seq>_<level>``
from the tile path, the UTM zone *unpadded* (``S2B_1CCV_20250107_0_L2A``, zone 1;
``S2B_24VUR_20240430_0_L2A``). Assets point at ``tileInfo.json``, ``productInfo.json`` and
``metadata.xml`` through the free HTTP proxy (the buckets are requester-pays). The
processing baseline and the tile sequence number stay in the properties: a sequence above
0 is another product for the same tile and day (a second pass, or a reprocessing). The
collection is ``collection``, else the topic's (``collections``), else the product level's.
``min_baseline`` / ``exclude_baselines`` / ``max_sequence`` drop reprocessing campaigns
before they are enqueued (counted as filtered).

Template fields (`feeders.events.mappers.templating`): the message's scalars, and
``mission``, ``level``, ``baseline``, ``orbit``, ``utm_zone``, ``latitude_band``,
``grid_square``, ``tile`` (``1CCV``), ``date``, ``sequence``, ``tile_path``, ``bucket``,
``tileinfo_href``, ``productinfo_href``, ``metadata_href``, ``item_id``,
``item_collection``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from pydantic import Field, field_validator

from cirrus_feed.errors import InvalidRecordError
from cirrus_feed.model.envelopes import Envelope
from feeders.events.mappers import Mapped, Mapper, MapperOptions, Skip, sns_notification, topic_name
from feeders.events.mappers.templating import (
    TemplateOptions,
    apply_templates,
    message_fields,
    rfc3339,
)

NAME = re.compile(
    r"^(?P<mission>S2[A-D])_MSI(?P<level>L1C|L2A)_(?P<sensed>\d{8}T\d{6})"
    r"_N(?P<baseline>\d{4})_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})_"
)
OLD_NAME = re.compile(
    r"^(?P<mission>S2[A-D])_(?:OPER|USER)_PRD_MSI(?P<level>L1C|L2A)_(?P<site>\w{4})"
    r"_(?P<created>\d{8}T\d{6})_R(?P<orbit>\d{3})_V(?P<sensed>\d{8}T\d{6})_\d{8}T\d{6}"
)
BASELINE_SUFFIX = re.compile(r"_N(?P<major>\d{2})\.?(?P<minor>\d{2})$")
TILE_PATH = re.compile(
    r"^tiles/(?P<utm>\d{1,2})/(?P<band>[A-Z])/(?P<square>[A-Z]{2})"
    r"/(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<seq>\d+)/?$"
)
BASELINE = re.compile(r"^\d{2}\.\d{2}$")


class Sentinel2Options(TemplateOptions):
    collections: dict[str, str] = Field(
        default_factory=lambda: {
            "NewSentinel2Product": "sentinel-2-l1c",
            "SentinelS2L2A": "sentinel-2-l2a",
        }
    )  # topic name → collection
    buckets: dict[str, str] = Field(
        default_factory=lambda: {"L1C": "sentinel-s2-l1c", "L2A": "sentinel-s2-l2a"}
    )
    href_base: str = "https://roda.sentinel-hub.com"
    levels: list[str] | None = None  # e.g. ["L2A"]
    min_baseline: str | None = None  # "05.00": older baselines are skipped
    exclude_baselines: list[str] = Field(default_factory=list)  # e.g. ["05.00"]
    max_sequence: int | None = Field(None, ge=0)  # 0: first product of a tile and day only

    @field_validator("min_baseline")
    @classmethod
    def _baseline(cls, value: str | None) -> str | None:
        if value is not None and not BASELINE.match(value):
            raise ValueError(f"baseline {value!r} is not like '05.10'")
        return value

    @field_validator("exclude_baselines")
    @classmethod
    def _baselines(cls, values: list[str]) -> list[str]:
        for value in values:
            cls._baseline(value)
        return values


class Sentinel2Mapper(Mapper):
    """Sinergise ``productInfo`` message → one item per tile."""

    name: ClassVar[str] = "sentinel-2"
    Options: ClassVar[type[MapperOptions]] = Sentinel2Options

    @property
    def settings(self) -> Sentinel2Options:
        assert isinstance(self.options, Sentinel2Options)
        return self.options

    def map(self, envelope: Envelope) -> Iterator[Mapped]:
        product = _product(envelope)
        name = str(product["name"])
        match = NAME.match(name) or OLD_NAME.match(name)
        if match is None:
            raise InvalidRecordError(f"sentinel-2 product {name!r}: not a Sentinel-2 MSI name")
        level, baseline = match["level"], _baseline(match, product)
        skip = self._skip_product(name, level, baseline)
        if skip is not None:
            yield skip
            return
        topic = topic_name(_str(sns_notification(envelope).get("TopicArn")))
        collection = self.settings.collections.get(topic or "") or f"sentinel-2-{level.lower()}"
        for index, tile in enumerate(product["tiles"]):
            yield self._tile_item(product, match, baseline, collection, tile, index)

    def _skip_product(self, name: str, level: str, baseline: str | None) -> Skip | None:
        options = self.settings
        if options.levels is not None and level not in options.levels:
            return Skip(f"sentinel-2 product {name!r}: level {level} is not fed", "level")
        wants_baseline = options.min_baseline is not None or options.exclude_baselines
        if baseline is None and wants_baseline:
            return Skip(
                f"sentinel-2 product {name!r}: no processing baseline to filter on", "baseline"
            )
        if baseline is None:
            return None
        if options.min_baseline is not None and baseline < options.min_baseline:
            return Skip(f"sentinel-2 product {name!r}: baseline {baseline} is too old", "baseline")
        if baseline in options.exclude_baselines:
            return Skip(f"sentinel-2 product {name!r}: baseline {baseline} is excluded", "baseline")
        return None

    def _tile_item(
        self,
        product: Mapping[str, Any],
        match: re.Match[str],
        baseline: str | None,
        collection: str,
        tile: Any,
        index: int,
    ) -> Mapped:
        name, level = product["name"], match["level"]
        where = f"sentinel-2 product {name!r}: tiles[{index}]"
        path = tile.get("path") if isinstance(tile, Mapping) else None
        parts = TILE_PATH.match(path) if isinstance(path, str) else None
        if parts is None:
            raise InvalidRecordError(f"{where}.path is not like 'tiles/24/V/UR/2024/4/30/0'")
        sequence = int(parts["seq"])
        if self.settings.max_sequence is not None and sequence > self.settings.max_sequence:
            return Skip(f"{where}: sequence {sequence} > max_sequence", "sequence")
        grid = f"{int(parts['utm'])}{parts['band']}{parts['square']}"  # zone unpadded
        date = f"{parts['y']}{int(parts['m']):02d}{int(parts['d']):02d}"
        bucket = self.settings.buckets.get(level, "")
        base = f"{self.settings.href_base.rstrip('/')}/{bucket}"
        datastrip = tile.get("datastrip")
        properties: dict[str, Any] = {
            "datetime": rfc3339(tile.get("timestamp")) or rfc3339(product.get("timestamp")),
            "platform": f"sentinel-{match['mission'][1:].lower()}",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "s2:product_uri": name,
            "s2:processing_baseline": baseline,
            "s2:sequence": sequence,
            "s2:datatake_id": product.get("datatakeIdentifier"),
            "s2:datastrip_id": datastrip.get("id") if isinstance(datastrip, Mapping) else None,
            "sat:relative_orbit": int(match["orbit"]),
            "mgrs:utm_zone": int(parts["utm"]),
            "mgrs:latitude_band": parts["band"],
            "mgrs:grid_square": parts["square"],
        }
        hrefs = {
            "tileinfo_href": f"{base}/{path}/tileInfo.json",
            "productinfo_href": f"{base}/{path}/productInfo.json",
            "metadata_href": f"{base}/{path}/metadata.xml",
        }
        item: dict[str, Any] = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"{match['mission']}_{grid}_{date}_{sequence}_{level}",
            "collection": collection,
            "geometry": None,
            "properties": {k: v for k, v in properties.items() if v is not None},
            "assets": {
                "tileinfo_metadata": _asset(hrefs["tileinfo_href"], "application/json"),
                "product_metadata": _asset(hrefs["productinfo_href"], "application/json"),
                "granule_metadata": _asset(hrefs["metadata_href"], "application/xml"),
            },
            "links": [],
        }
        fields = message_fields(product) | hrefs
        fields |= {
            "mission": match["mission"],
            "level": level,
            "baseline": baseline or "",
            "orbit": match["orbit"],
            "utm_zone": str(int(parts["utm"])),
            "latitude_band": parts["band"],
            "grid_square": parts["square"],
            "tile": grid,
            "date": date,
            "sequence": str(sequence),
            "tile_path": str(path),
            "bucket": bucket,
        }
        return apply_templates(item, fields, self.settings, where)


def _product(envelope: Envelope) -> Mapping[str, Any]:
    body = envelope.body
    if envelope.kind != "payload" or not isinstance(body, Mapping):
        raise InvalidRecordError(f"sentinel-2: a {envelope.kind} event, not a productInfo")
    if not isinstance(body.get("name"), str):
        raise InvalidRecordError("sentinel-2: productInfo has no 'name'")
    tiles = body.get("tiles")
    if not isinstance(tiles, list):
        raise InvalidRecordError(f"sentinel-2 product {body['name']!r}: 'tiles' is not a list")
    return body


def _baseline(match: re.Match[str], product: Mapping[str, Any]) -> str | None:
    """``05.10``: from a compact name, else the datatake or first datastrip id's suffix."""
    if "baseline" in match.groupdict():
        digits = match["baseline"]
        return f"{digits[:2]}.{digits[2:]}"
    tiles = product["tiles"]
    datastrip = tiles[0].get("datastrip") if tiles and isinstance(tiles[0], Mapping) else None
    for text in (
        product.get("datatakeIdentifier"),
        datastrip.get("id") if isinstance(datastrip, Mapping) else None,
    ):
        found = BASELINE_SUFFIX.search(text) if isinstance(text, str) else None
        if found is not None:
            return f"{found['major']}.{found['minor']}"
    return None


def _asset(href: str, media_type: str) -> dict[str, Any]:
    return {"href": href, "type": media_type, "roles": ["metadata"]}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
