"""Feed run records: leases renewed by heartbeats, abandoned runs, and the counts of what a
feeder left out, on the local backend with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

from click.testing import CliRunner

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.base import Backends, FeedRun, FeedStore
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.cli.main import cli
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.errors import BackendUnavailableError
from cirrus_feed.feeding.contract import (
    Checkpoint,
    Counted,
    Feeder,
    FeederConfig,
    FeedItem,
    FeedRequest,
    Skipped,
)
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.pipeline.enqueue import Enqueuer
from cirrus_feed.support.clock import FakeClock

from .test_feeding import feeds_of


class TickingConfig(FeederConfig):
    count: int = 6
    tick_seconds: float = 40.0


class TickingFeeder(Feeder[TickingConfig]):
    """``count`` payloads, the clock advancing ``tick_seconds`` before each (a slow source),
    a left-out record of each kind, then a checkpoint."""

    name: ClassVar[str] = "ticking"
    description: ClassVar[str] = "test feeder"
    clock: ClassVar[FakeClock]

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        yield Skipped("item x: tier RT is not fed", "tier", "m-1")
        yield Skipped("item y: dropped by the filter", "filter", "m-1")
        yield Skipped("record z already handled", "seen-cache", "m-2")
        yield Counted({"object-filter": 7, "unchanged": 3})
        for number in range(self.config.count):
            self.clock.advance(self.config.tick_seconds)
            yield {
                "type": "FeatureCollection",
                "features": [{"id": f"item-{number}", "collection": "c"}],
                "process": self.config.process_template(),
            }
        yield Checkpoint({"next": self.config.count}, label="end")


class RecordingFeeds:
    """A feed store that keeps every saved run record, in order; the saves numbered in
    ``failing`` (1-based) raise `BackendUnavailableError` instead."""

    def __init__(self, inner: FeedStore, failing: frozenset[int] = frozenset()) -> None:
        self.inner = inner
        self.failing = failing
        self.saved: list[FeedRun] = []
        self.calls = 0

    def save_run(self, run: FeedRun) -> None:
        self.calls += 1
        if self.calls in self.failing:
            raise BackendUnavailableError("feed store throttled")
        self.saved.append(run)
        self.inner.save_run(run)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Recorded:
    """A `Pipeline` over an app whose feed store records its saves."""

    app: App
    feeds: RecordingFeeds

    @property
    def backends(self) -> Backends:
        b = self.app.backends
        return Backends(b.state, b.queue, b.store, b.runner, b.notifier, feeds=self.feeds)

    @property
    def enqueuer(self) -> Enqueuer:
        return self.app.enqueuer

    @property
    def clock(self) -> FakeClock:
        assert isinstance(self.app.clock, FakeClock)
        return self.app.clock


def make_app(root: Path, clock: FakeClock, **feeder: Any) -> App:
    TickingFeeder.clock = clock
    point = EntryPoint("ticking", f"{__name__}:TickingFeeder", "cirrus_feed.feeders")
    settings = Settings(
        local=LocalSettings(root=root),
        workflows={"wf": Workflow(tasks=[TaskSpec(task="noop")])},
        feeders={"slow": {"type": "ticking", "process": {"workflow": "wf"}, **feeder}},
    )
    return build_app(settings, FeederRegistry({"ticking": point}), clock=clock)


def test_feed_run_heartbeats_renew_the_lease_while_running(tmp_path: Path) -> None:
    # Given: a 100 s lease (a heartbeat due every 25 s) and 40 s between payloads
    clock = FakeClock()
    app = make_app(tmp_path, clock, lease_seconds=100)
    pipeline = Recorded(app, RecordingFeeds(feeds_of(app)))
    start = clock.now()

    result = FeedRunner(pipeline).run("slow", app.feeders["slow"], FeedRequest())

    # Then: every save while running pushed the lease 100 s past its own time
    running = [r for r in pipeline.feeds.saved if r.status == "running"]
    leases = [r.lease_until or "" for r in running]
    assert len(running) >= 7  # the start, one per payload (40 s > 25 s), the checkpoint
    assert leases == sorted(leases)
    assert leases[0] == _stamp(start + _seconds(100))
    assert leases[-1] == _stamp(start + _seconds(6 * 40 + 100))
    assert result.run.status == "succeeded"
    assert result.run.lease_until is None
    assert feeds_of(app).list_runs("slow") == [result.run]


def test_feed_run_a_failed_heartbeat_is_retried_and_the_feed_goes_on(tmp_path: Path) -> None:
    clock = FakeClock()
    app = make_app(tmp_path, clock, lease_seconds=100)
    pipeline = Recorded(app, RecordingFeeds(feeds_of(app), failing=frozenset({2, 3})))

    result = FeedRunner(pipeline).run("slow", app.feeders["slow"], FeedRequest())

    assert result.run.status == "succeeded"
    assert result.counts["enqueued"] == 6
    assert len([r for r in pipeline.feeds.saved if r.status == "running"]) >= 5
    assert feeds_of(app).list_runs("slow") == [result.run]


def test_feed_run_left_out_records_are_counted_by_kind(tmp_path: Path) -> None:
    app = make_app(tmp_path, FakeClock(), count=2)

    result = FeedRunner(app).run("slow", app.feeders["slow"], FeedRequest())

    [run] = feeds_of(app).list_runs("slow")
    assert run.counts == result.run.counts
    assert {k: v for k, v in run.counts.items() if v} == {
        "seen": 2,
        "enqueued": 2,
        "skipped": 4,
        "skipped:tier": 1,
        "skipped:unchanged": 3,
        "filtered": 8,
        "filtered:filter": 1,
        "filtered:object-filter": 7,
        "duplicate": 1,
        "duplicate:seen-cache": 1,
    }


def test_feed_run_expired_runs_are_abandoned_at_the_next_start(tmp_path: Path) -> None:
    # Given: a run whose process died (lease expired) and one still alive elsewhere
    clock = FakeClock()
    app = make_app(tmp_path, clock, count=1, tick_seconds=0)
    feeds = feeds_of(app)
    now = clock.now()
    dead = FeedRun("dead", "slow", started=_stamp(now - _seconds(900)), lease_until=_stamp(now))
    alive = FeedRun("alive", "slow", started=_stamp(now), lease_until=_stamp(now + _seconds(60)))
    feeds.save_run(dead)
    feeds.save_run(alive)
    clock.advance(1)

    # When
    result = FeedRunner(app).run("slow", app.feeders["slow"], FeedRequest())

    # Then
    by_id = {r.run_id: r for r in feeds.list_runs("slow")}
    assert by_id["dead"].status == "abandoned"
    assert f"lease expired at {dead.lease_until}" in (by_id["dead"].error or "")
    assert by_id["alive"].status == "running"
    assert by_id[result.run.run_id].status == "succeeded"


def test_feeders_runs_shows_abandoned_runs_and_counts(tmp_path: Path) -> None:
    clock = FakeClock()
    app = make_app(tmp_path, clock)
    feeds_of(app).save_run(
        FeedRun(
            "dead",
            "slow",
            started="2020-01-01T00:00:00+00:00",
            counts={"seen": 5, "skipped:tier": 2},
            lease_until="2020-01-01T00:05:00.000000+00:00",
        )
    )
    config = tmp_path / "config.yaml"
    config.write_text(f"local: {{root: {tmp_path}}}\n")

    result = CliRunner().invoke(cli, ["--config", str(config), "feeders", "runs", "slow"])

    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert "abandoned" in line
    assert "5 seen, 2 skipped:tier" in line
    assert "lease expired at 2020-01-01T00:05:00.000000+00:00" in line
    assert feeds_of(app).list_runs("slow")[0].status == "abandoned"


def test_feed_dry_run_saves_no_run_record_and_abandons_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    app = make_app(tmp_path, clock, count=2)
    dead = FeedRun("dead", "slow", started="2020-01-01T00:00:00+00:00")
    feeds_of(app).save_run(dead)

    result = FeedRunner(app).run("slow", app.feeders["slow"], FeedRequest(dry_run=True))

    assert result.counts["written"] == 2
    assert feeds_of(app).list_runs("slow") == [dead]
    assert feeds_of(app).get_cursor("slow") is None


def _seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def _stamp(when: datetime) -> str:
    return when.isoformat(timespec="microseconds")
