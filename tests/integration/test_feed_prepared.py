"""Prepared payloads (built from a template validated once) through the runner and enqueue:
sent as built, deduped, offloaded when too big, and a bad id recorded invalid, not sent."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.feeding.contract import (
    Checkpoint,
    Feeder,
    FeederConfig,
    FeedItem,
    FeedRequest,
    Tagged,
)
from cirrus_feed.feeding.plugins import FeederRegistry
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.model.payload import PreparedPayload
from cirrus_feed.model.prepared import PayloadTemplate
from cirrus_feed.model.states import State
from cirrus_feed.service.worker import LocalWorker, WorkTotals


class PreparedConfig(FeederConfig):
    items: list[dict[str, Any]] = Field(default_factory=list)
    raw: list[PreparedPayload] = Field(default_factory=list)  # yielded as they are


class PreparedFeeder(Feeder[PreparedConfig]):
    """Each of ``items`` as a prepared payload (tagged with its id), then ``raw``."""

    name: ClassVar[str] = "prepared"
    description: ClassVar[str] = "test feeder"

    def feed(self, request: FeedRequest) -> Iterator[FeedItem]:
        template = PayloadTemplate(self.config.process_template())
        for item in self.config.items:
            yield Tagged(template.build([item]), tag=str(item.get("id")))
        yield from self.config.raw
        yield Checkpoint({"done": True}, label="end")


def make_app(root: Path, **feeder: Any) -> App:
    settings = Settings(
        local=LocalSettings(root=root),
        workflows={"wf": Workflow(tasks=[TaskSpec(task="noop")])},
        feeders={"prep": {"type": "prepared", "process": {"workflow": "wf"}, **feeder}},
    )
    point = EntryPoint("prepared", f"{__name__}:PreparedFeeder", "cirrus_feed.feeders")
    return build_app(settings, FeederRegistry({"prepared": point}))


def received(app: App) -> list[str]:
    bodies = []
    while messages := app.backends.queue.receive(10):
        bodies += [m.body for m in messages]
        app.backends.queue.delete([m.receipt for m in messages])
    return bodies


def invalid_records(root: Path) -> list[dict[str, Any]]:
    folder = root / "payloads" / "cirrus" / "tmp" / "invalid"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def item(number: int, **extra: Any) -> dict[str, Any]:
    return {"type": "Feature", "id": f"i{number}", "collection": "c", **extra}


def test_prepared_payloads_are_sent_with_the_body_as_built(tmp_path: Path) -> None:
    app = make_app(tmp_path, items=[item(1), item(2)])
    template = PayloadTemplate([{"workflow": "wf"}])

    result = FeedRunner(app).run("prep", app.feeders["prep"], FeedRequest())

    assert result.ok
    assert result.counts["enqueued"] == 2
    assert received(app) == [template.prepare([item(n)]).body for n in (1, 2)]


def test_prepared_duplicates_in_a_batch_are_sent_once(tmp_path: Path) -> None:
    app = make_app(tmp_path, items=[item(1), item(1), item(2)])

    result = FeedRunner(app).run("prep", app.feeders["prep"], FeedRequest())

    assert result.counts["enqueued"] == 2
    assert result.counts["duplicate"] == 1
    assert sorted(json.loads(b)["id"] for b in received(app)) == [
        "c/workflow-wf/i1",
        "c/workflow-wf/i2",
    ]


def test_prepared_payloads_already_done_are_skipped_by_state(tmp_path: Path) -> None:
    app = make_app(tmp_path, items=[item(1), item(2)])
    FeedRunner(app).run("prep", app.feeders["prep"], FeedRequest())
    LocalWorker(app).drain(WorkTotals())  # both SUCCEEDED
    assert app.backends.state.get("c/workflow-wf/i1").state is State.SUCCEEDED

    again = FeedRunner(app).run("prep", app.feeders["prep"], FeedRequest(cursor={}))

    assert again.counts["duplicate"] == 2
    assert again.counts["enqueued"] == 0
    assert received(app) == []


def test_prepared_bad_item_id_is_recorded_invalid_naming_the_field(tmp_path: Path) -> None:
    app = make_app(tmp_path, items=[item(1), {"id": "bad\nid", "collection": "c"}])

    result = FeedRunner(app).run("prep", app.feeders["prep"], FeedRequest())

    assert result.counts["enqueued"] == 1
    assert result.counts["invalid"] == 1
    [kept] = invalid_records(tmp_path)
    assert "features[0].id" in kept["error"]
    assert kept["record"]["features"] == [{"id": "bad\nid", "collection": "c"}]


def test_hand_built_prepared_payload_with_a_bad_id_is_recorded_invalid(tmp_path: Path) -> None:
    body = json.dumps({"id": "no-workflow", "process": [{"workflow": "wf"}]})
    app = make_app(tmp_path, raw=[PreparedPayload("no-workflow", body)])

    result = FeedRunner(app).run("prep", app.feeders["prep"], FeedRequest())

    assert result.counts["invalid"] == 1
    assert received(app) == []
    [kept] = invalid_records(tmp_path)
    assert "'id'" in kept["error"]
    assert kept["record"] == json.loads(body)


def test_oversized_prepared_payload_is_offloaded_to_the_store(tmp_path: Path) -> None:
    big = item(1, properties={"blob": "x" * 300_000})
    app = make_app(tmp_path, items=[big, item(2)])

    result = FeedRunner(app).run("prep", app.feeders["prep"], FeedRequest())

    assert result.counts["enqueued"] == 2
    bodies = [json.loads(b) for b in received(app)]
    [pointer] = [b for b in bodies if "url" in b]
    assert set(pointer) == {"url"}
    stored = app.backends.store.get_json(pointer["url"])
    assert stored["id"] == "c/workflow-wf/i1"
    assert stored["features"] == [big]


def test_prepared_dry_run_writes_the_body(tmp_path: Path) -> None:
    app = make_app(tmp_path, items=[item(1), item(2)])
    out = io.StringIO()

    result = FeedRunner(app).run("prep", app.feeders["prep"], FeedRequest(dry_run=True), output=out)

    template = PayloadTemplate([{"workflow": "wf"}])
    assert out.getvalue().splitlines() == [template.prepare([item(n)]).body for n in (1, 2)]
    assert result.counts["written"] == 2
    assert received(app) == []


def test_enqueue_takes_prepared_payloads_mixed_with_mappings(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    template = PayloadTemplate([{"workflow": "wf"}])
    mapping = {"features": [item(3)], "process": [{"workflow": "wf"}]}

    report = app.enqueuer.enqueue([template.prepare([item(1)]), mapping, template.build([item(3)])])

    assert [r.outcome.value for r in report.results] == ["queued", "queued", "duplicate"]
    assert [r.payload_id for r in report.results] == [
        "c/workflow-wf/i1",
        "c/workflow-wf/i3",
        "c/workflow-wf/i3",
    ]
