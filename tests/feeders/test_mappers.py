"""Mappers: golden message fixtures, options, registry, config errors, seen keys.

Each ``tests/fixtures/messages/<case>.json`` is a raw event written from the documented
formats (SQS/SNS/EventBridge envelopes, S3 notifications, Sinergise productInfo, USGS C2
notifications, Earth Search publish); ``<case>.expected.json`` holds the feeder settings
it is read with and the payloads, rejections and filtered count it must give.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import pytest
from message_data import FIXTURES, item_of, load, payload_of

from cirrus_feed.app import build_app
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.errors import ConfigError, InvalidRecordError
from cirrus_feed.feeding.contract import FeedRequest, SourceRejection, Tagged
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.feeding.seen import FeedStoreSeenCache
from cirrus_feed.model.envelopes import Envelope, normalize
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.testing import feeder_context
from feeders.events.feeder import EventsConfig, EventsFeeder
from feeders.events.mappers import Mapped, Mapper, MapperRegistry, Skip
from feeders.events.mappers.landsat import LandsatC2Mapper
from feeders.events.mappers.sentinel2 import Sentinel2Mapper
from feeders.events.mappers.stac_item import StacItemMapper
from feeders.events.screening import seen_key
from feeders.events.sources import ListMessageSource

CASES = sorted(p.name.removesuffix(".expected.json") for p in FIXTURES.glob("*.expected.json"))


def make_feeder(events: list[Any], **settings: Any) -> EventsFeeder:
    config = EventsConfig.model_validate(
        {"type": "events", "process": {"workflow": "publish"}, **settings}
    )
    return EventsFeeder("test", config, feeder_context()).with_source(ListMessageSource(events))


def run(feeder: EventsFeeder) -> tuple[list[Tagged], list[SourceRejection]]:
    payloads: list[Tagged] = []
    rejections: list[SourceRejection] = []
    for output in feeder.feed(FeedRequest()):
        if isinstance(output, Tagged):
            payloads.append(output)
        elif isinstance(output, SourceRejection):
            rejections.append(output)
    return payloads, rejections


def test_fixtures_cover_every_mapper_and_envelope() -> None:
    assert len(CASES) >= 13
    mappers = set()
    for case in CASES:
        expected = json.loads((FIXTURES / f"{case}.expected.json").read_text())["feeder"]
        mappers |= {expected.get("mapper")} | {r["mapper"] for r in expected.get("mappers", [])}
    assert {"stac-item", "s3-object", "sentinel-2", "sentinel-1", "landsat-c2"} <= mappers
    sources = {e.source for case in CASES for e in normalize(load(case))}
    sources |= {
        e.source for case in CASES for r in load(case).get("Records", []) for e in normalize(r)
    }
    assert {"sqs", "sns", "sns-sqs", "eventbridge"} <= sources


@pytest.mark.parametrize("case", CASES)
def test_mappers_fixture_gives_its_expected_payloads(case: str) -> None:
    expected = json.loads((FIXTURES / f"{case}.expected.json").read_text())
    feeder = make_feeder([load(case)], **expected["feeder"])

    payloads, rejections = run(feeder)

    got = [
        {
            "id": ProcessPayload.from_dict(payload_of(p)).id,
            "tag": p.tag,
            "item": item_of(p),
        }
        for p in payloads
    ]
    assert got == expected["payloads"]
    assert [{"tag": r.tag, "retry": r.retry, "reason": r.reason} for r in rejections] == (
        expected["rejections"]
    )
    assert feeder.filtered == expected["filtered"]
    for payload in payloads:
        assert payload_of(payload)["process"] == [{"workflow": "publish"}]


@pytest.mark.parametrize("case", CASES)
def test_mappers_fixture_outcomes_all_reach_the_run_record(case: str, tmp_path: Path) -> None:
    """Through the runner, each message's payloads, rejections and left-out records are
    counted in the saved run record."""
    expected = json.loads((FIXTURES / f"{case}.expected.json").read_text())
    settings = Settings(
        local=LocalSettings(root=tmp_path),
        workflows={"publish": Workflow(tasks=[TaskSpec(task="noop")])},
    )
    app = build_app(settings)
    assert app.backends.feeds is not None
    config = EventsConfig.model_validate(
        {"type": "events", "process": {"workflow": "publish"}, **expected["feeder"]}
    )
    seen = FeedStoreSeenCache(app.backends.feeds, "ev")
    feeder = EventsFeeder("ev", config, feeder_context(seen=seen))

    result = FeedRunner(app).run(
        "ev", feeder.with_source(ListMessageSource([load(case)])), FeedRequest()
    )

    counts = result.counts
    assert counts["enqueued"] + counts["duplicate"] == len(expected["payloads"])
    assert counts["enqueued"] == len({p["id"] for p in expected["payloads"]})
    assert counts["invalid"] == len(expected["rejections"])
    left_out = expected["filtered"] + (case == "s3_test_event")  # the test event: ignored
    assert counts["filtered"] + counts["skipped"] == left_out
    assert sum(n for k, n in counts.items() if k.startswith(("filtered:", "skipped:"))) == left_out
    runs = [result]
    listed = {r.run_id: dict(r.counts) for r in app.backends.feeds.list_runs("ev")}
    assert listed == {r.run.run_id: dict(r.counts) for r in runs}
    app.close()


def test_s3_object_every_record_decoded_and_test_event_ignored() -> None:
    feeder = make_feeder(
        [load("s3_sqs_two_records"), load("s3_test_event")],
        mapper="s3-object",
        options={"item": {"collection": "c"}},
    )

    payloads, rejections = run(feeder)

    hrefs = [next(iter(item_of(p)["assets"].values()))["href"] for p in payloads]
    assert hrefs == [
        "s3://uploads-bucket/scenes/2024/a b+c/café über.tif",
        "s3://uploads-bucket/scenes/2024/x/plain.tif",
        "s3://uploads-bucket/scenes/2024/x/readme.txt",
    ]
    assert rejections == []
    assert feeder.filtered == 0


def test_s3_object_message_over_64_kb_maps_every_record() -> None:
    # One S3 notification of 400 records: far over the 64 KB SNS/notification size.
    [record] = load("s3_sqs_two_records")["Records"]
    template = json.loads(record["body"])["Records"][1]
    records = []
    for n in range(400):
        entry = json.loads(json.dumps(template))
        entry["s3"]["object"]["key"] = f"scenes/big/t%C3%A9l%C3%A9+{n:03d}.tif"
        entry["s3"]["object"]["sequencer"] = f"0062A1B2C3D4E6{n:04X}"
        records.append(entry)
    event = {"Records": [{**record, "body": json.dumps({"Records": records})}]}
    assert len(json.dumps(event)) > 64 * 1024
    feeder = make_feeder([event], mapper="s3-object", options={"item": {"collection": "c"}})

    payloads, _ = run(feeder)

    ids = [item_of(p)["id"] for p in payloads]
    assert ids == [f"scenes-big-télé {n:03d}.tif" for n in range(400)]


def test_s3_object_group_without_its_anchor_is_skipped_or_rejected() -> None:
    event = load("s3_sns_sqs_siblings")
    body = json.loads(event["Records"][0]["body"])
    message = json.loads(body["Message"])
    message["Records"] = [r for r in message["Records"] if "_MTL" not in r["s3"]["object"]["key"]]
    body["Message"] = json.dumps(message)
    event["Records"][0]["body"] = json.dumps(body)
    options: dict[str, Any] = {
        "item": {"collection": "c", "group_by": "{dirname}", "anchor": "_MTL.json"}
    }

    _, rejections = run(make_feeder([event], mapper="s3-object", options=options))
    options["item"]["missing_anchor"] = "skip"
    payloads, skipped = run(make_feeder([event], mapper="s3-object", options=options))

    [rejection] = rejections
    assert "no anchor file '_MTL.json'" in rejection.reason
    assert rejection.retry is False
    assert (payloads, skipped) == ([], [])


def test_s3_object_events_option_feeds_removals_when_asked() -> None:
    event = load("s3_sns_sqs_siblings")

    payloads, _ = run(
        make_feeder(
            [event],
            mapper="s3-object",
            options={"item": {"collection": "c", "id": "{stem}"}, "events": ["ObjectRemoved:*"]},
        )
    )

    assert [item_of(p)["id"] for p in payloads] == ["LC08_L2SP_047027_20240501_20240510_02_T1_old"]


@pytest.mark.parametrize(
    ("options", "ids", "filtered"),
    [
        ({}, ["S2B_24VUR_20240430_0_L2A", "S2B_24VVR_20240430_1_L2A"], 0),
        ({"max_sequence": 0}, ["S2B_24VUR_20240430_0_L2A"], 1),
        ({"min_baseline": "05.11"}, [], 1),
        ({"min_baseline": "05.10"}, ["S2B_24VUR_20240430_0_L2A", "S2B_24VVR_20240430_1_L2A"], 0),
        ({"levels": ["L1C"]}, [], 1),
    ],
)
def test_sentinel2_baseline_sequence_and_level_filters(
    options: dict[str, Any], ids: list[str], filtered: int
) -> None:
    feeder = make_feeder([load("sentinel2_l2a_sns")], mapper="sentinel-2", options=options)

    payloads, _ = run(feeder)

    assert [item_of(p)["id"] for p in payloads] == ids
    assert feeder.filtered == filtered


def test_sentinel2_collection_from_option_then_topic_then_level() -> None:
    event = load("sentinel2_l2a_sns")
    raw_sqs = {
        "Records": [
            {
                "messageId": "m-1",
                "receiptHandle": "r",
                "body": event["Records"][0]["Sns"]["Message"],
            }
        ]
    }

    def collections(events: list[Any], **options: Any) -> set[str]:
        payloads, _ = run(make_feeder(events, mapper="sentinel-2", options=options))
        return {item_of(p)["collection"] for p in payloads}

    assert collections([event], collection="mine") == {"mine"}
    assert collections([event], collections={"SentinelS2L2A": "s2-from-topic"}) == {"s2-from-topic"}
    assert collections([raw_sqs], collections={}) == {"sentinel-2-l2a"}  # raw delivery: no topic


def test_sentinel2_malformed_tile_path_rejects_the_message_for_retry() -> None:
    event = load("sentinel2_l2a_sns")
    product = json.loads(event["Records"][0]["Sns"]["Message"])
    product["tiles"][1]["path"] = "tiles/not/a/path"
    event["Records"][0]["Sns"]["Message"] = json.dumps(product)

    payloads, [rejection] = run(make_feeder([event], mapper="sentinel-2"))

    assert payloads == []  # the whole message is retried, not half of it
    assert rejection.retry is True
    assert "tiles[1].path" in rejection.reason


def test_sentinel1_filters_and_strips_the_legacy_crs() -> None:
    event = load("sentinel1_sns")

    [payload], _ = run(make_feeder([event], mapper="sentinel-1"))
    feeder = make_feeder([event], mapper="sentinel-1", options={"modes": ["EW"]})
    skipped, _ = run(feeder)

    item = item_of(payload)
    assert "crs" not in item["geometry"]
    assert item["bbox"] == [7.5, 47.2, 11.6, 49.2]
    assert (skipped, feeder.filtered) == ([], 1)


def test_landsat_ids_are_stable_across_reprocessing_and_tiers_filter() -> None:
    mapper = LandsatC2Mapper.from_config({"tiers": ["T1", "T2", "RT"]})

    def ids(product_id: str) -> list[str]:
        body = {"landsat_product_id": product_id, "s3_location": "s3://usgs-landsat/x/"}
        envelope = Envelope(kind="payload", body=body, raw=body, source="direct")
        return [m["id"] for m in mapper.map(envelope) if isinstance(m, dict)]

    assert ids("LC08_L1TP_001005_20230704_20230717_02_T1") == ids(
        "LC08_L1TP_001005_20230704_20240101_02_T1"
    )
    assert ids("LC09_L1TP_001005_20230705_20230705_02_RT") == ["LC09_L1TP_001005_20230705_02_RT"]
    with pytest.raises(InvalidRecordError, match="LC08_BOGUS"):
        ids("LC08_BOGUS")


def test_stac_item_accept_updated_and_pointer_rejected() -> None:
    event = load("stac_item_collection_updated")
    feeder = make_feeder([event], mapper="stac-item", options={"accept": "updated"})
    pointer = {
        "Records": [{"messageId": "p-1", "receiptHandle": "r", "body": '{"url": "s3://b/k.json"}'}]
    }

    payloads, _ = run(feeder)
    _, [rejection] = run(make_feeder([pointer], mapper="stac-item"))

    assert [item_of(p)["id"] for p in payloads] == ["S2B_24VUR_20240420_0_L2A"]
    assert feeder.filtered == 1
    assert "payload pointer" in rejection.reason
    assert rejection.retry is True


def test_stac_item_sets_a_missing_collection_only() -> None:
    mapper = StacItemMapper.from_config({"collection": "fallback"})
    items = [{"type": "Feature", "id": "a"}, {"type": "Feature", "id": "b", "collection": "own"}]
    body = {"type": "FeatureCollection", "features": items}

    mapped = list(mapper.map(Envelope(kind="payload", body=body, raw=body, source="direct")))

    assert [m["collection"] for m in mapped if isinstance(m, dict)] == ["fallback", "own"]


# -- registry and options -------------------------------------------------------------------


class UpperMapper(Mapper):
    """A plugin mapper: one item named after the message's ``name``, upper-cased."""

    name: ClassVar[str] = "upper"

    def map(self, envelope: Envelope) -> Iterator[Mapped]:
        yield {"type": "Feature", "id": str(envelope.body["name"]).upper(), "collection": "u"}
        yield Skip("only one")


def test_mapper_registry_loads_plugins_and_names_problems() -> None:
    points = {
        "upper": EntryPoint("upper", f"{__name__}:UpperMapper", "cirrus_feed.mappers"),
        "misnamed": EntryPoint("misnamed", f"{__name__}:UpperMapper", "cirrus_feed.mappers"),
        "broken": EntryPoint("broken", "no_such_module:X", "cirrus_feed.mappers"),
    }
    registry = MapperRegistry(points)

    assert registry.load("upper") is UpperMapper
    with pytest.raises(ConfigError, match="calls itself 'upper'"):
        registry.build("misnamed")
    with pytest.raises(ConfigError, match="failed to load"):
        registry.build("broken")
    with pytest.raises(ConfigError, match="did you mean 'upper'"):
        registry.build("uper")


def test_mapper_registry_lists_the_built_ins() -> None:
    assert set(MapperRegistry().names()) >= {
        "stac-item",
        "s3-object",
        "sentinel-2",
        "sentinel-1",
        "landsat-c2",
    }


def test_feeder_uses_a_plugin_mapper_from_an_injected_registry() -> None:
    registry = MapperRegistry(
        {"upper": EntryPoint("upper", f"{__name__}:UpperMapper", "cirrus_feed.mappers")}
    )
    # Validated with a built-in; the plugin is only in the injected registry.
    valid = EventsConfig.model_validate(
        {"type": "events", "process": {"workflow": "w"}, "mapper": "stac-item"}
    )
    config = valid.model_copy(update={"mapper": "upper"})
    body = {"name": "abc"}

    class PluginEventsFeeder(EventsFeeder):
        def mapper_registry(self) -> MapperRegistry:
            return registry

    feeder = PluginEventsFeeder("p", config, feeder_context()).with_source(
        ListMessageSource([body])
    )

    [payload], _ = run(feeder)

    assert item_of(payload)["id"] == "ABC"
    assert feeder.filtered == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mapper": "sentinel-3"}, "no mapper 'sentinel-3'"),
        ({"mapper": "sentinel-2", "options": {"min_baseline": "5.1"}}, "min_baseline"),
        ({"mapper": "landsat-c2", "options": {"tier": ["T1"]}}, "tier"),
        ({"mapper": "s3-object", "options": {"item": {"collection": "{nope}"}}}, "nope"),
        ({}, "set 'mapper' or 'mappers'"),
        ({"mapper": "stac-item", "filter": "id =="}, "filter 'id ==': at 1:5: expected"),
        ({"mapper": "stac-item", "source": {}}, "exactly one of 'file' and 'sqs'"),
    ],
)
def test_events_config_errors_name_the_problem(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventsConfig.model_validate({"type": "events", "process": {"workflow": "w"}, **settings})


def test_seen_keys_use_s3_sequencer_and_sns_message_id() -> None:
    s3_keys = [seen_key(e) for e in normalize(load("s3_sns_sqs_siblings"))]
    sns_keys = [seen_key(e) for e in normalize(load("sentinel2_l2a_sns"))]
    raw_keys = [seen_key(e) for e in normalize(load("landsat_c2_raw_sqs"))]

    assert s3_keys[0] == (
        "s3:scenes-bucket/landsat/LC08_L2SP_047027_20240501_20240510_02_T1/"
        "LC08_L2SP_047027_20240501_20240510_02_T1_SR_B5.TIF#0062A1B2C3D4E60002"
    )
    assert len(set(s3_keys)) == 4
    assert sns_keys == ["sns:a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b"]
    assert raw_keys == [None]  # raw delivery: no SNS id to dedupe on
    assert Sentinel2Mapper.name == "sentinel-2"
