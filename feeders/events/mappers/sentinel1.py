"""The ``sentinel-1`` mapper: Sinergise ``SentinelS1L1C`` messages → one stub item each.

The topic (eu-central-1, Subject ``productAdded``) publishes the product's
``productInfo.json``: ``id`` (the product name), ``path`` (``GRD/Y/M/D/<mode>/<pol>/<id>``,
``SLC/...`` alike), ``missionId``, ``productType``, ``resolution``, ``mode``,
``polarization``, ``startTime``, ``stopTime``, ``absoluteOrbitNumber``,
``missionDataTakeId``, ``productUniqueIdentifier``, ``footprint`` (GeoJSON, sometimes with a
legacy ``crs`` member, dropped here) and more.

Product names follow ESA's Level-1 naming convention (Sentinel-1 SAR Technical Guide,
"Level-1 Product Formatting"): ``MMM_BB_TTTR_LFPP_<start>_<stop>_OOOOOO_DDDDDD_CCCC``, e.g.
``S1A_IW_GRDH_1SDV_…_053652_0684A3_6F1C`` (GRD) or ``S1A_IW_SLC__1SDV_…`` (SLC: no
resolution class). ``CCCC`` is a CRC-16 of the product's manifest, so a reprocessed product
gets a new one; the item id drops it (``…_053652_0684A3``), as Earth Search does, so a
reprocessing replaces its item instead of adding a second. The full name stays in
``s1:product_identifier``. Times are RFC 3339: a ``startTime`` without an offset is UTC.

Collection: ``collection`` (a template), else ``sentinel-1-grd`` / ``sentinel-1-slc`` by
product type. Assets are ``productInfo.json`` and ``manifest.safe`` under
``s3://<bucket>/<path>/``. ``product_types`` / ``modes`` / ``polarizations`` skip other
products (filtered).

Template fields (`feeders.events.mappers.templating`): the message's scalars, and
``mission``, ``mode``, ``product_type``, ``polarization``, ``start``, ``stop``, ``orbit``,
``datatake``, ``unique_id``, ``product_name`` (the full name), ``path``, ``bucket``,
``item_id``, ``item_collection``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from cirrus_feed.errors import InvalidRecordError
from cirrus_feed.model.envelopes import Envelope
from feeders.events.mappers import Mapped, Mapper, MapperOptions, Skip
from feeders.events.mappers.templating import (
    TemplateOptions,
    apply_templates,
    message_fields,
    rfc3339,
)

NAME = re.compile(
    r"^(?P<stable>(?P<mission>S1[A-D])_(?P<mode>S[1-6]|IW|EW|WV|EN|AN|ZS|ZI|ZE|ZW)"
    r"_(?P<type>RAW|SLC|GRD|OCN)(?P<resolution>[FHM_])_(?P<level>[0-2])(?P<klass>[SA])"
    r"(?P<polarization>SH|SV|DH|DV|HH|HV|VV|VH)_(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})"
    r"_(?P<orbit>\d{6})_(?P<datatake>[0-9A-F]{6}))_(?P<unique>[0-9A-F]{4})$"
)
RESOLUTIONS = {"F": "full", "H": "high", "M": "medium"}
POLARIZATIONS = {"SV": ["VV"], "SH": ["HH"], "DV": ["VV", "VH"], "DH": ["HH", "HV"]}
REQUIRED = ("id", "path", "missionId", "productType", "mode", "polarization", "startTime")


class Sentinel1Options(TemplateOptions):
    bucket: str = "sentinel-s1-l1c"
    product_types: list[str] | None = None  # e.g. ["GRD"]
    modes: list[str] | None = None  # e.g. ["IW", "EW"]
    polarizations: list[str] | None = None  # e.g. ["DV"]


class Sentinel1Mapper(Mapper):
    """Sinergise Sentinel-1 ``productInfo`` message → one item."""

    name: ClassVar[str] = "sentinel-1"
    Options: ClassVar[type[MapperOptions]] = Sentinel1Options

    @property
    def settings(self) -> Sentinel1Options:
        assert isinstance(self.options, Sentinel1Options)
        return self.options

    def map(self, envelope: Envelope) -> Iterator[Mapped]:
        product = _product(envelope)
        product_id = product["id"]
        name = NAME.match(product_id)
        if name is None:
            raise InvalidRecordError(
                f"sentinel-1 product {product_id!r}: not an ESA Level-1 product name"
            )
        options = self.settings
        for field, allowed in (
            ("productType", options.product_types),
            ("mode", options.modes),
            ("polarization", options.polarizations),
        ):
            if allowed is not None and product[field] not in allowed:
                yield Skip(
                    f"sentinel-1 product {product_id!r}: {field} {product[field]!r}", "product"
                )
                return
        path = str(product["path"]).strip("/")
        base = f"s3://{options.bucket}/{path}"
        geometry = _geometry(product.get("footprint"))
        item: dict[str, Any] = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": name["stable"],
            "collection": f"sentinel-1-{name['type'].lower()}",
            "geometry": geometry,
            "properties": _properties(product, name),
            "assets": {
                "product_metadata": {
                    "href": f"{base}/productInfo.json",
                    "type": "application/json",
                    "roles": ["metadata"],
                },
                "safe_manifest": {
                    "href": f"{base}/manifest.safe",
                    "type": "application/xml",
                    "roles": ["metadata"],
                },
            },
            "links": [],
        }
        if geometry is not None:
            item["bbox"] = _bbox(geometry["coordinates"])
        fields = message_fields(product) | {
            "mission": name["mission"],
            "mode": name["mode"],
            "product_type": name["type"],
            "polarization": name["polarization"],
            "start": name["start"],
            "stop": name["stop"],
            "orbit": name["orbit"],
            "datatake": name["datatake"],
            "unique_id": name["unique"],
            "product_name": product_id,
            "path": path,
            "bucket": options.bucket,
        }
        yield apply_templates(item, fields, options, f"sentinel-1 product {product_id!r}")


def _product(envelope: Envelope) -> Mapping[str, Any]:
    body = envelope.body
    if envelope.kind != "payload" or not isinstance(body, Mapping):
        raise InvalidRecordError(f"sentinel-1: a {envelope.kind} event, not a productInfo")
    missing = [name for name in REQUIRED if not isinstance(body.get(name), str)]
    if missing:
        name = body.get("id", "unknown")
        raise InvalidRecordError(f"sentinel-1 product {name!r}: missing {', '.join(missing)}")
    return body


def _properties(product: Mapping[str, Any], name: re.Match[str]) -> dict[str, Any]:
    mission = str(product["missionId"])
    polarization = str(product["polarization"])
    datatake = product.get("missionDataTakeId")
    start = rfc3339(product["startTime"])
    if start is None:
        raise InvalidRecordError(
            f"sentinel-1 product {product['id']!r}: startTime {product['startTime']!r} "
            "is not an ISO 8601 time"
        )
    properties: dict[str, Any] = {
        "datetime": start,
        "start_datetime": start,
        "end_datetime": rfc3339(product.get("stopTime")),
        "platform": f"sentinel-{mission[1:].lower()}",
        "constellation": "sentinel-1",
        "instruments": ["c-sar"],
        "sar:instrument_mode": product["mode"],
        "sar:product_type": product["productType"],
        "sar:polarizations": POLARIZATIONS.get(polarization),
        "s1:polarization": polarization,
        "s1:resolution": RESOLUTIONS.get(name["resolution"]),
        "s1:processing_level": name["level"],
        "s1:datatake_id": str(datatake) if isinstance(datatake, int | str) else None,
        "s1:product_identifier": product["id"],
        "sat:absolute_orbit": product.get("absoluteOrbitNumber") or int(name["orbit"]),
    }
    return {k: v for k, v in properties.items() if v is not None}


def _geometry(footprint: Any) -> dict[str, Any] | None:
    if not isinstance(footprint, Mapping) or "coordinates" not in footprint:
        return None
    return {"type": footprint.get("type"), "coordinates": footprint["coordinates"]}


def _bbox(coordinates: Any) -> list[float]:
    xs: list[float] = []
    ys: list[float] = []

    def walk(value: Any) -> None:
        if (
            isinstance(value, list)
            and len(value) >= 2
            and all(isinstance(v, int | float) for v in value[:2])
        ):
            xs.append(float(value[0]))
            ys.append(float(value[1]))
        elif isinstance(value, list):
            for part in value:
                walk(part)

    walk(coordinates)
    if not xs:
        raise InvalidRecordError("sentinel-1: footprint has no coordinates")
    return [min(xs), min(ys), max(xs), max(ys)]
