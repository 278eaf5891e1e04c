"""Item ids of the new-scene mappers, one test per naming rule, and the id templates.

Each expected id is written from the naming conventions the mapper modules cite (ESA
Sentinel-2 and Sentinel-1 product naming, the USGS Landsat product identifier, Earth
Search's documented item ids such as ``S2B_1CCV_20250107_0_L2A``), not from the mappers'
own output.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from message_data import payload_of

from cirrus_feed.app import build_app
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings, load_settings
from cirrus_feed.errors import InvalidRecordError
from cirrus_feed.feeding.contract import FeedRequest, SourceRejection, Tagged
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.model.envelopes import Envelope
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.support.clock import FakeClock
from cirrus_feed.testing import feeder_context
from feeders.events.feeder import EventsConfig, EventsFeeder
from feeders.events.mappers import Mapped, Mapper, Skip
from feeders.events.mappers.landsat import LandsatC2Mapper
from feeders.events.mappers.sentinel1 import Sentinel1Mapper
from feeders.events.mappers.sentinel2 import Sentinel2Mapper
from feeders.events.mappers.stac_item import StacItemMapper
from feeders.events.mappers.templating import rfc3339
from feeders.events.sources import ListMessageSource
from feeders.s3.objects import ItemTemplate, S3Object, build_items
from feeders.s3.templates import Template

# -- helpers --------------------------------------------------------------------------------


def mapped(mapper: Mapper, body: dict[str, Any]) -> list[Mapped]:
    return list(mapper.map(Envelope(kind="payload", body=body, raw=body, source="direct")))


def items(mapper: Mapper, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in mapped(mapper, body) if isinstance(m, dict)]


def s2_product(name: str, *tile_paths: str, datatake: str | None = None) -> dict[str, Any]:
    product: dict[str, Any] = {
        "name": name,
        "id": "6f9a2c41-3b1d-4c8e-9d0f-1a2b3c4d5e6f",
        "path": f"products/2025/1/7/{name}",
        "timestamp": "2025-01-07T21:51:19.024Z",
        "tiles": [
            {"path": path, "timestamp": "2025-01-07T21:51:30.345Z", "datastrip": {"id": "x"}}
            for path in tile_paths
        ],
    }
    if datatake is not None:
        product["datatakeIdentifier"] = datatake
    return product


def s1_product(name: str, **extra: Any) -> dict[str, Any]:
    mission, mode, kind = name[:3], name[4:6], name[7:10]
    return {
        "id": name,
        "path": f"{kind}/2020/2/12/{mode}/DV/{name}",
        "missionId": mission,
        "productType": kind,
        "mode": mode,
        "polarization": "DV",
        "startTime": "2020-02-12T11:24:30",
        "stopTime": "2020-02-12T11:24:57",
        "absoluteOrbitNumber": 20240,
        "missionDataTakeId": 491390,
        "productUniqueIdentifier": name[-4:],
        **extra,
    }


def landsat(product_id: str, level: str = "level-1") -> dict[str, Any]:
    path, row = product_id[10:13], product_id[13:16]
    return {
        "landsat_product_id": product_id,
        "s3_location": f"s3://usgs-landsat/collection02/{level}/standard/oli-tirs/"
        f"{product_id[17:21]}/{path}/{row}/{product_id}/",
    }


def sns(topic: str, message: dict[str, Any], number: int = 1) -> dict[str, Any]:
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": f"00000000-0000-4000-8000-{number:012d}",
                    "TopicArn": topic,
                    "Message": json.dumps(message),
                    "Timestamp": "2025-01-08T00:00:00.000Z",
                },
            }
        ]
    }


def payload_ids(events: list[Any], workflow: str, **settings: Any) -> list[str]:
    config = EventsConfig.model_validate(
        {"type": "events", "process": {"workflow": workflow}, **settings}
    )
    feeder = EventsFeeder("t", config, feeder_context()).with_source(ListMessageSource(events))
    outputs = list(feeder.feed(FeedRequest()))
    assert not [o for o in outputs if isinstance(o, SourceRejection)]
    return [ProcessPayload.from_dict(payload_of(o)).id for o in outputs if isinstance(o, Tagged)]


S2_L2A = "arn:aws:sns:eu-central-1:214830741341:SentinelS2L2A"
COMPACT_L2A = "S2B_MSIL2A_20250107T215119_N0511_R129_T01CCV_20250107T232315"

# -- Sentinel-2 -----------------------------------------------------------------------------


def test_sentinel2_zone_1_to_9_is_not_padded() -> None:
    product = s2_product(COMPACT_L2A, "tiles/1/C/CV/2025/1/7/0", "tiles/9/X/VJ/2025/1/7/0")

    got = items(Sentinel2Mapper.from_config({}), product)

    assert [i["id"] for i in got] == ["S2B_1CCV_20250107_0_L2A", "S2B_9XVJ_20250107_0_L2A"]
    assert got[0]["properties"]["mgrs:utm_zone"] == 1


def test_sentinel2_zone_10_to_60_keeps_two_digits() -> None:
    product = s2_product(COMPACT_L2A, "tiles/10/S/EG/2025/1/7/1", "tiles/60/W/XV/2025/1/7/0")

    got = items(Sentinel2Mapper.from_config({}), product)

    assert [i["id"] for i in got] == ["S2B_10SEG_20250107_1_L2A", "S2B_60WXV_20250107_0_L2A"]


def test_sentinel2_compact_l1c_name() -> None:
    name = "S2A_MSIL1C_20180121T141501_N0206_R053_T23VNH_20180121T160435"
    product = s2_product(name, "tiles/23/V/NH/2018/1/21/0")

    [item] = items(Sentinel2Mapper.from_config({}), product)

    assert (item["id"], item["collection"]) == ("S2A_23VNH_20180121_0_L1C", "sentinel-2-l1c")
    assert item["properties"]["s2:processing_baseline"] == "02.06"
    assert item["properties"]["sat:relative_orbit"] == 53


def test_sentinel2_old_long_name_is_accepted_with_baseline_from_the_datatake() -> None:
    name = "S2A_OPER_PRD_MSIL1C_PDMC_20151230T202002_R008_V20151230T105153_20151230T105153"
    product = s2_product(
        name,
        "tiles/31/U/FU/2015/12/30/0",
        "tiles/5/V/MK/2015/12/30/0",
        datatake="GS2A_20151230T105153_002713_N02.01",
    )

    got = items(Sentinel2Mapper.from_config({}), product)

    assert [i["id"] for i in got] == ["S2A_31UFU_20151230_0_L1C", "S2A_5VMK_20151230_0_L1C"]
    properties = got[0]["properties"]
    assert properties["s2:processing_baseline"] == "02.01"
    assert properties["sat:relative_orbit"] == 8
    assert properties["s2:product_uri"] == name


def test_sentinel2_old_name_without_baseline_is_skipped_only_by_baseline_filters() -> None:
    name = "S2A_OPER_PRD_MSIL1C_PDMC_20151230T202002_R008_V20151230T105153_20151230T105153"
    product = s2_product(name, "tiles/31/U/FU/2015/12/30/0")

    kept = items(Sentinel2Mapper.from_config({}), product)
    [skip] = mapped(Sentinel2Mapper.from_config({"min_baseline": "02.00"}), product)

    assert [i["id"] for i in kept] == ["S2A_31UFU_20151230_0_L1C"]
    assert "s2:processing_baseline" not in kept[0]["properties"]
    assert isinstance(skip, Skip)
    assert "no processing baseline" in skip.reason


def test_sentinel2_unknown_name_is_rejected() -> None:
    with pytest.raises(InvalidRecordError, match="not a Sentinel-2 MSI name"):
        mapped(Sentinel2Mapper.from_config({}), s2_product("S3A_OL_1_EFR", "tiles/1/C/CV/1/1/1/0"))


# -- Sentinel-1 -----------------------------------------------------------------------------


def test_sentinel1_grd_id_drops_the_unique_id_and_times_get_a_timezone() -> None:
    name = "S1B_IW_GRDH_1SDV_20200212T112430_20200212T112457_020240_077F7E_0C44"

    [item] = items(Sentinel1Mapper.from_config({}), s1_product(name, resolution="H"))

    assert item["id"] == "S1B_IW_GRDH_1SDV_20200212T112430_20200212T112457_020240_077F7E"
    assert item["collection"] == "sentinel-1-grd"
    properties = item["properties"]
    assert properties["datetime"] == properties["start_datetime"] == "2020-02-12T11:24:30Z"
    assert properties["end_datetime"] == "2020-02-12T11:24:57Z"
    assert properties["s1:product_identifier"] == name
    assert properties["s1:resolution"] == "high"
    assert properties["s1:datatake_id"] == "491390"


def test_sentinel1_slc_id_and_collection() -> None:
    name = "S1B_IW_SLC__1SDV_20200212T112430_20200212T112457_020240_077F7E_5A2B"

    [item] = items(Sentinel1Mapper.from_config({}), s1_product(name))

    assert item["id"] == "S1B_IW_SLC__1SDV_20200212T112430_20200212T112457_020240_077F7E"
    assert item["collection"] == "sentinel-1-slc"
    assert "s1:resolution" not in item["properties"]
    assert item["properties"]["sar:product_type"] == "SLC"


def test_sentinel1_reprocessed_product_keeps_its_id() -> None:
    first = "S1A_IW_GRDH_1SDV_20240501T051234_20240501T051259_053652_0684A3_6F1C"
    again = f"{first[:-4]}A1B2"
    mapper = Sentinel1Mapper.from_config({})

    assert items(mapper, s1_product(first))[0]["id"] == items(mapper, s1_product(again))[0]["id"]


def test_sentinel1_name_outside_the_convention_is_rejected() -> None:
    with pytest.raises(InvalidRecordError, match="not an ESA Level-1 product name"):
        mapped(Sentinel1Mapper.from_config({}), s1_product("S1A_IW_GRDH_1SDV_20240501T051234"))


def test_rfc3339_adds_utc_only_where_no_offset_is_given() -> None:
    assert rfc3339("2020-02-12T11:24:30") == "2020-02-12T11:24:30Z"
    assert rfc3339("2020-02-12T11:24:30.5+01:00") == "2020-02-12T11:24:30.5+01:00"
    assert rfc3339("2024-05-01T05:12:34.512Z") == "2024-05-01T05:12:34.512Z"
    assert rfc3339("2023-07-04") == "2023-07-04T00:00:00Z"
    assert rfc3339("yesterday") is None


# -- Landsat Collection 2 -------------------------------------------------------------------


def test_landsat_real_time_scene_is_skipped_by_default() -> None:
    [skip] = mapped(
        LandsatC2Mapper.from_config({}), landsat("LC08_L1TP_029030_20250105_20250105_02_RT")
    )

    assert isinstance(skip, Skip)
    assert "tier RT" in skip.reason


def test_landsat_tier_2_level_2_scene_drops_the_processing_date() -> None:
    product_id = "LC09_L2SP_047027_20240502_20240503_02_T2"

    [item] = items(LandsatC2Mapper.from_config({}), landsat(product_id, "level-2"))

    assert item["id"] == "LC09_L2SP_047027_20240502_02_T2"
    assert item["collection"] == "landsat-c2-l2"
    assert item["properties"]["landsat:collection_category"] == "T2"
    assert item["properties"]["landsat:product_id"] == product_id


def test_landsat_tier_1_level_1_scene_of_landsat_7() -> None:
    [item] = items(
        LandsatC2Mapper.from_config({}), landsat("LE07_L1TP_016039_20040918_20200915_02_T1")
    )

    assert (item["id"], item["collection"]) == ("LE07_L1TP_016039_20040918_02_T1", "landsat-c2-l1")
    assert item["properties"]["instruments"] == ["etm+"]


# -- templates: reproducing another deployment's payload ids ---------------------------------


def test_sentinel2_template_reproduces_earth_search_payload_ids() -> None:
    product = s2_product(COMPACT_L2A, "tiles/1/C/CV/2025/1/7/0")
    url = "https://roda.sentinel-hub.com/sentinel-s2-l2a/tiles/1/C/CV/2025/1/7/0/tileInfo.json"

    ids = payload_ids(
        [sns(S2_L2A, product)],
        "sentinel2-to-stac",
        mapper="sentinel-2",
        options={"id": "{md5(tileinfo_href)}", "collection": "roda-sentinel2"},
    )

    digest = hashlib.md5(url.encode()).hexdigest()
    assert ids == [f"roda-sentinel2/workflow-sentinel2-to-stac/{digest}"]


def test_landsat_template_reproduces_earth_search_payload_ids() -> None:
    product_id = "LC09_L2SP_047027_20240502_20240503_02_T2"
    topic = "arn:aws:sns:us-west-2:673253540267:public-c2-notify-v2"

    ids = payload_ids(
        [sns(topic, landsat(product_id, "level-2"))],
        "landsat-to-stac",
        mapper="landsat-c2",
        options={"id": "{landsat_product_id}_SR", "collection": "usgs-landsat-c2l2"},
    )

    assert ids == [f"usgs-landsat-c2l2/workflow-landsat-to-stac/{product_id}_SR"]


def test_asset_templates_rename_and_drop_assets() -> None:
    mapper = Sentinel2Mapper.from_config(
        {
            "assets": {
                "tileinfo_metadata": "json",
                "product_metadata": None,
                "granule_metadata": "{tile|lower}-xml",
            }
        }
    )

    [item] = items(mapper, s2_product(COMPACT_L2A, "tiles/1/C/CV/2025/1/7/0"))

    assert list(item["assets"]) == ["json", "1ccv-xml"]


def test_template_field_missing_from_a_message_rejects_the_item_naming_it() -> None:
    mapper = LandsatC2Mapper.from_config({"id": "{item_id}-{cloud_cover}"})

    [rejection] = mapped(mapper, landsat("LC08_L1TP_029030_20250105_20250115_02_T1"))

    assert isinstance(rejection, SourceRejection)
    assert "no value for template field 'cloud_cover'" in rejection.reason
    assert rejection.retry is False


def test_md5_is_a_filter_and_a_call() -> None:
    digest = hashlib.md5(b"a/b").hexdigest()

    assert Template("{md5(key)}").render({"key": "a/b"}) == digest
    assert Template("{key|md5|upper}").render({"key": "a/b"}) == digest.upper()


# -- odd shapes -----------------------------------------------------------------------------


def s3_notification(*keys: str) -> dict[str, Any]:
    """An S3 → SQS event (the documented notification structure) with one record per key."""
    records = [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2024-05-01T12:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": {"name": "uploads-bucket", "arn": "arn:aws:s3:::uploads-bucket"},
                "object": {"key": key, "size": 0, "sequencer": f"0062A1B2C3D4E5F6{n:02d}"},
            },
        }
        for n, key in enumerate(keys)
    ]
    body = json.dumps({"Records": records})
    return {"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": body}]}


def test_s3_folder_marker_is_skipped_with_a_reason() -> None:
    config = EventsConfig.model_validate(
        {
            "type": "events",
            "process": {"workflow": "w"},
            "mapper": "s3-object",
            "options": {"item": {"collection": "c"}},
        }
    )
    event = s3_notification("drops/2024/", "drops/2024/a.tif")
    feeder = EventsFeeder("t", config, feeder_context()).with_source(ListMessageSource([event]))

    outputs = list(feeder.feed(FeedRequest()))

    payloads = [o for o in outputs if isinstance(o, Tagged)]
    assert [payload_of(p)["features"][0]["id"] for p in payloads] == ["drops-2024-a.tif"]
    assert not [o for o in outputs if isinstance(o, SourceRejection)]
    assert feeder.filtered == 1


def test_s3_listing_object_without_a_file_name_is_rejected_not_an_empty_asset() -> None:
    [rejection] = build_items([S3Object("b", "drops/2024/")], ItemTemplate(collection="c"))

    assert isinstance(rejection, SourceRejection)
    assert "asset name is empty" in rejection.reason


# -- the shipped example reproduces Earth Search's payload ids --------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "feeders" / "events-earth-search.yaml"


def example_feeder(name: str, events: list[Any], tmp_path: Path) -> list[str]:
    settings = load_settings(EXAMPLE, env={})
    settings = settings.model_copy(update={"local": LocalSettings(root=tmp_path)})
    app = build_app(settings, FeederRegistry(), clock=FakeClock())
    try:
        feeder = app.feeders[name]
        assert isinstance(feeder, EventsFeeder)
        outputs = list(feeder.with_source(ListMessageSource(events)).feed(FeedRequest()))
    finally:
        app.close()
    return [ProcessPayload.from_dict(payload_of(o)).id for o in outputs if isinstance(o, Tagged)]


def test_example_config_gives_earth_search_sentinel2_payload_ids(tmp_path: Path) -> None:
    product = s2_product(COMPACT_L2A, "tiles/1/C/CV/2025/1/7/0", "tiles/60/W/XV/2025/1/7/1")
    base = "https://roda.sentinel-hub.com/sentinel-s2-l2a/tiles"
    urls = [f"{base}/1/C/CV/2025/1/7/0/tileInfo.json", f"{base}/60/W/XV/2025/1/7/1/tileInfo.json"]

    ids = example_feeder("earth-search-s2", [sns(S2_L2A, product)], tmp_path)

    assert ids == [
        f"roda-sentinel2/workflow-sentinel2-to-stac/{hashlib.md5(url.encode()).hexdigest()}"
        for url in urls
    ]


def test_example_config_gives_earth_search_landsat_payload_ids(tmp_path: Path) -> None:
    l2 = "LC09_L2SP_047027_20240502_20240503_02_T2"
    l1 = "LC09_L1TP_047027_20240502_20240503_02_T2"
    events = [
        {"Records": [{"messageId": f"m-{n}", "receiptHandle": "r", "body": json.dumps(body)}]}
        for n, body in enumerate([landsat(l2, "level-2"), landsat(l1)])
    ]

    ids = example_feeder("earth-search-landsat", events, tmp_path)

    assert ids == [f"usgs-landsat-c2l2/workflow-landsat-to-stac/{l2}_SR"]  # level-1 not fed


# -- counted skips --------------------------------------------------------------------------


def test_skips_are_counted_by_kind_in_the_run_record_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        local=LocalSettings(root=tmp_path),
        workflows={"publish": Workflow(tasks=[TaskSpec(task="noop")])},
    )
    app = build_app(settings)
    config = EventsConfig.model_validate(
        {
            "type": "events",
            "process": {"workflow": "publish"},
            "mapper": "landsat-c2",
            "mappers": [
                {
                    "when": {"kind": "s3-object"},
                    "mapper": "s3-object",
                    "options": {"item": {"collection": "c"}},
                }
            ],
        }
    )
    topic = "arn:aws:sns:us-west-2:673253540267:public-c2-notify-v2"
    events = [
        sns(topic, landsat("LC08_L1TP_029030_20250105_20250105_02_RT"), 1),
        sns(topic, landsat("LC08_L1TP_029030_20241220_20250105_02_T1"), 2),
        s3_notification("drops/2024/"),
    ]
    feeder = EventsFeeder("es", config, feeder_context()).with_source(ListMessageSource(events))

    with caplog.at_level(logging.INFO, logger="cirrus_feed.feeding.runner"):
        result = FeedRunner(app).run("es", feeder, FeedRequest())
    [run] = app.backends.feeds.list_runs("es") if app.backends.feeds else []
    app.close()

    assert result.counts["enqueued"] == 1
    assert run.counts["skipped"] == 2  # rules of the mappings, not a configured filter
    assert (run.counts["skipped:tier"], run.counts["skipped:folder-marker"]) == (1, 1)
    assert run.counts["filtered"] == 0
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped[0].startswith("feed es: skipped 00000000-0000-4000-8000-000000000001 (tier):")
    assert "m-1 (folder-marker): s3://uploads-bucket/drops/2024/" in skipped[1]


def test_stac_item_id_and_asset_templates() -> None:
    mapper = StacItemMapper.from_config(
        {"id": "{item_id}_{platform}", "assets": {"thumbnail": None}, "collection": "fallback"}
    )
    feature = {
        "type": "Feature",
        "id": "S2B_1CCV_20250107_0_L2A",
        "properties": {"platform": "sentinel-2b", "eo:cloud_cover": 3.5},
        "assets": {"thumbnail": {"href": "t.jpg"}, "visual": {"href": "v.tif"}},
    }

    [item] = items(mapper, feature)

    assert item["id"] == "S2B_1CCV_20250107_0_L2A_sentinel-2b"
    assert (item["collection"], list(item["assets"])) == ("fallback", ["visual"])
