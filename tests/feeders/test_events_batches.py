"""The ``events`` feeder per batch: one seen-cache call for a batch, prepared payloads equal
to the payloads the feeder built before templates, and bad items recorded, not dropped."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from message_data import payload_of

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.feeding.contract import Checkpoint, FeedRequest, Skipped, Tagged
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.model.payload import PreparedPayload, ProcessPayload
from cirrus_feed.testing import feeder_context
from feeders.events.feeder import FILE_BATCH, EventsConfig, EventsFeeder
from feeders.events.sources import ListMessageSource

ITEM = {"collection": "scenes", "id": "{stem}", "asset": "image"}


def notification(n: int, key: str | None = None) -> dict[str, Any]:
    """An SQS record carrying an S3 ObjectCreated notification of one object."""
    record = {
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-28T01:02:03.000Z",
        "s3": {
            "bucket": {"name": "uploads"},
            "object": {
                "key": key or f"scenes/scene-{n:04d}.tif",
                "size": 10,
                "sequencer": f"{n:016X}",
            },
        },
    }
    return {"messageId": f"m{n}", "body": json.dumps({"Records": [record]})}


@dataclass
class CountingSeen:
    """A seen cache in memory that records each call's keys."""

    known: set[str] = field(default_factory=set)
    calls: list[list[str]] = field(default_factory=list)

    def remember(self, keys: Sequence[str], ttl_seconds: int) -> set[str]:
        self.calls.append(list(keys))
        already = self.known & set(keys)
        self.known.update(keys)
        return already

    def forget(self, keys: Sequence[str]) -> None:
        self.known.difference_update(keys)


def feeder(seen: CountingSeen | None = None, **settings: Any) -> EventsFeeder:
    config = EventsConfig.model_validate(
        {
            "type": "events",
            "process": {"workflow": "wf"},
            "mapper": "s3-object",
            "options": {"item": ITEM},
            **settings,
        }
    )
    return EventsFeeder("uploads", config, feeder_context(seen=seen))


def make_app(root: Path) -> App:
    settings = Settings(
        local=LocalSettings(root=root), workflows={"wf": Workflow(tasks=[TaskSpec(task="noop")])}
    )
    return build_app(settings)


def test_events_file_batch_asks_the_seen_cache_once(tmp_path: Path) -> None:
    path = tmp_path / "messages.ndjson"
    path.write_text("".join(json.dumps(notification(n)) + "\n" for n in range(30)))
    seen = CountingSeen()

    outputs = list(feeder(seen).with_source(path).feed(FeedRequest()))

    assert len(seen.calls) == 1  # 30 messages < FILE_BATCH: one batch, one lookup
    assert len(seen.calls[0]) == 30 < FILE_BATCH
    assert len([o for o in outputs if isinstance(o, Tagged)]) == 30
    assert len([o for o in outputs if isinstance(o, Checkpoint)]) == 1


def test_events_batch_lookup_still_suppresses_a_record_repeated_in_the_batch() -> None:
    seen = CountingSeen()
    events = [notification(1), notification(2), {**notification(1), "messageId": "again"}]

    source = ListMessageSource([{"Records": events}])

    outputs = list(feeder(seen).with_source(source).feed(FeedRequest()))

    assert [o.tag for o in outputs if isinstance(o, Tagged)] == ["m1", "m2"]
    [skipped] = [o for o in outputs if isinstance(o, Skipped)]
    assert (skipped.kind, skipped.tag) == ("seen-cache", "again")
    assert len(seen.calls) == 1


def test_events_limited_run_remembers_only_the_messages_it_handles() -> None:
    seen = CountingSeen()
    source = ListMessageSource([{"Records": [notification(n) for n in range(6)]}])

    outputs = list(feeder(seen).with_source(source).feed(FeedRequest(limit=2)))
    [checkpoint] = [o for o in outputs if isinstance(o, Checkpoint)]
    assert checkpoint.commit is not None
    checkpoint.commit(frozenset())

    assert [o.tag for o in outputs if isinstance(o, Tagged)] == ["m0", "m1"]
    assert [len(keys) for keys in seen.calls] == [1, 1]  # one message at a time
    assert len(seen.known) == 2  # the four unread messages were never remembered
    assert source.unfinished == {"m2", "m3", "m4", "m5"}


def test_events_prepared_payload_is_the_payload_built_from_the_item() -> None:
    [tagged] = [
        o
        for o in feeder().with_source(ListMessageSource([notification(7)])).feed(FeedRequest())
        if isinstance(o, Tagged)
    ]

    prepared = tagged.payload
    assert isinstance(prepared, PreparedPayload)
    item = payload_of(tagged)["features"][0]
    mapping = {"type": "FeatureCollection", "features": [item], "process": [{"workflow": "wf"}]}
    expected = ProcessPayload.from_dict(mapping)
    assert prepared.id == expected.id == "scenes/workflow-wf/scene-0007"
    assert prepared.body == json.dumps(expected.to_dict())


def test_events_item_with_an_unstorable_id_is_recorded_invalid_naming_the_field(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path)
    # A URL-encoded line feed in the key: the decoded key makes an id no store can hold.
    events = [notification(1), notification(2, key="scenes/bad%0Aname.tif")]
    source = ListMessageSource([{"Records": events}])

    result = FeedRunner(app).run("uploads", feeder().with_source(source), FeedRequest())

    assert result.counts["enqueued"] == 1
    assert result.counts["invalid"] == 1
    folder = tmp_path / "payloads" / "cirrus" / "tmp" / "invalid"
    [kept] = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    assert "features[0].id" in kept["error"]
    assert kept["record"]["features"][0]["id"] == "bad\nname"
    assert source.acked == {"m1", "m2"}  # invalid for good: acked, not retried
