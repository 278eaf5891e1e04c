"""`lambdas.feed_handler`: a scheduled stac-api feed over 20,000 items with a 10 s Lambda
budget finishes over several invocations, every item fed exactly once.

The STAC API is rustac; the feed store (cursor, runs) is the DynamoDB one on moto's server.
The process queue and state DB are the local SQLite ones: reading 20,000 messages back from
moto's SQS would take minutes, and they are not what is tested here. Time is a `FakeClock`
that moves 1 ms each time it is read (the runner reads it once per item), so how far each
invocation gets is the same on every machine.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stac_data

from cirrus_feed import lambdas
from cirrus_feed.app import App, build_local
from cirrus_feed.backends.aws.dynamodb_feeds import DynamoDbFeedStore
from cirrus_feed.backends.base import Backends
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.errors import ConfigError
from cirrus_feed.feeding.scheduled import deadline
from cirrus_feed.pipeline.enqueue import Enqueuer
from cirrus_feed.pipeline.process import Processor
from cirrus_feed.pipeline.update_state import StateUpdater
from cirrus_feed.support.clock import FakeClock

pytestmark = pytest.mark.aws

COUNT = 20_000
START = datetime(2024, 3, 1, tzinfo=UTC)
WINDOW = {"since": "2024-03-01T00:00:00Z", "until": "2024-03-15T00:00:00Z"}  # 20,160 minutes
FEEDER = "archive"


class TickingClock(FakeClock):
    """Every read of the time costs a millisecond."""

    def now(self) -> datetime:
        self.advance(0.001)
        return super().now()


class LambdaContext:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture(scope="module")
def archive_url(serve_items: Callable[[list[dict[str, Any]]], str]) -> str:
    items = [
        stac_data.make_item(f"A{n:05d}", stac_data.isoz(START + timedelta(minutes=n)))
        for n in range(COUNT)
    ]
    return serve_items(items)


@pytest.fixture
def app(archive_url: str, tmp_path: Path, make_aws_client: Callable[[str], Any]) -> Iterator[App]:
    settings = Settings(
        local=LocalSettings(root=tmp_path),
        workflows={"publish-only": Workflow(tasks=[TaskSpec(task="publish")])},
        feeders={
            FEEDER: {
                "type": "stac-api",
                "url": archive_url,
                "max_items_per_window": 1000,
                "page_size": 500,
                "process": {"workflow": "publish-only"},
            }
        },
    )
    clock = TickingClock(datetime(2026, 1, 1, tzinfo=UTC))
    table = f"feeds-{uuid.uuid4().hex[:8]}"
    DynamoDbFeedStore.create_table(make_aws_client("dynamodb"), table)
    local = build_local(settings, clock=clock)
    assert local.feeds is not None
    local.feeds.close()
    backends = Backends(
        local.state,
        local.queue,
        local.store,
        local.runner,
        local.notifier,
        feeds=DynamoDbFeedStore(table, client=make_aws_client("dynamodb"), clock=clock),
    )
    application = App(
        settings,
        backends,
        Enqueuer(backends.queue, backends.store, clock=clock),
        Processor(backends, clock=clock),
        StateUpdater(backends, clock=clock),
        clock=clock,
    )
    yield application
    application.close()


def queued_item_ids(root: Path) -> list[str]:
    with sqlite3.connect(root / "queue.sqlite") as db:
        bodies = [r[0] for r in db.execute("SELECT body FROM messages")]
    return [json.loads(body)["features"][0]["id"] for body in bodies]


def test_feed_handler_finishes_a_big_window_over_invocations_feeding_each_item_once(
    app: App, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(lambdas, "_app", lambda: app)
    event = {"feeder": FEEDER, **WINDOW}

    responses = []
    for _ in range(20):  # a schedule firing again and again
        responses.append(lambdas.feed_handler(event, LambdaContext(10_000)))
        if not responses[-1]["more"]:
            break

    assert not responses[-1]["more"]
    assert len(responses) >= 3
    assert all(r["status"] == "interrupted" for r in responses[:-1])
    assert responses[-1]["status"] == "succeeded"
    assert sum(r["counts"]["enqueued"] for r in responses) == COUNT
    assert sum(r["counts"]["duplicate"] for r in responses) == 0
    ids = Counter(queued_item_ids(tmp_path))
    assert len(ids) == COUNT
    assert set(ids.values()) == {1}
    # each invocation ran and was recorded in the DynamoDB feed store, with its checkpoint
    feeds = app.backends.feeds
    assert feeds is not None
    runs = feeds.list_runs(FEEDER, limit=50)
    assert sorted(r.run_id for r in runs) == sorted(r["run_id"] for r in responses)
    assert all(r.checkpoint for r in runs if r.status == "interrupted")


def test_feed_handler_stops_at_the_checkpoint_after_its_deadline(
    app: App, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(lambdas, "_app", lambda: app)
    started = app.clock.now()

    response = lambdas.feed_handler({"feeder": FEEDER, **WINDOW}, LambdaContext(10_000))

    # 10 s left: 5 s of feeding (a 15 s margin, at most half), then to the window's end
    assert deadline(started, 10_000) == started + timedelta(seconds=5)
    assert response["more"] is True
    enqueued = response["counts"]["enqueued"]
    # it fed until the deadline (each item costs at least a tick: <= 5,000 items by then),
    # then at most one more window of <= 1,000 items to its checkpoint
    assert app.clock.now() >= started + timedelta(seconds=5)
    assert 0 < enqueued <= 6000
    # it stopped at a checkpoint: the saved watermark covers exactly what was sent
    feeds = app.backends.feeds
    assert feeds is not None
    cursor = feeds.get_cursor(FEEDER)
    assert cursor is not None
    watermark = stac_data.parse(cursor["watermark"])
    assert enqueued == sum(START + timedelta(minutes=n) < watermark for n in range(COUNT))
    assert sorted(queued_item_ids(tmp_path)) == [f"A{n:05d}" for n in range(enqueued)]


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({}, "feeder: Field required"),
        ({"feeder": FEEDER, "limit": 0}, "limit: Input should be greater than or equal to 1"),
        ({"feeder": FEEDER, "since": "yesterday"}, "since: Input should be a valid datetime"),
        ({"feeder": FEEDER, "sinse": "2024-01-01"}, "sinse: Extra inputs are not permitted"),
    ],
)
def test_feed_handler_names_the_field_of_a_bad_input(
    app: App, monkeypatch: pytest.MonkeyPatch, event: dict[str, Any], problem: str
) -> None:
    monkeypatch.setattr(lambdas, "_app", lambda: app)
    with pytest.raises(ConfigError, match=problem):
        lambdas.feed_handler(event, LambdaContext(10_000))


def test_feed_handler_names_an_unknown_feeder(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lambdas, "_app", lambda: app)
    with pytest.raises(ConfigError, match=r"no feeder 'nightly' \(configured: archive\)"):
        lambdas.feed_handler({"feeder": "nightly"}, LambdaContext(10_000))


def test_deadline_keeps_a_tenth_back_but_at_least_15_seconds() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert deadline(now, 900_000) == now + timedelta(seconds=810)
    assert deadline(now, 60_000) == now + timedelta(seconds=45)
    assert deadline(now, None) is None


def test_feed_handler_needs_a_feed_store_for_its_cursor(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    without = dataclasses.replace(app, backends=dataclasses.replace(app.backends, feeds=None))
    monkeypatch.setattr(lambdas, "_app", lambda: without)
    with pytest.raises(ConfigError, match=r"aws\.feed_table \(CIRRUS_FEED_FEED_TABLE\)"):
        lambdas.feed_handler({"feeder": FEEDER, **WINDOW}, LambdaContext(10_000))
