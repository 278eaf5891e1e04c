"""The stac-api feeder against both real STAC API servers: rustac and stac-fastapi-pgstac.

The core properties (exactly once across split windows, crowded instants, half-open edges,
resume, lookback) run on each server. What rustac cannot do (CQL2 ``filter``, ``query``,
``sortby``, the ``updated`` watermark) runs on pgstac only. Expectations are computed in
Python from the items each server was loaded with.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pytest
import stac_data
from stac_data import RANGE_END, RANGE_START, ids_between, parse

from cirrus_feed.feeding.contract import Checkpoint, FeedRequest
from cirrus_feed.model.payload import PreparedPayload, ProcessPayload
from cirrus_feed.testing import feeder_context
from feeders.stac_api.feeder import StacApiConfig, StacApiFeeder

if TYPE_CHECKING:
    from conftest import StacServer

CAP = 7  # far below the 190 items in range: many splits
EDGE = parse("2024-01-02T00:00:00Z")  # a window edge the first halving produces
UPDATED_START, UPDATED_END = parse("2024-03-01T00:00:00Z"), parse("2024-03-02T00:00:00Z")


def make_feeder(url: str, **settings: Any) -> StacApiFeeder:
    config: dict[str, Any] = {
        "type": "stac-api",
        "url": url,
        "process": {"workflow": "ingest"},
        "search": {"collections": [stac_data.COLLECTION]},
        "datetime": {"start": RANGE_START.isoformat(), "end": RANGE_END.isoformat()},
        "max_items_per_window": CAP,
        "max_retries": 1,
        "backoff": 0.01,
    }
    config.update(settings)
    return StacApiFeeder("servers-test", StacApiConfig.model_validate(config), feeder_context())


def validated(out: Any) -> Any:
    """A prepared payload as the `ProcessPayload` its body validates to (same id)."""
    if isinstance(out, PreparedPayload):
        payload = ProcessPayload.from_dict(out.to_dict())
        assert payload.id == out.id
        return payload
    return out


def feed(feeder: StacApiFeeder, **request: Any) -> list[Any]:
    return [validated(o) for o in feeder.feed(FeedRequest(**request))]


def item_ids(out: list[Any]) -> list[str]:
    return [f["id"] for o in out if isinstance(o, ProcessPayload) for f in o.features]


def checkpoints(out: list[Any]) -> list[Checkpoint]:
    return [o for o in out if isinstance(o, Checkpoint)]


def window_bounds(out: list[Any]) -> list[tuple[datetime, datetime]]:
    return [(parse(a), parse(b)) for a, b in (c.label.split("/") for c in checkpoints(out))]


def in_range(server: StacServer) -> Counter[str]:
    return Counter(ids_between(RANGE_START, RANGE_END, server.items))


def by_updated(server: StacServer, start: datetime, end: datetime) -> set[str]:
    return {i["id"] for i in server.items if start <= parse(i["properties"]["updated"]) < end}


# -- both servers ----------------------------------------------------------------------------


def test_stac_api_servers_feed_every_item_exactly_once(stac_api: StacServer) -> None:
    out = feed(make_feeder(stac_api.url))

    assert Counter(item_ids(out)) == in_range(stac_api)
    bounds = window_bounds(out)
    assert len(bounds) > 20  # the cap forced many splits
    assert bounds[0][0] == RANGE_START
    assert bounds[-1][1] == RANGE_END
    assert all(a[1] == b[0] for a, b in pairwise(bounds))  # adjacent: no gap, no overlap


def test_stac_api_servers_page_through_one_instant_over_the_cap(stac_api: StacServer) -> None:
    crowd = parse(stac_data.CROWD_INSTANT)
    second = timedelta(seconds=1)
    around = {"start": (crowd - second).isoformat(), "end": (crowd + second).isoformat()}
    feeder = make_feeder(stac_api.url, page_size=5, datetime=around)

    out = feed(feeder)

    crowd_ids = [f"S2B_CROWD_{n:02d}" for n in range(stac_data.CROWD_SIZE)]
    assert sorted(item_ids(out)) == crowd_ids
    assert (crowd, crowd + timedelta(microseconds=1)) in window_bounds(out)


def test_stac_api_servers_window_edges_are_half_open(stac_api: StacServer) -> None:
    nine = parse("2024-01-01T09:00:00Z")
    early = feed(make_feeder(stac_api.url, max_items_per_window=40), until=nine)
    before = feed(make_feeder(stac_api.url, max_items_per_window=40), since=nine, until=EDGE)
    after = feed(make_feeder(stac_api.url, max_items_per_window=40), since=EDGE)

    assert "S2C_BOUND_4" in item_ids(after)  # exactly at the edge: the later window's
    assert "S2C_BOUND_4" not in item_ids(before)
    assert "S2C_HALF_1" in item_ids(before)  # 23:59:59.5, just before the edge
    # 08:59:59.999999500: before 09:00 though PostgreSQL rounds it to 09:00 and pgstac
    # returns it for both windows
    assert "S2C_EDGE_1" in item_ids(early)
    assert Counter(item_ids(early) + item_ids(before) + item_ids(after)) == in_range(stac_api)
    assert checkpoints(before)[-1].cursor == {"watermark": "2024-01-02T00:00:00.000000Z"}


def test_stac_api_servers_resume_from_the_checkpoint_cursor(stac_api: StacServer) -> None:
    first = feed(make_feeder(stac_api.url, max_items_per_window=25), limit=60)
    last = max(i for i, o in enumerate(first) if isinstance(o, Checkpoint))
    done = item_ids(first[:last])

    rest = feed(make_feeder(stac_api.url, max_items_per_window=25), cursor=first[last].cursor)

    assert 0 < len(done) <= 60
    assert Counter(done + item_ids(rest)) == in_range(stac_api)
    assert set(item_ids(first)) - set(done) <= set(item_ids(rest))  # the unfinished window


def test_stac_api_servers_lookback_refeeds_only_its_span(stac_api: StacServer) -> None:
    first = feed(make_feeder(stac_api.url, max_items_per_window=25), until=EDGE)

    second = feed(
        make_feeder(stac_api.url, max_items_per_window=25, lookback="3h"),
        cursor=checkpoints(first)[-1].cursor,
    )

    overlap = Counter(item_ids(first)) & Counter(item_ids(second))
    assert set(overlap) == ids_between(EDGE - timedelta(hours=3), EDGE, stac_api.items)
    assert set(overlap.values()) == {1}
    assert set(item_ids(first)) | set(item_ids(second)) == set(in_range(stac_api))


# -- pgstac only: filter, query, sortby, the updated watermark --------------------------------


def cloud(server: StacServer, item_id: str) -> int:
    return next(int(i["properties"]["eo:cloud_cover"]) for i in server.items if i["id"] == item_id)


@pytest.mark.parametrize(
    ("search", "keep"),
    [
        (
            {"filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}},
            lambda c: c < 10,
        ),
        (
            {"filter": '"eo:cloud_cover" >= 60', "filter_lang": "cql2-text"},
            lambda c: c >= 60,
        ),
        ({"query": {"eo:cloud_cover": {"gte": 10, "lt": 20}}}, lambda c: 10 <= c < 20),
    ],
    ids=["cql2-json", "cql2-text", "query"],
)
def test_stac_api_pgstac_filter_and_query_narrow_every_window(
    pgstac_api: StacServer, search: dict[str, Any], keep: Any
) -> None:
    feeder = make_feeder(
        pgstac_api.url,
        search={"collections": [stac_data.COLLECTION], **search},
        max_items_per_window=10,
    )

    out = feed(feeder)

    expected = {i for i in in_range(pgstac_api) if keep(cloud(pgstac_api, i))}
    assert 10 < len(expected) < len(in_range(pgstac_api))
    assert Counter(item_ids(out)) == Counter(expected)
    assert len(checkpoints(out)) > 5  # the filtered set was split too


def test_stac_api_pgstac_sortby_orders_an_over_cap_instant(pgstac_api: StacServer) -> None:
    crowd = parse(stac_data.CROWD_INSTANT)
    feeder = make_feeder(
        pgstac_api.url,
        page_size=4,
        search={"collections": [stac_data.COLLECTION], "sortby": "-eo:cloud_cover"},
        datetime={"start": crowd.isoformat(), "end": (crowd + timedelta(seconds=1)).isoformat()},
    )

    ids = item_ids(feed(feeder))

    clouds = [cloud(pgstac_api, i) for i in ids]
    assert len(ids) == stac_data.CROWD_SIZE
    assert clouds == sorted(clouds, reverse=True)  # streamed in the API's (sorted) order


def test_stac_api_pgstac_sorted_probes_are_fed_not_read_again(pgstac_api: StacServer) -> None:
    feeder = make_feeder(pgstac_api.url, max_items_per_window=25)

    out = feed(feeder)

    expected = in_range(pgstac_api)
    assert Counter(item_ids(out)) == expected
    # Windows that overflow are cut where the sorted read ended and what it read is fed:
    # only items within the sort slack of a cut, or on a window's end, are read twice.
    assert feeder.stats.items <= sum(expected.values()) + 5


def test_stac_api_pgstac_updated_watermark_feeds_by_updated(pgstac_api: StacServer) -> None:
    def updated_feeder(**settings: Any) -> StacApiFeeder:
        return make_feeder(
            pgstac_api.url,
            watermark="updated",
            max_items_per_window=2,
            datetime={"start": UPDATED_START.isoformat(), "end": UPDATED_END.isoformat()},
            **settings,
        )

    mark = parse("2024-03-01T06:00:00Z")
    first = feed(updated_feeder(), until=mark)
    rest = feed(updated_feeder(), cursor=checkpoints(first)[-1].cursor)

    assert set(item_ids(first)) == by_updated(pgstac_api, UPDATED_START, mark)
    assert "S2U_01" in item_ids(first)  # updated at 05:59:59.5
    assert Counter(item_ids(first) + item_ids(rest)) == Counter(
        by_updated(pgstac_api, UPDATED_START, UPDATED_END)
    )
    assert "S2U_11" not in item_ids(rest)  # updated exactly at the range end
    assert checkpoints(rest)[-1].cursor == {"watermark": "2024-03-02T00:00:00.000000Z"}
    # the crowd of five at 12:00 is over the cap of 2: its one-microsecond window is paged
    noon = parse("2024-03-01T12:00:00Z")
    assert (noon, noon + timedelta(microseconds=1)) in window_bounds(rest)


def test_stac_api_pgstac_updated_watermark_keeps_the_user_filter(pgstac_api: StacServer) -> None:
    feeder = make_feeder(
        pgstac_api.url,
        watermark="updated",
        search={"filter": {"op": ">=", "args": [{"property": "eo:cloud_cover"}, 13]}},
        datetime={"start": UPDATED_START.isoformat(), "end": UPDATED_END.isoformat()},
    )

    ids = item_ids(feed(feeder))

    expected = {
        i for i in by_updated(pgstac_api, UPDATED_START, UPDATED_END) if cloud(pgstac_api, i) >= 13
    }
    assert 0 < len(expected) < len(by_updated(pgstac_api, UPDATED_START, UPDATED_END))
    assert sorted(ids) == sorted(expected)
