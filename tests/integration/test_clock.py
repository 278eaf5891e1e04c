"""The one clock is wired by `build_app` and honoured by every local adapter: visibility,
leases, TTLs and stamps move with a `FakeClock`, and nothing waits on the wall clock."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.local.inline_runner import InlineWorkflowRunner
from cirrus_feed.backends.local.sqlite_feeds import SqliteFeedStore
from cirrus_feed.backends.local.sqlite_queue import SqlitePayloadQueue
from cirrus_feed.backends.local.sqlite_state import SqliteStateStore
from cirrus_feed.config import LocalSettings, ProcessSettings, Settings
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.pipeline.enqueue import Unreadable
from cirrus_feed.service.worker import LocalWorker, WorkTotals, as_sqs_event
from cirrus_feed.support.clock import FakeClock

from .conftest import WORKFLOWS, make_payload, payload_id


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(tmp_path: Path, clock: FakeClock) -> Iterator[App]:
    settings = Settings(
        local=LocalSettings(root=tmp_path, lease_seconds=60, visibility_timeout=30),
        process=ProcessSettings(wait_seconds=0),
        workflows=WORKFLOWS,
    )
    built = build_app(settings, clock=clock)
    yield built
    built.close()


def test_build_app_hands_its_clock_to_every_adapter_and_the_runner(
    app: App, clock: FakeClock
) -> None:
    backends = app.backends

    assert app.clock is clock
    assert isinstance(backends.state, SqliteStateStore)
    assert isinstance(backends.queue, SqlitePayloadQueue)
    assert isinstance(backends.runner, InlineWorkflowRunner)
    assert isinstance(backends.feeds, SqliteFeedStore)
    assert backends.state.clock is backends.queue.clock is clock
    assert backends.runner.clock is backends.feeds.clock is clock
    assert app.processor.clock is app.updater.clock is app.enqueuer.clock is clock
    assert FeedRunner(app).clock is clock


def test_queue_visibility_timeout_expires_when_the_clock_advances(
    app: App, clock: FakeClock
) -> None:
    queue = app.backends.queue
    queue.send(["a"])
    [first] = queue.receive(10)  # the app's 30 s visibility timeout

    clock.advance(29.9)
    hidden = queue.receive(10)
    clock.advance(0.1)
    [again] = queue.receive(10)

    assert hidden == []
    assert again.message_id == first.message_id
    assert again.receive_count == 2
    assert clock.slept == []


def test_queue_long_poll_waits_on_the_clock(app: App, clock: FakeClock) -> None:
    began, start = time.monotonic(), clock.monotonic()

    assert app.backends.queue.receive(10, wait_seconds=20) == []

    assert clock.monotonic() - start >= 20  # the whole wait passed, on the fake clock
    assert time.monotonic() - began < 5  # and none of it on the wall clock
    assert sum(clock.slept) == pytest.approx(20)


def test_feed_store_ttl_expires_when_the_clock_advances(app: App, clock: FakeClock) -> None:
    feeds = app.backends.feeds
    assert feeds is not None
    feeds.remember("events", ["m-1"], 60)

    clock.advance(59)
    still = feeds.remember("events", ["m-1"], 60)
    clock.advance(1)
    expired = feeds.remember("events", ["m-1"], 60)

    assert still == {"m-1"}
    assert expired == set()


def test_inline_runner_lease_expires_when_the_clock_advances(app: App, clock: FakeClock) -> None:
    runner = app.backends.runner
    assert isinstance(runner, InlineWorkflowRunner)
    app.enqueuer.enqueue([make_payload("leased")])
    messages = app.backends.queue.receive(10)
    assert app.processor.process(normalize(as_sqs_event(messages))).counts == {"started": 1}
    [held] = runner.claim_pending(10)  # a worker that then dies: its 60 s lease stands

    clock.advance(59)
    during = runner.claim_pending(10)
    clock.advance(1)
    [again] = runner.claim_pending(10)

    assert during == []
    assert again.execution_arn == held.execution_arn
    assert (held.attempt, again.attempt) == (1, 2)
    assert again.lease_until == clock.time() + 60


def test_stamps_come_from_the_clock(app: App, clock: FakeClock, tmp_path: Path) -> None:
    now = clock.now().isoformat()
    app.enqueuer.enqueue([make_payload("stamped", "publish-only"), Unreadable("{", "not JSON")])
    LocalWorker(app).drain(WorkTotals())

    record = app.backends.state.get(payload_id("stamped", "publish-only"))
    [invalid] = [
        json.loads(p.read_text())
        for p in (tmp_path / "payloads").rglob("*.json")
        if "rejected_at" in p.read_text()
    ]
    [item] = [json.loads(p.read_text()) for p in (tmp_path / "catalog").rglob("*.json")]

    assert record.updated == now
    assert invalid["rejected_at"] == now
    assert item["properties"]["updated"] == item["properties"]["created"] == now
