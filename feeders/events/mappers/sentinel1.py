"""The ``sentinel-1`` mapper: Sinergise ``SentinelS1L1C`` messages → one stub item each.

The topic (eu-central-1, Subject ``productAdded``) publishes the product's
``productInfo.json``: ``id`` (the product name), ``path`` (``GRD/Y/M/D/<mode>/<pol>/<id>``),
``missionId``, ``productType``, ``resolution``, ``mode``, ``polarization``, ``startTime``,
``stopTime``, ``absoluteOrbitNumber``, ``missionDataTakeId``, ``footprint`` (GeoJSON,
sometimes with a legacy ``crs`` member, dropped here) and more.

The item id is the product id (stable: Sentinel-1 product names end with a unique id). Its
assets are ``productInfo.json`` and ``manifest.safe`` under ``s3://<bucket>/<path>/``.
``product_types`` / ``modes`` / ``polarizations`` skip other products (filtered).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from cirrus_feed.errors import InvalidRecordError
from cirrus_feed.model.envelopes import Envelope
from feeders.events.mappers import Mapped, Mapper, MapperOptions, Skip

POLARIZATIONS = {"SV": ["VV"], "SH": ["HH"], "DV": ["VV", "VH"], "DH": ["HH", "HV"]}
REQUIRED = ("id", "path", "missionId", "productType", "mode", "polarization", "startTime")


class Sentinel1Options(MapperOptions):
    collection: str = "sentinel-1-grd"
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
        options = self.settings
        for field, allowed in (
            ("productType", options.product_types),
            ("mode", options.modes),
            ("polarization", options.polarizations),
        ):
            if allowed is not None and product[field] not in allowed:
                yield Skip(f"sentinel-1 product {product_id!r}: {field} {product[field]!r}")
                return
        base = f"s3://{options.bucket}/{str(product['path']).strip('/')}"
        geometry = _geometry(product.get("footprint"))
        item: dict[str, Any] = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": product_id,
            "collection": options.collection,
            "geometry": geometry,
            "properties": _properties(product),
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
        yield item


def _product(envelope: Envelope) -> Mapping[str, Any]:
    body = envelope.body
    if envelope.kind != "payload" or not isinstance(body, Mapping):
        raise InvalidRecordError(f"sentinel-1: a {envelope.kind} event, not a productInfo")
    missing = [name for name in REQUIRED if not isinstance(body.get(name), str)]
    if missing:
        name = body.get("id", "unknown")
        raise InvalidRecordError(f"sentinel-1 product {name!r}: missing {', '.join(missing)}")
    return body


def _properties(product: Mapping[str, Any]) -> dict[str, Any]:
    mission = str(product["missionId"])
    polarization = str(product["polarization"])
    properties: dict[str, Any] = {
        "datetime": product["startTime"],
        "start_datetime": product["startTime"],
        "end_datetime": product.get("stopTime"),
        "platform": f"sentinel-{mission[1:].lower()}",
        "constellation": "sentinel-1",
        "instruments": ["c-sar"],
        "sar:instrument_mode": product["mode"],
        "sar:product_type": product["productType"],
        "sar:polarizations": POLARIZATIONS.get(polarization),
        "s1:polarization": polarization,
        "s1:resolution": product.get("resolution"),
        "s1:datatake_id": product.get("missionDataTakeId"),
        "s1:product_identifier": product.get("productUniqueIdentifier"),
        "sat:absolute_orbit": product.get("absoluteOrbitNumber"),
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
