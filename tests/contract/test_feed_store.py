"""Contract of `FeedStore` (feed runs and feeder cursors), run against every backend."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from cirrus_feed.backends.base import FeedRun, FeedStore
from cirrus_feed.backends.limits import DYNAMODB_MAX_SORT_KEY_BYTES
from cirrus_feed.errors import BackendError, LimitExceededError
from cirrus_feed.support.clock import FakeClock


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class FeedEnv:
    store: FeedStore
    open_another: Callable[[], FeedStore]  # a second store object on the same storage
    break_storage: Callable[[], None]  # removes the storage under the store's feet


@pytest.fixture
def feed_env(
    backend: str, clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[FeedEnv]:
    opened: list[FeedStore] = []
    if backend == "local":
        from cirrus_feed.backends.local.sqlite_feeds import SqliteFeedStore

        path = tmp_path / "feeds.sqlite"

        def open_local() -> FeedStore:
            opened.append(SqliteFeedStore(path, clock=clock))
            return opened[-1]

        def drop_tables() -> None:
            conn = sqlite3.connect(path)
            try:
                conn.executescript("DROP TABLE feed_runs; DROP TABLE feed_cursors;")
            finally:
                conn.close()

        yield FeedEnv(open_local(), open_local, drop_tables)
        for store in opened:
            store.close()
        return

    from cirrus_feed.backends.aws.dynamodb_feeds import DynamoDbFeedStore

    client = request.getfixturevalue("aws_client")("dynamodb")
    table = unique("feeds-")
    DynamoDbFeedStore.create_table(client, table)
    deleted = False

    def open_aws() -> FeedStore:
        opened.append(DynamoDbFeedStore(table, client=client, clock=clock))
        return opened[-1]

    def delete_table() -> None:
        nonlocal deleted
        client.delete_table(TableName=table)
        deleted = True

    yield FeedEnv(open_aws(), open_aws, delete_table)
    for store in opened:
        store.close()
    if not deleted:
        client.delete_table(TableName=table)


@pytest.fixture
def feed_store(feed_env: FeedEnv) -> FeedStore:
    return feed_env.store


def make_run(run_id: str, feeder: str = "stac-api", minute: int = 0, **fields: Any) -> FeedRun:
    return FeedRun(
        run_id=run_id, feeder=feeder, started=f"2025-04-01T10:{minute:02d}:00+00:00", **fields
    )


# -- runs -----------------------------------------------------------------------------------


def test_feed_store_save_and_list_round_trip_every_field(feed_store: FeedStore) -> None:
    run = make_run(
        "r-1",
        status="failed",
        finished="2025-04-01T10:05:00.123456+00:00",
        request={
            "since": "2025-03-01T00:00:00Z",
            "until": None,
            "limit": 500,
            "cursor": {"page": "tok/é"},
            "dry_run": False,
        },
        counts={"seen": 10, "enqueued": 7, "duplicate": 3},
        checkpoint="page-4",
        error="SourceUnavailableError: 503 from https://earth-search.example/search",
    )
    feed_store.save_run(run)

    assert feed_store.list_runs("stac-api") == [run]


def test_feed_store_abandon_marks_only_running_runs_whose_lease_expired(
    feed_store: FeedStore,
) -> None:
    # Given: runs of every kind, leases on both sides of "now" (10:30)
    now = "2025-04-01T10:30:00.000000+00:00"
    expired = make_run("expired", minute=1, lease_until="2025-04-01T10:29:59.999999+00:00")
    live = make_run("live", minute=2, lease_until="2025-04-01T10:30:00.000001+00:00")
    legacy = make_run("legacy", minute=3)  # running, written before runs had leases
    done = make_run("done", minute=4, status="succeeded", lease_until=None)
    other = make_run("other", feeder="beta", minute=5, lease_until="2025-04-01T10:00:00+00:00")
    for run in (expired, live, legacy, done, other):
        feed_store.save_run(run)

    # When
    marked = feed_store.abandon("stac-api", now=now)

    # Then: the expired and the lease-less running runs, and nothing else
    assert sorted(r.run_id for r in marked) == ["expired", "legacy"]
    listed = {r.run_id: r for r in feed_store.list_runs("stac-api")}
    assert {k: r.status for k, r in listed.items()} == {
        "expired": "abandoned",
        "live": "running",
        "legacy": "abandoned",
        "done": "succeeded",
    }
    assert listed["expired"].lease_until is None
    assert "lease expired at 2025-04-01T10:29:59.999999+00:00" in (listed["expired"].error or "")
    assert listed["expired"] == next(r for r in marked if r.run_id == "expired")
    assert feed_store.list_runs("beta")[0].status == "running"
    assert feed_store.abandon("stac-api", now=now) == []  # idempotent


@pytest.mark.aws
def test_dynamodb_feed_store_abandon_spares_a_run_that_heartbeats_meanwhile(
    aws_client: Callable[[str], Any], clock: FakeClock
) -> None:
    """The run heartbeats between `abandon`'s Query and its UpdateItem: it stays running."""
    from cirrus_feed.backends.aws.dynamodb_feeds import DynamoDbFeedStore

    client = aws_client("dynamodb")
    table = unique("feeds-")
    DynamoDbFeedStore.create_table(client, table)
    store = DynamoDbFeedStore(table, client=client, clock=clock)
    run = make_run("r-1", lease_until="2025-04-01T10:01:00.000000+00:00")
    store.save_run(run)
    renewed = replace(run, lease_until="2025-04-01T11:00:00.000000+00:00")

    def heartbeat(**_: Any) -> None:
        client.meta.events.unregister("before-call.dynamodb.UpdateItem", heartbeat)
        store.save_run(renewed)

    client.meta.events.register("before-call.dynamodb.UpdateItem", heartbeat)
    try:
        marked = store.abandon("stac-api", now="2025-04-01T10:30:00.000000+00:00")
        listed = store.list_runs("stac-api")
    finally:
        client.meta.events.unregister("before-call.dynamodb.UpdateItem", heartbeat)
        client.delete_table(TableName=table)

    assert marked == []
    assert listed == [renewed]


def test_feed_store_lease_round_trips_and_a_heartbeat_keeps_the_run(feed_store: FeedStore) -> None:
    run = make_run("r-1", lease_until="2025-04-01T10:01:00.000000+00:00")
    feed_store.save_run(run)
    assert feed_store.list_runs("stac-api") == [run]

    feed_store.save_run(replace(run, lease_until="2025-04-01T10:02:00.000000+00:00"))

    assert feed_store.abandon("stac-api", now="2025-04-01T10:01:30.000000+00:00") == []
    assert feed_store.list_runs("stac-api")[0].status == "running"


def test_feed_store_run_with_defaults_round_trips(feed_store: FeedStore) -> None:
    run = make_run("r-defaults")
    feed_store.save_run(run)

    [listed] = feed_store.list_runs("stac-api")

    assert listed == run
    assert (listed.status, listed.finished, listed.checkpoint, listed.error) == (
        "running",
        None,
        None,
        None,
    )
    assert dict(listed.request) == {}
    assert dict(listed.counts) == {}


def test_feed_store_list_runs_newest_first_with_limit(feed_store: FeedStore) -> None:
    # Saved out of order: the listing orders by `started`, not by insertion.
    for minute in (3, 1, 4, 0, 2):
        feed_store.save_run(make_run(f"r-{minute}", minute=minute))

    assert [r.run_id for r in feed_store.list_runs("stac-api")] == [
        "r-4",
        "r-3",
        "r-2",
        "r-1",
        "r-0",
    ]
    assert [r.run_id for r in feed_store.list_runs("stac-api", limit=2)] == ["r-4", "r-3"]
    assert feed_store.list_runs("stac-api", limit=0) == []


def test_feed_store_runs_started_at_the_same_time_are_all_kept(feed_store: FeedStore) -> None:
    for run_id in ("r-a", "r-c", "r-b"):
        feed_store.save_run(make_run(run_id, minute=7))

    # Ties are broken by run id, newest (greatest) first, on every backend.
    assert [r.run_id for r in feed_store.list_runs("stac-api")] == ["r-c", "r-b", "r-a"]


def test_feed_store_run_saved_repeatedly_is_listed_once_with_final_values(
    feed_store: FeedStore,
) -> None:
    run = make_run("r-progress", request={"limit": 100})
    feed_store.save_run(run)
    feed_store.save_run(replace(run, counts={"seen": 50}, checkpoint="page-1"))
    final = replace(
        run,
        status="succeeded",
        finished="2025-04-01T10:09:00+00:00",
        counts={"seen": 100, "enqueued": 90},
        checkpoint="page-2",
    )
    feed_store.save_run(final)

    assert feed_store.list_runs("stac-api") == [final]


def test_feed_store_runs_of_two_feeders_do_not_mix(feed_store: FeedStore) -> None:
    feed_store.save_run(make_run("a-1", feeder="alpha", minute=1))
    feed_store.save_run(make_run("b-1", feeder="beta", minute=2))
    feed_store.save_run(make_run("a-2", feeder="alpha", minute=3))
    # A feeder whose name extends another's must not show up under the shorter name.
    feed_store.save_run(make_run("ab-1", feeder="alpha#beta", minute=4))

    assert [r.run_id for r in feed_store.list_runs("alpha")] == ["a-2", "a-1"]
    assert [r.run_id for r in feed_store.list_runs("beta")] == ["b-1"]
    assert [r.run_id for r in feed_store.list_runs("alpha#beta")] == ["ab-1"]
    assert feed_store.list_runs("gamma") == []


def test_feed_store_feeder_name_with_separators_and_unicode(feed_store: FeedStore) -> None:
    feeder = "stac-api#sentinel-2/l2a#fjörð 🛰"
    run = make_run("run#1/x", feeder=feeder, counts={"seen": 1})
    feed_store.save_run(run)
    feed_store.set_cursor(feeder, {"next": "a#b/c"})

    assert feed_store.list_runs(feeder) == [run]
    assert feed_store.get_cursor(feeder) == {"next": "a#b/c"}
    assert feed_store.list_runs("stac-api") == []
    assert feed_store.get_cursor("stac-api") is None


def test_feed_store_cursor_and_runs_of_one_feeder_coexist(feed_store: FeedStore) -> None:
    feed_store.set_cursor("stac-api", {"page": 3})
    run = make_run("r-1")
    feed_store.save_run(run)

    assert feed_store.list_runs("stac-api") == [run]
    feed_store.clear_cursor("stac-api")
    assert feed_store.list_runs("stac-api") == [run]
    assert feed_store.get_cursor("stac-api") is None


# -- cursors --------------------------------------------------------------------------------


def test_feed_store_cursor_set_get_overwrite_clear(feed_store: FeedStore) -> None:
    assert feed_store.get_cursor("stac-api") is None

    feed_store.set_cursor("stac-api", {"datetime": "2025-03-01T00:00:00Z", "page": 1})
    assert feed_store.get_cursor("stac-api") == {"datetime": "2025-03-01T00:00:00Z", "page": 1}

    # An overwrite replaces the whole cursor: no key of the old one survives.
    feed_store.set_cursor("stac-api", {"token": "abc"})
    assert feed_store.get_cursor("stac-api") == {"token": "abc"}

    feed_store.clear_cursor("stac-api")
    assert feed_store.get_cursor("stac-api") is None
    feed_store.clear_cursor("stac-api")  # idempotent
    feed_store.clear_cursor("never-seen")
    assert feed_store.get_cursor("stac-api") is None


def test_feed_store_cursor_round_trips_json_exactly(feed_store: FeedStore) -> None:
    cursor = {
        "since": "2025-03-31T21:36:41.123456+00:00",
        "nested": {"list": [1, 2.5, "three", None, True, False, [], {}], "empty": ""},
        "big": 2**60,
        "float": 0.1,
        "int": 1,
        "negative": -3,
        "unicode": "Zürich \u2013 東京 🛰",
        "quotes": 'a "b" \\ c\n',
    }
    feed_store.set_cursor("stac-api", cursor)

    got = feed_store.get_cursor("stac-api")

    assert got == cursor
    assert got is not None
    # == holds for 1 == 1.0: check the types survived too.
    assert type(got["int"]) is int
    assert type(got["float"]) is float
    assert list(got) == list(cursor)


def test_feed_store_cursors_of_different_feeders_are_independent(feed_store: FeedStore) -> None:
    feed_store.set_cursor("alpha", {"page": 1})
    feed_store.set_cursor("beta", {"page": 2})

    feed_store.set_cursor("alpha", {"page": 10})
    feed_store.clear_cursor("beta")

    assert feed_store.get_cursor("alpha") == {"page": 10}
    assert feed_store.get_cursor("beta") is None


def test_feed_store_large_cursor_round_trips(feed_store: FeedStore) -> None:
    cursor = {"seen": [f"item-{i:06d}-é" for i in range(4_000)], "meta": {"pages": 40}}
    assert len(str(cursor)) > 50_000

    feed_store.set_cursor("stac-api", cursor)

    assert feed_store.get_cursor("stac-api") == cursor


def test_feed_store_rejects_a_cursor_that_is_not_json(feed_store: FeedStore) -> None:
    feed_store.set_cursor("stac-api", {"page": 1})

    with pytest.raises(ValueError, match="stac-api"):
        feed_store.set_cursor("stac-api", {"when": object()})
    with pytest.raises(ValueError, match="stac-api"):
        feed_store.set_cursor("stac-api", {"ratio": float("nan")})

    assert feed_store.get_cursor("stac-api") == {"page": 1}


# -- sharing and failures -------------------------------------------------------------------


def test_feed_store_two_stores_on_one_storage_see_each_others_writes(feed_env: FeedEnv) -> None:
    first, second = feed_env.store, feed_env.open_another()

    first.save_run(make_run("r-1", minute=1))
    second.save_run(make_run("r-2", minute=2))
    first.set_cursor("stac-api", {"page": 1})

    assert [r.run_id for r in first.list_runs("stac-api")] == ["r-2", "r-1"]
    assert [r.run_id for r in second.list_runs("stac-api")] == ["r-2", "r-1"]
    assert second.get_cursor("stac-api") == {"page": 1}
    second.clear_cursor("stac-api")
    assert first.get_cursor("stac-api") is None


def test_feed_store_storage_failures_raise_backend_error(feed_env: FeedEnv) -> None:
    store = feed_env.store
    store.save_run(make_run("r-1"))
    feed_env.break_storage()

    with pytest.raises(BackendError):
        store.list_runs("stac-api")
    with pytest.raises(BackendError):
        store.save_run(make_run("r-2"))
    with pytest.raises(BackendError):
        store.get_cursor("stac-api")
    with pytest.raises(BackendError):
        store.set_cursor("stac-api", {"page": 1})


@pytest.mark.aws
def test_dynamodb_feed_store_create_table_is_idempotent(
    aws_client: Callable[[str], Any],
) -> None:
    from cirrus_feed.backends.aws.dynamodb_feeds import DynamoDbFeedStore

    client = aws_client("dynamodb")
    table = unique("feeds-")
    DynamoDbFeedStore.create_table(client, table)
    store = DynamoDbFeedStore(table, client=client)
    store.set_cursor("stac-api", {"page": 1})

    DynamoDbFeedStore.create_table(client, table)  # exists: a no-op, the data stays

    try:
        assert store.get_cursor("stac-api") == {"page": 1}
        description = client.describe_table(TableName=table)["Table"]
    finally:
        client.delete_table(TableName=table)
    keys = {k["AttributeName"]: k["KeyType"] for k in description["KeySchema"]}
    assert keys == {"pk": "HASH", "sk": "RANGE"}
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


# -- seen-key cache (remember) --------------------------------------------------------------


def test_feed_store_remember_new_keys_then_repeats(feed_store: FeedStore) -> None:
    assert feed_store.remember("events", ["m-1", "m-2"], 60) == set()

    assert feed_store.remember("events", ["m-2", "m-3", "m-1"], 60) == {"m-1", "m-2"}
    assert feed_store.remember("events", ["m-3"], 60) == {"m-3"}
    assert feed_store.remember("events", [], 60) == set()


def test_feed_store_remember_keys_of_two_feeders_do_not_mix(feed_store: FeedStore) -> None:
    key = "s3://bucket/a b/é.tif#0055AED6DCD90281E5"
    feed_store.remember("alpha", [key], 60)

    assert feed_store.remember("beta", [key], 60) == set()
    assert feed_store.remember("alpha", [key], 60) == {key}
    # Cursors and runs share the table or file: keys never clash with them.
    feed_store.set_cursor("alpha", {"page": 1})
    assert feed_store.remember("alpha", ["cursor"], 60) == set()
    assert feed_store.get_cursor("alpha") == {"page": 1}


def test_feed_store_remember_key_is_new_again_after_expiry(
    feed_store: FeedStore, clock: FakeClock
) -> None:
    feed_store.remember("events", ["short"], 1)
    feed_store.remember("events", ["long"], 3600)
    # Expiry is counted in whole epoch seconds: past the next second boundary it is gone.
    clock.advance(1.05)

    assert feed_store.remember("events", ["short", "long"], 1) == {"long"}
    assert feed_store.remember("events", ["short"], 1) == {"short"}


def test_feed_store_remember_many_keys_answers_each_held_one(feed_store: FeedStore) -> None:
    # More keys than one statement of the local store takes, held and new ones mixed.
    held = [f"k-{n:04d}" for n in range(0, 1000, 3)]
    assert feed_store.remember("events", held, 60) == set()
    asked = [f"k-{n:04d}" for n in range(1000)] + held[:5]  # repeats count once
    assert feed_store.remember("events", asked, 60) == set(held)
    assert feed_store.remember("events", asked, 60) == set(asked)


def test_feed_store_remember_rejects_a_non_positive_ttl(feed_store: FeedStore) -> None:
    with pytest.raises(ValueError, match="events"):
        feed_store.remember("events", ["m-1"], 0)
    assert feed_store.remember("events", ["m-1"], 60) == set()


def test_feed_store_remember_two_stores_racing_see_each_key_new_once(
    feed_env: FeedEnv,
) -> None:
    stores = [feed_env.store, feed_env.open_another()]
    keys = [f"msg-{i:03d}" for i in range(30)]
    barrier = threading.Barrier(len(stores))
    results: list[set[str]] = [set(), set()]

    def race(index: int) -> None:
        barrier.wait()
        # Each poller remembers the keys in its own order, one call per pair of keys.
        order = keys if index == 0 else keys[::-1]
        for start in range(0, len(order), 2):
            results[index] |= stores[index].remember("events", order[start : start + 2], 60)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # A key one store saw as seen is one the other saw as new: exactly once each.
    assert results[0] | results[1] == set(keys)
    assert results[0] & results[1] == set()


def test_feed_store_forget_makes_keys_new_again_for_that_feeder_only(
    feed_store: FeedStore,
) -> None:
    feed_store.remember("a", ["k1", "k2"], 3600)
    feed_store.remember("b", ["k1"], 3600)

    feed_store.forget("a", ["k1", "never-seen"])

    assert feed_store.remember("a", ["k1", "k2"], 3600) == {"k2"}
    assert feed_store.remember("b", ["k1"], 3600) == {"k1"}


# -- limits (DynamoDB sort-key size, on every backend: see `FeedStore`) ---------------------


def test_feed_store_remember_refuses_keys_over_1024_bytes(feed_store: FeedStore) -> None:
    too_long = "k" * (DYNAMODB_MAX_SORT_KEY_BYTES + 1)

    with pytest.raises(LimitExceededError, match="over the DynamoDB limit"):
        feed_store.remember("events", ["m-1", too_long], 60)

    # Nothing of the refused call was recorded; forgetting the long key is a no-op.
    feed_store.forget("events", [too_long])
    assert feed_store.remember("events", ["m-1"], 60) == set()


def test_feed_store_remember_accepts_keys_of_1024_bytes(feed_store: FeedStore) -> None:
    key = "é" * (DYNAMODB_MAX_SORT_KEY_BYTES // 2)

    assert feed_store.remember("events", [key], 60) == set()
    assert feed_store.remember("events", [key], 60) == {key}
