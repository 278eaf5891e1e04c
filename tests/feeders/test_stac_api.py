"""The stac-api feeder against a real STAC API (rustac serve, POST search).

The stdlib fake stands in only where a failure must be injected or requests inspected.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pytest
import stac_data
from pydantic import ValidationError
from stac_data import RANGE_END, RANGE_START, ids_between, parse

from cirrus_feed.errors import ConfigError, FeederError, SourceUnavailableError
from cirrus_feed.feeding.contract import Checkpoint, FeedRequest, SourceRejection
from cirrus_feed.model.payload import PreparedPayload, ProcessPayload
from cirrus_feed.support.clock import FakeClock
from cirrus_feed.testing import feeder_context
from feeders.stac_api.feeder import StacApiConfig, StacApiFeeder

if TYPE_CHECKING:
    from conftest import FakeStacApi

ALL_ITEMS = stac_data.items()
IN_RANGE = ids_between(RANGE_START, RANGE_END, ALL_ITEMS)


def make_feeder(url: str, clock: FakeClock | None = None, **settings: Any) -> StacApiFeeder:
    """A feeder on ``clock`` (a fresh `FakeClock` by default): retry and pacing waits, and
    the "now" of open-ended ranges, are the fake clock's, so no test waits for them."""
    config: dict[str, Any] = {
        "type": "stac-api",
        "url": url,
        "process": {"workflow": "ingest", "upload_options": {"path_template": "/x"}},
        "datetime": {"start": RANGE_START.isoformat(), "end": RANGE_END.isoformat()},
        "max_items_per_window": 7,
        "max_retries": 2,
        "backoff": 0.01,
    }
    config.update(settings)
    return StacApiFeeder(
        "s2-test", StacApiConfig.model_validate(config), feeder_context(clock=clock or FakeClock())
    )


@dataclass
class Run:
    """Everything one `feed` call yielded, in order."""

    out: list[Any] = field(default_factory=list)

    @property
    def payloads(self) -> list[ProcessPayload]:
        return [o for o in self.out if isinstance(o, ProcessPayload)]

    @property
    def checkpoints(self) -> list[Checkpoint]:
        return [o for o in self.out if isinstance(o, Checkpoint)]

    @property
    def rejections(self) -> list[SourceRejection]:
        return [o for o in self.out if isinstance(o, SourceRejection)]

    @property
    def item_ids(self) -> list[str]:
        return [f["id"] for p in self.payloads for f in p.features]

    def ids_before_last_checkpoint(self) -> list[str]:
        last = max(i for i, o in enumerate(self.out) if isinstance(o, Checkpoint))
        return [
            f["id"] for o in self.out[:last] if isinstance(o, ProcessPayload) for f in o.features
        ]


def watermark_of(checkpoint: Checkpoint) -> str:
    """A stac-api checkpoint's ``cursor["watermark"]`` (its cursor is never None)."""
    assert checkpoint.cursor is not None
    value: str = checkpoint.cursor["watermark"]
    return value


def validated(out: Any) -> Any:
    """A prepared payload as the `ProcessPayload` its body validates to (same id)."""
    if isinstance(out, PreparedPayload):
        payload = ProcessPayload.from_dict(out.to_dict())
        assert payload.id == out.id
        return payload
    return out


def feed(feeder: StacApiFeeder, **request: Any) -> Run:
    return Run([validated(o) for o in feeder.feed(FeedRequest(**request))])


def assert_windows_tile(run: Run, start: datetime, end: datetime) -> None:
    """Checkpoint labels are adjacent half-open windows from ``start`` to ``end``."""
    bounds = [tuple(map(parse, c.label.split("/"))) for c in run.checkpoints]
    assert bounds[0][0] == start
    assert bounds[-1][1] == end
    assert all(a[1] == b[0] for a, b in pairwise(bounds))
    assert [watermark_of(c) for c in run.checkpoints] == [
        c.label.split("/")[1] for c in run.checkpoints
    ]


# -- against rustac ------------------------------------------------------------------------


def test_stac_api_feeds_every_item_exactly_once_across_split_windows(stac_api_url: str) -> None:
    run = feed(make_feeder(stac_api_url))

    assert Counter(run.item_ids) == Counter(IN_RANGE)
    assert len(run.checkpoints) > 20  # the cap of 7 forced many splits
    assert_windows_tile(run, RANGE_START, RANGE_END)
    first = run.payloads[0]
    assert first.id == f"{stac_data.COLLECTION}/workflow-ingest/{first.features[0]['id']}"
    assert first.to_dict()["process"] == [
        {"workflow": "ingest", "upload_options": {"path_template": "/x"}}
    ]


def test_stac_api_pages_through_one_instant_over_the_cap(stac_api_url: str) -> None:
    crowd = parse(stac_data.CROWD_INSTANT)
    feeder = make_feeder(
        stac_api_url,
        page_size=5,
        datetime={
            "start": (crowd - timedelta(seconds=1)).isoformat(),
            "end": (crowd + timedelta(seconds=1)).isoformat(),
        },
    )

    run = feed(feeder)

    assert sorted(run.item_ids) == sorted(f"S2B_CROWD_{n:02d}" for n in range(stac_data.CROWD_SIZE))
    atomic = [
        c
        for c in run.checkpoints
        if c.label == f"{stac_data.isoz(crowd)}/{stac_data.isoz(crowd + timedelta(microseconds=1))}"
    ]
    assert len(atomic) == 1


def test_stac_api_window_edges_are_half_open(stac_api_url: str) -> None:
    edge = parse("2024-01-02T00:00:00Z")
    before = feed(make_feeder(stac_api_url), until=edge)
    after = feed(make_feeder(stac_api_url), since=edge)

    assert "S2C_BOUND_4" not in before.item_ids  # exactly at `end`: the next window's
    assert "S2C_BOUND_4" in after.item_ids
    assert "S2C_HALF_1" in before.item_ids  # 23:59:59.5, just before the edge
    assert Counter(before.item_ids + after.item_ids) == Counter(IN_RANGE)
    assert before.checkpoints[-1].cursor == {"watermark": "2024-01-02T00:00:00.000000Z"}


def test_stac_api_resume_from_checkpoint_feeds_exactly_the_rest(stac_api_url: str) -> None:
    first = feed(make_feeder(stac_api_url), limit=60)
    cursor = first.checkpoints[-1].cursor

    rest = feed(make_feeder(stac_api_url), cursor=cursor)

    # the limit run's last checkpoint covers every item it yielded: nothing is fed twice
    assert first.ids_before_last_checkpoint() == first.item_ids
    assert Counter(first.item_ids + rest.item_ids) == Counter(IN_RANGE)


@pytest.mark.parametrize("per_payload", [1, 3])
def test_stac_api_chained_limit_runs_feed_every_item_exactly_once(
    stac_api_url: str, per_payload: int
) -> None:
    cursor, fed, partial = None, [], 0
    while True:
        run = feed(make_feeder(stac_api_url, items_per_payload=per_payload), limit=4, cursor=cursor)
        if not run.payloads:
            break
        assert run.ids_before_last_checkpoint() == run.item_ids
        fed += run.item_ids
        cursor = run.checkpoints[-1].cursor
        partial += "partial" in (cursor or {})

    assert Counter(fed) == Counter(IN_RANGE)
    assert partial > 5  # many runs ended inside a window


def test_stac_api_lookback_refeeds_only_the_lookback_span(stac_api_url: str) -> None:
    mark = parse("2024-01-02T00:00:00Z")
    first = feed(make_feeder(stac_api_url), until=mark)
    second = feed(make_feeder(stac_api_url, lookback="3h"), cursor=first.checkpoints[-1].cursor)

    overlap = set(first.item_ids) & set(second.item_ids)
    assert overlap == ids_between(mark - timedelta(hours=3), mark, ALL_ITEMS)
    assert overlap
    assert set(first.item_ids) | set(second.item_ids) == IN_RANGE


def test_stac_api_groups_items_per_payload_in_id_order(stac_api_url: str) -> None:
    run = feed(make_feeder(stac_api_url, items_per_payload=3))

    assert Counter(run.item_ids) == Counter(IN_RANGE)
    assert all(1 <= len(p.features) <= 3 for p in run.payloads)
    assert any(len(p.features) == 3 for p in run.payloads)
    for payload in run.payloads:
        ids = [f["id"] for f in payload.features]
        assert ids == sorted(ids)
        assert payload.id.endswith("/" + "/".join(ids))


def test_stac_api_stub_mapping_keeps_only_named_assets(stac_api_url: str) -> None:
    run = feed(make_feeder(stac_api_url, item_mapping={"mode": "stub", "assets": ["B04"]}), limit=3)

    for feature in (f for p in run.payloads for f in p.features):
        assert set(feature["assets"]) == {"B04"}
        assert "eo:cloud_cover" not in feature["properties"]
        assert feature["properties"]["datetime"]
        assert {link["rel"] for link in feature["links"]} == {"self"}
        assert feature["collection"] == stac_data.COLLECTION


def test_stac_api_limit_inside_a_window_checkpoints_what_it_sent(stac_api_url: str) -> None:
    noon = parse(stac_data.BOUNDARY_CROWD_INSTANT)  # nine items at one instant: one window
    start = noon - timedelta(hours=2)
    around = {"start": start.isoformat(), "end": (noon + timedelta(hours=2)).isoformat()}
    run = feed(make_feeder(stac_api_url, max_items_per_window=20, datetime=around), limit=5)

    assert len(run.payloads) == 5
    assert len(set(run.item_ids)) == 5
    *complete, last = run.checkpoints
    assert last.cursor is not None
    assert "partial" in last.cursor  # the fifth item's window was not complete
    # the complete windows' checkpoints claim only windows whose items were all yielded
    watermark = parse(watermark_of(complete[-1]))
    before = ids_between(start, watermark, ALL_ITEMS)
    assert before < set(run.item_ids)
    assert watermark <= noon
    assert watermark_of(last) == watermark_of(complete[-1])  # resumes at that window's start
    assert len(last.cursor["partial"]["sent"]) == len(set(run.item_ids) - before)


def steady_items(count: int) -> list[dict[str, Any]]:
    """``count`` items evenly over the tests' range, every 7th on a half second."""
    step = (RANGE_END - RANGE_START) / count
    stamps = (
        RANGE_START + step * n + timedelta(milliseconds=500 * (n % 7 == 0)) for n in range(count)
    )
    return [stac_data.make_item(f"S2F_{n:05d}", stac_data.isoz(t)) for n, t in enumerate(stamps)]


def test_stac_api_reads_a_steady_source_once(
    serve_items: Callable[[list[dict[str, Any]]], str],
) -> None:
    items = steady_items(3000)
    url = serve_items(items)
    feeder = make_feeder(url, max_items_per_window=200, page_size=40)

    run = feed(feeder)

    assert Counter(run.item_ids) == Counter(i["id"] for i in items)
    assert feeder.stats.items == len(items)  # no probe thrown away, no window read twice
    windows = len(run.checkpoints)
    assert windows > 3000 / 200  # the cap still cuts the range
    assert feeder.stats.requests <= 3000 / 40 + windows + 1  # one search per window
    assert not [t for t in threading.enumerate() if t.name.startswith("stac-api")]


def test_stac_api_limit_stops_the_probe_running_ahead(
    serve_items: Callable[[list[dict[str, Any]]], str],
) -> None:
    url = serve_items(steady_items(600))
    feeder = make_feeder(url, max_items_per_window=50, page_size=10)

    first = feed(feeder, limit=30)
    rest = feed(feeder, cursor=first.checkpoints[-1].cursor)

    assert len(first.payloads) == 30
    assert not [t for t in threading.enumerate() if t.name.startswith("stac-api")]
    assert Counter(first.ids_before_last_checkpoint() + rest.item_ids) == Counter(
        f"S2F_{n:05d}" for n in range(600)
    )


def test_stac_api_rejects_item_without_datetime_once(
    serve_items: Callable[[list[dict[str, Any]]], str],
) -> None:
    good = [stac_data.make_item(f"OK_{n}", f"2024-01-01T0{n}:00:00Z") for n in range(9)]
    url = serve_items([*good, stac_data.make_item("NO_TIME", None)])

    run = feed(make_feeder(url, max_items_per_window=2))

    assert sorted(run.item_ids) == sorted(i["id"] for i in good)
    assert len(run.rejections) == 1  # returned for every window, rejected once
    assert run.rejections[0].raw["id"] == "NO_TIME"
    assert "properties.datetime" in run.rejections[0].reason


def test_stac_api_refuses_filter_the_api_would_ignore(stac_api_url: str) -> None:
    feeder = make_feeder(
        stac_api_url, search={"filter": {"op": "=", "args": [{"property": "x"}, 1]}}
    )

    with pytest.raises(ConfigError, match=r"search\.filter"):
        feed(feeder)


def test_stac_api_updated_watermark_needs_filter_support(stac_api_url: str) -> None:
    with pytest.raises(FeederError, match="watermark: updated"):
        feed(make_feeder(stac_api_url, watermark="updated"))


def test_stac_api_search_settings_narrow_the_feed(stac_api_url: str) -> None:
    run = feed(
        make_feeder(
            stac_api_url,
            search={"ids": ["S2C_HALF_0", "S2D_OUT_0"], "collections": stac_data.COLLECTION},
        )
    )

    assert run.item_ids == ["S2C_HALF_0"]


def test_stac_api_is_registered_as_an_entry_point() -> None:
    (entry,) = entry_points(group="cirrus_feed.feeders", name="stac-api")
    assert entry.load() is StacApiFeeder


# -- one test per bug of the old feed-stac-api (prior-art §2.1) ----------------------------


def test_stac_api_bug1_pacing_and_headers_survive_window_splits(fake_stac: FakeStacApi) -> None:
    fake_stac.items = [
        stac_data.make_item(f"I{n:02d}", f"2024-01-01T{n:02d}:30:00Z") for n in range(20)
    ]
    clock = FakeClock()
    start = clock.monotonic()
    feeder = make_feeder(
        fake_stac.url,
        clock,
        max_items_per_window=2,
        max_requests_per_second=50,
        headers={"X-Team": "s2"},
    )

    run = feed(feeder)

    searches = [r for r in fake_stac.requests if r[1] == "POST /search"]
    assert len(run.item_ids) == 20
    assert len(searches) > 10
    assert all(r[3].get("X-Team") == "s2" for r in fake_stac.requests)
    # 50/s, whatever the split depth: every request after the first waited its 1/50 s turn
    # (the fake clock moves only by those waits, so its span is exactly the pacing).
    span = clock.monotonic() - start
    assert span >= (len(fake_stac.requests) - 1) / 50 * 0.9
    assert clock.slept == pytest.approx([1 / 50] * (len(fake_stac.requests) - 1))


def test_stac_api_bug2_subsecond_items_at_window_edges_are_fed(stac_api_url: str) -> None:
    run = feed(make_feeder(stac_api_url, max_items_per_window=3))

    for name in (
        "S2C_HALF_0",
        "S2C_HALF_1",
        "S2C_HALF_2",
        "S2C_EDGE_0",
        "S2C_EDGE_1",
        "S2C_EDGE_2",
    ):
        assert run.item_ids.count(name) == 1, name
    # the windows end where the items put them, at sub-second instants too
    assert any(parse(c.label.split("/")[1]).microsecond for c in run.checkpoints)


def test_stac_api_bug3_open_end_uses_aware_utc_now(stac_api_url: str) -> None:
    clock = FakeClock(datetime(2024, 1, 3, 12, tzinfo=UTC))  # "now" falls inside the data
    feeder = make_feeder(
        stac_api_url, clock, datetime="2024-01-02T20:00:00+02:00/..", max_items_per_window=5000
    )

    run = feed(feeder)

    assert set(run.item_ids) == ids_between(parse("2024-01-02T18:00:00Z"), clock.now(), ALL_ITEMS)
    watermark = watermark_of(run.checkpoints[-1])
    assert watermark.endswith("Z")
    assert parse(watermark) == clock.now()  # the open end is the clock's now, in UTC


def test_stac_api_bug4_crowded_instant_does_not_recurse_forever(stac_api_url: str) -> None:
    run = feed(make_feeder(stac_api_url, max_items_per_window=1))

    assert Counter(run.item_ids) == Counter(IN_RANGE)
    widths = [parse(b) - parse(a) for a, b in (c.label.split("/") for c in run.checkpoints)]
    assert min(widths) == timedelta(microseconds=1)


def test_stac_api_bug4b_never_feeds_outside_the_range(stac_api_url: str) -> None:
    start, end = parse("2024-01-01T00:00:00Z"), parse("2024-01-01T10:00:00Z")
    feeder = make_feeder(
        stac_api_url, datetime={"start": start.isoformat(), "end": end.isoformat()}
    )

    run = feed(feeder)

    assert set(run.item_ids) == ids_between(start, end, ALL_ITEMS)
    assert "S2D_OUT_0" not in run.item_ids
    assert_windows_tile(run, start, end)
    out_of_range = feed(
        make_feeder(stac_api_url),
        since=parse("2023-12-31T00:00:00Z"),
        until=parse("2024-01-04T00:00:00Z"),
    )
    assert set(out_of_range.item_ids) == IN_RANGE  # since/until never widen the configured range


def test_stac_api_bug5_open_intervals_and_single_instants(stac_api_url: str) -> None:
    single = feed(make_feeder(stac_api_url, datetime=stac_data.CROWD_INSTANT))
    open_start = feed(
        make_feeder(stac_api_url, datetime="../2024-01-01T02:00:00Z"),
        cursor={"watermark": "2024-01-01T01:00:00Z"},
    )

    assert len(single.item_ids) == stac_data.CROWD_SIZE
    assert set(open_start.item_ids) == ids_between(
        parse("2024-01-01T01:00:00Z"), parse("2024-01-01T02:00:00Z"), ALL_ITEMS
    )
    with pytest.raises(ConfigError, match=r"datetime\.start"):
        feed(make_feeder(stac_api_url, datetime="../2024-01-01T02:00:00Z"))


def test_stac_api_bug6_never_relies_on_a_match_count(fake_stac: FakeStacApi) -> None:
    fake_stac.items = [
        stac_data.make_item(f"I{n:02d}", f"2024-01-01T{n:02d}:30:00Z") for n in range(20)
    ]
    fake_stac.number_matched = 0  # a lying (or missing, as in rustac) count changes nothing

    run = feed(make_feeder(fake_stac.url, max_items_per_window=4))

    assert len(run.item_ids) == 20
    assert all(r[2].get("limit", 1) >= 1 for r in fake_stac.requests if r[1] == "POST /search")


# -- failures, injected with the fake ------------------------------------------------------


def test_stac_api_honours_retry_after_on_429(fake_stac: FakeStacApi) -> None:
    fake_stac.items = [stac_data.make_item("A", "2024-01-01T01:00:00Z")]
    fake_stac.script = [(429, {"Retry-After": "1"}, 0.0)]
    clock = FakeClock()
    started = clock.monotonic()

    run = feed(make_feeder(fake_stac.url, clock))

    assert run.item_ids == ["A"]
    assert clock.monotonic() - started >= 1.0
    assert clock.slept == [1.0]  # the server's Retry-After, not urllib3's backoff


def test_stac_api_retries_5xx_and_timeouts(fake_stac: FakeStacApi) -> None:
    fake_stac.items = [stac_data.make_item("A", "2024-01-01T01:00:00Z")]
    fake_stac.script = [(500, {}, 0.0), (0, {}, 0.5)]  # an error, then an answer too slow

    run = feed(make_feeder(fake_stac.url, timeout=0.2, max_retries=3))

    assert run.item_ids == ["A"]
    searches = [r[2] for r in fake_stac.requests if r[1] == "POST /search"]
    assert searches[:3] == [searches[0]] * 3  # the first search, sent three times
    assert searches[3] != searches[0]


def test_stac_api_raises_source_unavailable_when_retries_run_out(fake_stac: FakeStacApi) -> None:
    fake_stac.script = [(503, {}, 0.0)] * 3

    with pytest.raises(SourceUnavailableError, match="unavailable"):
        feed(make_feeder(fake_stac.url, max_retries=2))
    assert len([r for r in fake_stac.requests if r[1] == "POST /search"]) == 3


def test_stac_api_rejects_item_without_id(fake_stac: FakeStacApi) -> None:
    nameless = stac_data.make_item("X", "2024-01-01T01:00:00Z")
    del nameless["id"]
    fake_stac.items = [stac_data.make_item("A", "2024-01-01T02:00:00Z"), nameless]

    run = feed(make_feeder(fake_stac.url))

    assert run.item_ids == ["A"]
    assert [r.reason for r in run.rejections] == ["item has no 'id'"]


def test_stac_api_updated_watermark_windows_by_updated(fake_stac: FakeStacApi) -> None:
    fake_stac.items = [
        stac_data.make_item(f"U{n}", "2020-01-01T00:00:00Z", updated=f"2024-01-01T0{n}:00:00Z")
        for n in range(6)
    ]
    feeder = make_feeder(fake_stac.url, watermark="updated", max_items_per_window=2)

    run = feed(feeder, cursor={"watermark": "2024-01-01T02:00:00Z"})

    assert sorted(run.item_ids) == ["U2", "U3", "U4", "U5"]
    filters = [r[2]["filter"] for r in fake_stac.requests if r[1] == "POST /search"]
    assert all(f["args"][0]["args"][0] == {"property": "updated"} for f in filters)


def test_stac_api_fields_keep_what_feeding_needs(fake_stac: FakeStacApi) -> None:
    fake_stac.items = [stac_data.make_item("A", "2024-01-01T01:00:00Z")]

    feed(make_feeder(fake_stac.url, fields=["assets.B04"]))

    body = next(r[2] for r in fake_stac.requests if r[1] == "POST /search")
    assert {"id", "collection", "properties.datetime", "assets.B04"} <= set(
        body["fields"]["include"]
    )
    with pytest.raises(ValidationError, match="must not exclude"):
        make_feeder(fake_stac.url, fields=["-properties.datetime"])


# -- settings ------------------------------------------------------------------------------


def test_stac_api_config_parses_shorthands_and_forbids_unknown_keys() -> None:
    feeder = make_feeder(
        "http://127.0.0.1:1", lookback="2h", item_mapping="stub", datetime="2024-01-01T00:00:00Z/.."
    )
    settings = feeder.config

    assert settings.lookback == timedelta(hours=2)
    assert settings.item_mapping.mode == "stub"
    assert settings.datetime_range.start == RANGE_START
    assert settings.datetime_range.end is None
    with pytest.raises(ValidationError, match="datetime"):
        make_feeder("http://127.0.0.1:1", search={"datetime": "2024"})
    with pytest.raises(ValidationError, match="url"):
        make_feeder("ftp://example.test")
