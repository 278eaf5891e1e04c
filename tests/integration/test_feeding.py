"""Running feeders through the pipeline: checkpoints, dedupe, dry runs, limits, run records."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.base import FeedStore
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.errors import ConfigError, PluginError, SourceUnavailableError
from cirrus_feed.feeding.contract import (
    Checkpoint,
    Feeder,
    FeederConfig,
    FeedItem,
    FeedRequest,
    SourceRejection,
    Tagged,
)
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.model.states import State
from cirrus_feed.service.worker import LocalWorker, WorkTotals
from cirrus_feed.support.clock import FakeClock
from cirrus_feed.testing import feeder_context


def feeds_of(app: App) -> FeedStore:
    """The app's feed-run store (the local backend always has one)."""
    assert app.backends.feeds is not None
    return app.backends.feeds


class DrivingClock(FakeClock):
    """A fake clock on which a pacer's wait runs ``on_sleep`` (a worker) instead of sleeping."""

    def __init__(self, on_sleep: Callable[[float], None]) -> None:
        super().__init__()
        self.on_sleep = on_sleep

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.on_sleep(seconds)


class CountingConfig(FeederConfig):
    count: int = 10
    per_window: int = 4
    fail_after: int | None = None  # raise after this many items (a crash mid-run)
    broken: list[int] = Field(default_factory=list)  # item numbers yielded as rejections


class CountingFeeder(Feeder[CountingConfig]):
    """Items 0..count-1, a checkpoint after every ``per_window`` items; cursor = next item."""

    name: ClassVar[str] = "counting"
    description: ClassVar[str] = "test feeder"

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        config = self.config
        start = int((request.cursor or {}).get("next", 0))
        for number in range(start, config.count):
            if config.fail_after is not None and number >= config.fail_after:
                raise SourceUnavailableError(f"source went away at item {number}")
            if number in config.broken:
                yield SourceRejection({"n": number}, f"item {number}: no id")
            else:
                yield {
                    "type": "FeatureCollection",
                    "features": [{"id": f"item-{number:03d}", "collection": "c"}],
                    "process": config.process_template(),
                }
            if (number + 1) % config.per_window == 0:
                yield Checkpoint({"next": number + 1}, label=f"..{number + 1}")
        yield Checkpoint({"next": config.count}, label="end")


def registry() -> FeederRegistry:
    point = EntryPoint("counting", f"{__name__}:CountingFeeder", "cirrus_feed.feeders")
    return FeederRegistry({"counting": point})


def make_app(root: Path, **feeder: Any) -> App:
    settings = Settings(
        local=LocalSettings(root=root),
        workflows={"wf": Workflow(tasks=[TaskSpec(task="noop")])},
        feeders={"nums": {"type": "counting", "process": {"workflow": "wf"}, **feeder}},
    )
    return build_app(settings, registry())


def pid(number: int) -> str:
    return f"c/workflow-wf/item-{number:03d}"


def queued(app: App) -> list[str]:
    ids = []
    while messages := app.backends.queue.receive(10):
        ids += [json.loads(m.body)["id"] for m in messages]
        app.backends.queue.delete([m.receipt for m in messages])
    return ids


def test_feed_enqueues_every_item_and_records_the_run(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    result = FeedRunner(app).run("nums", app.feeders["nums"], FeedRequest())

    assert result.ok
    assert sorted(queued(app)) == [pid(n) for n in range(10)]
    assert app.backends.feeds is not None
    [run] = app.backends.feeds.list_runs("nums")
    assert run.status == "succeeded"
    assert run.counts == {
        "seen": 10,
        "filtered": 0,
        "skipped": 0,
        "enqueued": 10,
        "duplicate": 0,
        "invalid": 0,
        "failed": 0,
    }
    assert run.checkpoint == "end"
    assert app.backends.feeds.get_cursor("nums") == {"next": 10}


def test_feed_crash_resumes_from_last_checkpoint_without_loss(tmp_path: Path) -> None:
    """Given a source that fails mid-window, the rerun starts at the last checkpoint."""
    app = make_app(tmp_path, count=10, per_window=4, fail_after=6)

    first = FeedRunner(app).run("nums", app.feeders["nums"], FeedRequest())

    assert first.run.status == "failed"
    assert "item 6" in (first.run.error or "")
    assert app.backends.feeds is not None
    assert app.backends.feeds.get_cursor("nums") == {"next": 4}  # not past the failure
    healed = make_app(tmp_path, count=10, per_window=4)
    second = FeedRunner(healed).run("nums", healed.feeders["nums"], FeedRequest())
    assert second.ok
    fed = queued(healed)
    assert sorted(set(fed)) == [pid(n) for n in range(10)]  # every item at least once
    assert [r.status for r in feeds_of(healed).list_runs("nums")] == [
        "succeeded",
        "failed",
    ]


def test_feed_skips_payloads_already_succeeded_or_processing(tmp_path: Path) -> None:
    app = make_app(tmp_path, count=6)
    FeedRunner(app).run("nums", app.feeders["nums"], FeedRequest())
    worker = LocalWorker(app)
    worker.drain(WorkTotals())  # all six SUCCEEDED
    assert app.backends.state.get(pid(0)).state is State.SUCCEEDED
    feeds_of(app).clear_cursor("nums")

    again = FeedRunner(app).run("nums", app.feeders["nums"], FeedRequest())

    assert again.counts["duplicate"] == 6
    assert again.counts["enqueued"] == 0
    assert queued(app) == []


def test_feed_skips_invalid_like_process_does_but_refeeds_failed(tmp_path: Path) -> None:
    """The feeder's dedupe is process's skip set (`states.SKIP_UNLESS_REPLACE`)."""
    app = make_app(tmp_path, count=2)
    state = app.backends.state
    arn = "arn:aws:states:us-east-1:000000000000:execution:wf:e1"
    state.finish(state.claim(pid(0), arn), arn, State.INVALID, error="InvalidInput: bad")
    state.finish(state.claim(pid(1), arn), arn, State.FAILED, error="boom")

    result = FeedRunner(app).run("nums", app.feeders["nums"], FeedRequest())

    assert result.counts["duplicate"] == 1
    assert queued(app) == [pid(1)]


def test_feed_replace_template_feeds_again(tmp_path: Path) -> None:
    app = make_app(tmp_path, count=3)
    FeedRunner(app).run("nums", app.feeders["nums"], FeedRequest())
    LocalWorker(app).drain(WorkTotals())
    rerun = make_app(tmp_path, count=3, process={"workflow": "wf", "replace": True})
    feeds_of(rerun).clear_cursor("nums")

    result = FeedRunner(rerun).run("nums", rerun.feeders["nums"], FeedRequest())

    assert result.counts["enqueued"] == 3


def test_feed_dry_run_writes_ndjson_and_sends_nothing(tmp_path: Path) -> None:
    app = make_app(tmp_path, count=5)
    out = io.StringIO()

    result = FeedRunner(app).run("nums", app.feeders["nums"], FeedRequest(dry_run=True), output=out)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["features"][0]["id"] for line in lines] == [f"item-{n:03d}" for n in range(5)]
    assert result.counts["written"] == 5
    assert queued(app) == []
    assert feeds_of(app).get_cursor("nums") is None


def test_feed_limit_stops_at_the_next_checkpoint_and_the_next_run_resumes_there(
    tmp_path: Path,
) -> None:
    # CountingFeeder ignores ``limit``: the runner stops it at the first checkpoint at or
    # after the limit, sending what that checkpoint covers (dropping it would lose item 3).
    app = make_app(tmp_path, count=10)

    result = FeedRunner(app).run("nums", app.feeders["nums"], FeedRequest(limit=3))

    assert result.counts["seen"] == 4
    first = queued(app)
    assert sorted(first) == [pid(n) for n in range(4)]
    assert feeds_of(app).get_cursor("nums") == {"next": 4}
    assert result.run.checkpoint == "..4"

    FeedRunner(app).run("nums", app.feeders["nums"], FeedRequest())

    assert sorted(first + queued(app)) == [pid(n) for n in range(10)]  # each exactly once


def test_feed_rejections_are_kept_as_invalid(tmp_path: Path) -> None:
    app = make_app(tmp_path, count=5, broken=[2])

    result = FeedRunner(app).run("nums", app.feeders["nums"], FeedRequest())

    assert result.counts["invalid"] == 1
    assert not result.ok
    assert len(queued(app)) == 4
    invalid = list((tmp_path / "payloads" / "cirrus" / "tmp" / "invalid").glob("*.json"))
    [kept] = [json.loads(p.read_text()) for p in invalid]
    assert kept["record"] == {"n": 2}
    assert kept["error"] == "item 2: no id"


def test_feed_max_in_flight_pauses_until_payloads_finish(tmp_path: Path) -> None:
    app = make_app(tmp_path, count=12, max_in_flight=5)
    waits = []

    def drive(seconds: float) -> None:  # instead of sleeping, let a worker finish the work
        depth = app.backends.queue.depth()
        waits.append(depth.visible + depth.in_flight)
        LocalWorker(app).drain(WorkTotals())

    result = FeedRunner(app, clock=DrivingClock(drive)).run(
        "nums", app.feeders["nums"], FeedRequest()
    )

    assert result.counts["enqueued"] == 12
    assert waits, "the feed never paused"
    assert max(waits) <= 5


def test_registry_unknown_type_suggests_a_name() -> None:
    with pytest.raises(PluginError, match="did you mean 'counting'"):
        registry().load("countin")


def test_registry_broken_plugin_fails_only_when_used(tmp_path: Path) -> None:
    points = {
        "counting": EntryPoint("counting", f"{__name__}:CountingFeeder", "cirrus_feed.feeders"),
        "broken": EntryPoint("broken", "no_such_module_xyz:Feeder", "cirrus_feed.feeders"),
    }
    reg = FeederRegistry(points)
    assert reg.load("counting") is CountingFeeder
    with pytest.raises(PluginError, match=r"broken.*failed to load"):
        reg.load("broken")


def test_config_typo_in_feeder_fails_at_start(tmp_path: Path) -> None:
    settings = Settings(
        local=LocalSettings(root=tmp_path),
        feeders={"nums": {"type": "counting", "process": {"workflow": "wf"}, "cuont": 3}},
    )
    with pytest.raises(ConfigError, match=r"feeders\.nums: cuont"):
        build_app(settings, registry())


def test_config_process_template_without_workflow_fails_at_start(tmp_path: Path) -> None:
    settings = Settings(
        local=LocalSettings(root=tmp_path),
        feeders={"nums": {"type": "counting", "process": {"replace": True}}},
    )
    with pytest.raises(ConfigError, match=r"feeders\.nums: process\.0.*workflow"):
        build_app(settings, registry())


def test_feed_max_queue_depth_waits_for_the_queue_to_drain(tmp_path: Path) -> None:
    app = make_app(tmp_path, count=250, max_queue_depth=120)
    depths = []

    def drive(seconds: float) -> None:  # instead of sleeping, let a worker drain the queue
        depth = app.backends.queue.depth()
        depths.append(depth.visible + depth.in_flight)
        LocalWorker(app).drain(WorkTotals())

    result = FeedRunner(app, clock=DrivingClock(drive)).run(
        "nums", app.feeders["nums"], FeedRequest()
    )

    assert result.counts["enqueued"] == 250
    assert depths, "the feed never waited for the queue"
    assert all(depth > 120 for depth in depths)  # it waited only when over the limit


def test_feed_stop_finishes_the_current_window(tmp_path: Path) -> None:
    """A stop asked mid-window runs on to that window's checkpoint, so nothing is re-sent."""
    app = make_app(tmp_path, count=12, per_window=4, flush_size=1)  # progress after every item
    runner = FeedRunner(app, progress=lambda counts: runner.stop())
    feeder = app.feeders["nums"]

    result = runner.run("nums", feeder, FeedRequest())

    assert result.run.status == "interrupted"
    assert result.counts["enqueued"] == 4  # the whole first window, not just one item
    assert feeds_of(app).get_cursor("nums") == {"next": 4}
    rest = FeedRunner(app).run("nums", feeder, FeedRequest())
    assert rest.counts["enqueued"] == 8
    assert sorted(queued(app)) == [pid(n) for n in range(12)]  # each exactly once


class MessagesFeeder(Feeder[FeederConfig]):
    """Four 'messages'; m2 is poison (retry: left for the dead-letter queue); one commit."""

    name: ClassVar[str] = "messages"
    description: ClassVar[str] = "test feeder"
    commits: ClassVar[list[frozenset[str]]] = []

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        for n in range(4):
            tag = f"m{n}"
            if n == 2:
                yield SourceRejection({"body": "garbage"}, "m2: not a message", tag, retry=True)
            else:
                yield Tagged(
                    {
                        "features": [{"id": f"item-{n:03d}", "collection": "c"}],
                        "process": self.config.process_template(),
                    },
                    tag,
                )
        yield Checkpoint(commit=self.commits.append)


def test_feed_commit_reports_exactly_the_failed_source_records(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    feeder = MessagesFeeder(
        "msgs", FeederConfig(type="messages", process={"workflow": "wf"}), feeder_context()
    )
    MessagesFeeder.commits.clear()

    result = FeedRunner(app).run("msgs", feeder, FeedRequest())

    assert MessagesFeeder.commits == [frozenset({"m2"})]
    assert result.counts["enqueued"] == 3
    assert result.counts["invalid"] == 1
    assert sorted(queued(app)) == [pid(0), pid(1), pid(3)]
    assert feeds_of(app).get_cursor("msgs") is None


class BuggyFeeder(CountingFeeder):
    name: ClassVar[str] = "buggy"

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        yield from list(super().feed(request))[:5]  # four items and a checkpoint
        raise ZeroDivisionError("a bug in the feeder")


def test_feed_unexpected_error_still_closes_the_run_record(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    feeder = BuggyFeeder("nums", app.feeders["nums"].config, app.feeders["nums"].context)

    with pytest.raises(ZeroDivisionError):
        FeedRunner(app).run("nums", feeder, FeedRequest())

    [run] = feeds_of(app).list_runs("nums")
    assert run.status == "failed"
    assert run.finished is not None
    assert run.error == "ZeroDivisionError: a bug in the feeder"
    assert feeds_of(app).get_cursor("nums") == {"next": 4}


def test_feed_flush_size_bounds_each_send(tmp_path: Path) -> None:
    """``flush_size`` payloads at most per flush (each flush reports progress once)."""
    app = make_app(tmp_path, count=12, per_window=12, flush_size=5)
    sizes: list[int] = []
    runner = FeedRunner(app, progress=lambda counts: sizes.append(counts["enqueued"]))

    result = runner.run("nums", app.feeders["nums"], FeedRequest())

    assert result.counts["enqueued"] == 12
    assert sizes == [5, 10, 12]
