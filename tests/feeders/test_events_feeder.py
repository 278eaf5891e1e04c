"""The ``events`` feeder end to end: sources, the seen cache, limits, and SQS on moto's server.

Payloads go through the real `FeedRunner` on the local backend; SQS/SNS tests use moto's
server (SNS topic → SQS subscription → `SqsMessageSource`).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from message_data import item_of, load

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.local.workflows import TaskSpec, Workflow
from cirrus_feed.config import LocalSettings, Settings
from cirrus_feed.errors import ConfigError, SourceUnavailableError
from cirrus_feed.feeding.contract import Checkpoint, FeedRequest, Tagged
from cirrus_feed.feeding.runner import FeedRunner
from cirrus_feed.feeding.seen import FeedStoreSeenCache
from cirrus_feed.testing import clients_returning, feeder_context
from feeders.events.feeder import EventsConfig, EventsFeeder
from feeders.events.sources import (
    FileMessageSource,
    ListMessageSource,
    SqsMessageSource,
    SqsSettings,
)

S2_TOPIC = "arn:aws:sns:eu-central-1:214830741341:SentinelS2L2A"


def make_app(root: Path) -> App:
    settings = Settings(
        local=LocalSettings(root=root),
        workflows={"publish": Workflow(tasks=[TaskSpec(task="noop")])},
    )
    return build_app(settings)


def events_config(**settings: Any) -> EventsConfig:
    base = {"type": "events", "process": {"workflow": "publish"}, "mapper": "sentinel-2"}
    return EventsConfig.model_validate(base | settings)


def queued(app: App) -> list[str]:
    ids = []
    while messages := app.backends.queue.receive(10):
        ids += [json.loads(m.body)["id"] for m in messages]
        app.backends.queue.delete([m.receipt for m in messages])
    return ids


def invalid_reasons(root: Path) -> list[str]:
    folder = root / "payloads" / "cirrus" / "tmp" / "invalid"
    return sorted(json.loads(p.read_text())["error"] for p in folder.glob("*.json"))


def product(tile: str, sequence: int = 0) -> dict[str, Any]:
    """A Sinergise L2A productInfo with one tile (``tile`` like ``24VUR``)."""
    [record] = load("sentinel2_l2a_sns")["Records"]
    info: dict[str, Any] = json.loads(record["Sns"]["Message"])
    zone, band, square = int(tile[:2]), tile[2], tile[3:]
    info["tiles"] = [
        {
            **info["tiles"][0],
            "path": f"tiles/{zone}/{band}/{square}/2024/4/30/{sequence}",
            "utmZone": zone,
            "latitudeBand": band,
            "gridSquare": square,
        }
    ]
    return info


def tile_id(tile: str, sequence: int = 0) -> str:
    grid = f"{int(tile[:2])}{tile[2:]}"  # Earth Search ids: the UTM zone unpadded
    return f"sentinel-2-l2a/workflow-publish/S2B_{grid}_20240430_{sequence}_L2A"


def sns_record(message: Any, message_id: str) -> dict[str, Any]:
    """An SNS → Lambda record of the L2A topic."""
    notification = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": S2_TOPIC,
        "Message": json.dumps(message),
        "Timestamp": "2024-05-01T12:00:01.000Z",
    }
    return {"EventSource": "aws:sns", "Sns": notification}


def sqs_of(notification: dict[str, Any], sqs_id: str, receive_count: int = 1) -> dict[str, Any]:
    """The SNS notification delivered to SQS (non-raw) as an SQS → Lambda record."""
    return {
        "messageId": sqs_id,
        "receiptHandle": f"rh-{sqs_id}",
        "body": json.dumps(notification),
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
    }


# -- file / stdin / list sources through the runner -----------------------------------------


def test_events_file_source_through_the_runner(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    lines = [
        json.dumps(load("sentinel2_l2a_sns")),
        "",
        "{this is not json",
        json.dumps(load("sentinel2_l1c_old_baseline")),
        json.dumps(load("poison_batch")),
    ]
    path = tmp_path / "messages.ndjson"
    path.write_text("\n".join(lines) + "\n")
    config = events_config(source={"file": str(path)}, options={"exclude_baselines": ["05.00"]})
    feeder = EventsFeeder("s2", config, feeder_context())

    result = FeedRunner(app).run("s2", feeder, FeedRequest())

    assert sorted(queued(app)) == [
        tile_id("24VUR"),
        tile_id("24VVR", 1),
        tile_id("24VWR"),
    ]
    assert result.counts["enqueued"] == 3
    # The bad line, and two poison records of the SQS batch on the last line.
    assert result.counts["invalid"] == 3
    assert feeder.filtered == 1
    reasons = invalid_reasons(tmp_path / "app")
    assert any(r.startswith(f"{path}:3: not JSON") for r in reasons)
    assert any("mapper failed" in r for r in reasons)


def test_events_stdin_source_and_with_source(tmp_path: Path) -> None:
    sns_event = load("sentinel2_l2a_sns")
    lines = f"{json.dumps(sns_event['Records'][0]['Sns'])}\n{json.dumps(sns_event)}\n"
    stdin = io.BytesIO(lines.encode())
    feeder = EventsFeeder("s2", events_config(), feeder_context())
    with pytest.raises(ConfigError, match="no 'source'"):
        list(feeder.feed(FeedRequest()))

    copy = feeder.with_source(FileMessageSource("-", stdin=stdin))
    outputs = list(copy.feed(FeedRequest()))

    # A bare notification is tagged by its line; a Lambda-style record by its message id.
    sns_id = "a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b"
    tags = [o.tag for o in outputs if isinstance(o, Tagged)]
    assert tags == ["stdin:1", "stdin:1", sns_id, sns_id]
    assert isinstance(outputs[-1], Checkpoint)
    with pytest.raises(SourceUnavailableError, match=r"missing\.ndjson"):
        list(feeder.with_source(tmp_path / "missing.ndjson").feed(FeedRequest()))


def test_events_commit_fails_exactly_the_poison_messages(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    source = ListMessageSource([load("poison_batch")])
    feeder = EventsFeeder("s2", events_config(), feeder_context()).with_source(source)

    result = FeedRunner(app).run("s2", feeder, FeedRequest())

    assert source.failed == {
        "3b1f8f0e-1111-4a4a-9a9a-000000000013",
        "3b1f8f0e-1111-4a4a-9a9a-000000000014",
    }
    assert source.acked == {"3b1f8f0e-1111-4a4a-9a9a-000000000015"}
    assert queued(app) == [tile_id("24VWR")]
    assert result.counts["invalid"] == 2


def test_events_limit_feeds_the_message_reaching_it_whole_and_leaves_the_rest_unacked() -> None:
    two_tiles = load("sentinel2_l2a_sns")
    events = [{"Records": [sqs_of(two_tiles["Records"][0]["Sns"], f"sqs-{n}")]} for n in range(3)]
    source = ListMessageSource(events)
    feeder = EventsFeeder("s2", events_config(), feeder_context()).with_source(source)

    outputs = list(feeder.feed(FeedRequest(limit=3)))
    [checkpoint] = [o for o in outputs if isinstance(o, Checkpoint)]
    assert checkpoint.commit is not None
    checkpoint.commit(frozenset())

    # sqs-1 reached the limit: fed whole (4 payloads) and acked, so none is sent twice
    tags = [o.tag for o in outputs if isinstance(o, Tagged)]
    assert tags == ["sqs-0", "sqs-0", "sqs-1", "sqs-1"]
    assert source.acked == {"sqs-0", "sqs-1"}
    assert source.unfinished == {"sqs-2"}


# -- the seen cache -------------------------------------------------------------------------


@dataclass
class CallbackSeen:
    """A seen cache that answers with ``answer(keys)``."""

    answer: Callable[[list[str]], set[str]]

    def remember(self, keys: Sequence[str], ttl_seconds: int) -> set[str]:
        return self.answer(list(keys))

    def forget(self, keys: Sequence[str]) -> None:
        pass


def test_events_duplicate_sns_deliveries_give_one_payload(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    assert app.backends.feeds is not None
    record = sns_record(product("31UFT"), "sns-1")
    # SNS delivered the same notification twice, to two SQS messages.
    twice = {"Records": [sqs_of(record["Sns"], "sqs-a"), sqs_of(record["Sns"], "sqs-b")]}
    seen = FeedStoreSeenCache(app.backends.feeds, "s2")
    feeder = EventsFeeder("s2", events_config(), feeder_context(seen=seen))
    runner = FeedRunner(app)

    first = runner.run("s2", feeder.with_source(ListMessageSource([twice])), FeedRequest())
    # ... and once more later, straight to a Lambda (after the first was enqueued).
    later = feeder.with_source(ListMessageSource([{"Records": [record]}]))
    second = runner.run("s2", later, FeedRequest())

    assert queued(app) == [tile_id("31UFT")]
    assert (first.counts["enqueued"], second.counts["enqueued"]) == (1, 0)
    assert later.duplicates == 1
    # both suppressed deliveries are in their run records, as duplicates of the seen cache
    records = {r.run_id: r.counts for r in app.backends.feeds.list_runs("s2")}
    for result in (first, second):
        assert records[result.run.run_id]["duplicate"] == 1
        assert records[result.run.run_id]["duplicate:seen-cache"] == 1


def test_events_redelivered_message_bypasses_the_seen_cache() -> None:
    calls: list[list[str]] = []

    def seen(keys: list[str]) -> set[str]:
        calls.append(keys)
        return set(keys)  # everything already seen

    record = sns_record(product("31UFT"), "sns-1")
    first = {"Records": [sqs_of(record["Sns"], "sqs-a", receive_count=1)]}
    retry = {"Records": [sqs_of(record["Sns"], "sqs-b", receive_count=2)]}
    feeder = EventsFeeder("s2", events_config(), feeder_context(seen=CallbackSeen(seen)))

    dropped = list(feeder.with_source(ListMessageSource([first])).feed(FeedRequest()))
    kept = list(feeder.with_source(ListMessageSource([retry])).feed(FeedRequest()))

    assert not [o for o in dropped if isinstance(o, Tagged)]
    assert [o.tag for o in kept if isinstance(o, Tagged)] == ["sqs-b"]
    assert calls == [["sns:sns-1"], ["sns:sns-1"]]


def test_events_dry_run_leaves_the_seen_cache_alone() -> None:
    calls: list[list[str]] = []

    def seen(keys: list[str]) -> set[str]:
        calls.append(keys)
        return set()

    source = ListMessageSource([load("sentinel2_l2a_sns")])
    feeder = EventsFeeder(
        "s2", events_config(), feeder_context(seen=CallbackSeen(seen))
    ).with_source(source)

    outputs = list(feeder.feed(FeedRequest(dry_run=True)))

    assert len([o for o in outputs if isinstance(o, Tagged)]) == 2
    assert calls == []


def test_events_s3_records_are_deduped_one_by_one() -> None:
    known: set[str] = set()

    def seen(keys: list[str]) -> set[str]:
        already = known & set(keys)
        known.update(keys)
        return already

    event = load("s3_sqs_two_records")
    body = json.loads(event["Records"][0]["body"])
    # The second notification repeats the second record and adds a new one.
    repeat = {"Records": [body["Records"][1], {**body["Records"][1], "eventTime": "x"}]}
    repeat["Records"][1] = json.loads(json.dumps(body["Records"][0]))
    repeat["Records"][1]["s3"]["object"]["sequencer"] = "0062A1B2C3D4E5F699"  # overwritten
    config = events_config(mapper="s3-object", options={"item": {"collection": "c"}})
    feeder = EventsFeeder("s3", config, feeder_context(seen=CallbackSeen(seen)))

    first = list(feeder.with_source(ListMessageSource([event])).feed(FeedRequest()))
    second_feeder = feeder.with_source(ListMessageSource([{"Records": repeat["Records"]}]))
    second = list(second_feeder.feed(FeedRequest()))

    assert len([o for o in first if isinstance(o, Tagged)]) == 3
    [new] = [o for o in second if isinstance(o, Tagged)]
    assert item_of(new)["id"] == "scenes-2024-a b+c-café über.tif"
    assert second_feeder.duplicates == 1


# -- SQS on moto's server -------------------------------------------------------------------


class Sqs:
    """A queue (with a dead-letter queue after ``max_receives``) subscribed to a topic."""

    def __init__(self, make_client: Callable[[str], Any], max_receives: int = 1) -> None:
        self.sqs, self.sns = make_client("sqs"), make_client("sns")
        name = f"events-{uuid.uuid4().hex[:8]}"
        self.dlq_url = self.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = self.arn(self.dlq_url)
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}
        self.url = self.sqs.create_queue(
            QueueName=name, Attributes={"RedrivePolicy": json.dumps(redrive)}
        )["QueueUrl"]
        self.topic = self.sns.create_topic(Name=f"{name}-topic")["TopicArn"]
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=self.arn(self.url))

    def arn(self, url: str) -> str:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    def publish(self, message: Any) -> str:
        return str(self.sns.publish(TopicArn=self.topic, Message=json.dumps(message))["MessageId"])

    def count(self, url: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        return sum(int(attributes["Attributes"][n]) for n in names)

    def visible(self, url: str) -> tuple[int, int]:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        visible, hidden = (int(attributes["Attributes"][n]) for n in names)
        return visible, hidden

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {"queue_url": self.url, "wait_seconds": 0, "visibility_timeout": 2, **extra}


@pytest.fixture
def make_sqs(make_aws_client: Callable[[str], Any]) -> Iterator[Callable[[int], Sqs]]:
    """Builds `Sqs` setups (their dead-letter queue after ``max_receives``); all deleted."""
    made: list[Sqs] = []

    def make(max_receives: int) -> Sqs:
        made.append(Sqs(make_aws_client, max_receives))
        return made[-1]

    yield make
    for queues in made:
        for url in (queues.url, queues.dlq_url):
            queues.sqs.delete_queue(QueueUrl=url)
        queues.sns.delete_topic(TopicArn=queues.topic)


@pytest.fixture
def sqs(make_sqs: Callable[[int], Sqs]) -> Sqs:
    """Queues whose dead-letter queue takes a message on its second receive."""
    return make_sqs(1)


def sqs_feeder(app: App, sqs: Sqs, **settings: Any) -> EventsFeeder:
    assert app.backends.feeds is not None
    config = events_config(source={"sqs": sqs.settings(**settings)})
    context = feeder_context(
        seen=FeedStoreSeenCache(app.backends.feeds, "s2"), clients=clients_returning(sqs.sqs)
    )
    return EventsFeeder("s2", config, context)


@pytest.mark.aws
def test_sqs_poller_enqueues_acks_and_sends_poison_to_the_dlq(tmp_path: Path, sqs: Sqs) -> None:
    app = make_app(tmp_path)
    tiles = [f"{zone}UFT" for zone in range(10, 22)]  # 12 messages: two batches and a bit
    for tile in tiles[:6]:
        sqs.publish(product(tile))
    sqs.sns.publish(TopicArn=sqs.topic, Message="{not json")
    for tile in tiles[6:]:
        sqs.publish(product(tile))

    result = FeedRunner(app).run("s2", sqs_feeder(app, sqs), FeedRequest())

    assert sorted(queued(app)) == sorted(tile_id(t) for t in tiles)
    assert result.counts["invalid"] == 1
    [reason] = invalid_reasons(tmp_path)
    assert "Message is not JSON" in reason
    assert sqs.count(sqs.url) == 1  # only the poison message is left, in flight
    # Once its visibility runs out, the next receive moves it to the dead-letter queue.
    time.sleep(2.2)
    again = FeedRunner(app).run("s2", sqs_feeder(app, sqs), FeedRequest())
    assert again.counts["enqueued"] == again.counts["invalid"] == 0
    assert (sqs.count(sqs.url), sqs.count(sqs.dlq_url)) == (0, 1)


@pytest.mark.aws
def test_sqs_poller_stopped_mid_batch_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, sqs: Sqs
) -> None:
    app = make_app(tmp_path)
    tiles = [f"{zone}VUR" for zone in range(30, 45)]
    for tile in tiles:
        sqs.publish(product(tile))
    runner = FeedRunner(app)
    feeder = sqs_feeder(app, sqs, batch=5)
    cache = feeder.seen
    assert cache is not None
    calls: list[list[str]] = []

    def seen_then_stop(keys: list[str]) -> set[str]:
        calls.append(keys)
        if len(calls) == 1:  # the first batch's one lookup: stop (e.g. SIGTERM) mid-batch
            runner.stop()
        return cache.remember(keys, 3600)

    feeder.seen = CallbackSeen(seen_then_stop)
    first = runner.run("s2", feeder, FeedRequest())
    second = FeedRunner(app).run("s2", sqs_feeder(app, sqs, batch=5), FeedRequest())

    assert first.run.status == "interrupted"
    assert first.counts["enqueued"] == 5  # ran on to the end of its batch, then committed
    assert [len(keys) for keys in calls[:1]] == [5]  # one cache call for the whole batch
    assert second.counts["enqueued"] == 10
    ids = queued(app)
    assert sorted(ids) == sorted(tile_id(t) for t in tiles)
    assert sqs.count(sqs.url) == 0


@pytest.mark.aws
def test_sqs_poller_killed_before_commit_redelivers_everything(
    tmp_path: Path, make_sqs: Callable[[int], Sqs]
) -> None:
    sqs = make_sqs(5)
    app = make_app(tmp_path)
    tiles = [f"{zone}WUR" for zone in range(30, 36)]
    for tile in tiles:
        sqs.publish(product(tile))
    feeder = sqs_feeder(app, sqs, batch=3)

    # A crash: the feed stops half-way through its first batch, nothing is committed.
    outputs = feeder.feed(FeedRequest())
    assert isinstance(outputs, Generator)
    tagged = [next(outputs), next(outputs)]
    outputs.close()
    assert all(isinstance(o, Tagged) for o in tagged)
    time.sleep(2.2)  # the visibility timeout: the batch reappears (receive count 2)
    result = FeedRunner(app).run("s2", sqs_feeder(app, sqs, batch=3), FeedRequest())

    assert sorted(queued(app)) == sorted(tile_id(t) for t in tiles)
    assert result.counts["enqueued"] == 6
    assert sqs.count(sqs.url) == 0


@pytest.mark.aws
def test_sqs_poller_duplicate_sns_delivery_is_enqueued_once(tmp_path: Path, sqs: Sqs) -> None:
    app = make_app(tmp_path)
    notification = sns_record(product("05QKB"), str(uuid.uuid4()))["Sns"]
    # At-least-once delivery: SNS put the same notification in the queue twice.
    for _ in range(2):
        sqs.sqs.send_message(QueueUrl=sqs.url, MessageBody=json.dumps(notification))

    feeder = sqs_feeder(app, sqs)
    result = FeedRunner(app).run("s2", feeder, FeedRequest())

    assert queued(app) == [tile_id("05QKB")]
    assert result.counts["enqueued"] == 1
    assert feeder.duplicates == 1
    assert sqs.count(sqs.url) == 0


@pytest.mark.aws
def test_sqs_poller_maps_a_stac_item_message_over_64_kb(tmp_path: Path, sqs: Sqs) -> None:
    app = make_app(tmp_path)
    record = load("stac_item_publish")["Records"][0]
    item = json.loads(json.loads(record["body"])["Message"])
    item["assets"] |= {
        f"band-{n:03d}": {"href": f"s3://sentinel-cogs/x/B{n:03d}.tif", "title": "x" * 200}
        for n in range(300)
    }
    assert len(json.dumps(item)) > 64 * 1024
    sqs.publish(item)
    config = events_config(mapper="stac-item", source={"sqs": sqs.settings()})
    feeder = EventsFeeder("es", config, feeder_context(clients=clients_returning(sqs.sqs)))

    result = FeedRunner(app).run("es", feeder, FeedRequest())

    assert queued(app) == ["sentinel-2-l2a/workflow-publish/S2B_24VUR_20240430_0_L2A"]
    assert result.counts["enqueued"] == 1
    assert sqs.count(sqs.url) == 0


@pytest.mark.aws
def test_sqs_source_extends_visibility_while_a_batch_is_held(sqs: Sqs) -> None:
    sqs.publish(product("05QKB"))
    source = SqsMessageSource(SqsSettings(**sqs.settings()), client=sqs.sqs)
    batches = source.batches()
    assert isinstance(batches, Generator)

    batch = next(batches)
    time.sleep(3.2)  # past the 2 s visibility timeout: still held by the keeper
    stolen = sqs.sqs.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=0).get("Messages", [])
    batch.settle(frozenset(), frozenset())
    batches.close()

    assert stolen == []
    assert len(batch.messages) == 1
    assert sqs.count(sqs.url) == 0


@pytest.mark.aws
def test_sqs_limit_receives_no_more_than_it_may_feed(tmp_path: Path, sqs: Sqs) -> None:
    app = make_app(tmp_path)
    for tile in ("05QKB", "06QKB", "07QKB"):
        sqs.publish(product(tile))

    first = FeedRunner(app).run("s2", sqs_feeder(app, sqs), FeedRequest(limit=1))

    assert first.counts["enqueued"] == 1
    assert sqs.visible(sqs.url) == (2, 0)  # one received, the others never touched
    second = FeedRunner(app).run("s2", sqs_feeder(app, sqs), FeedRequest())
    assert second.counts["enqueued"] == 2


@pytest.mark.aws
def test_sqs_message_straddling_the_limit_is_fed_whole_and_acked(
    tmp_path: Path, make_sqs: Callable[[int], Sqs]
) -> None:
    sqs = make_sqs(5)
    app = make_app(tmp_path)
    for _ in range(2):
        sqs.publish(json.loads(load("sentinel2_l2a_sns")["Records"][0]["Sns"]["Message"]))

    first = FeedRunner(app).run("s2", sqs_feeder(app, sqs), FeedRequest(limit=1))

    # its two tiles are sent and the message acked: the next run sends neither again
    assert first.counts["enqueued"] == 2
    assert sorted(queued(app)) == [tile_id("24VUR"), tile_id("24VVR", 1)]
    assert sqs.visible(sqs.url) == (1, 0)  # the second message, never received
    second = FeedRunner(app).run("s2", sqs_feeder(app, sqs), FeedRequest())
    assert second.counts["enqueued"] + second.counts["duplicate"] == 2  # the second message
    assert sqs.count(sqs.url) == 0


@pytest.mark.aws
def test_sqs_max_messages_per_run_bounds_the_drain(tmp_path: Path, sqs: Sqs) -> None:
    app = make_app(tmp_path)
    for zone in range(10, 15):
        sqs.publish(product(f"{zone}QKB"))

    result = FeedRunner(app).run(
        "s2", sqs_feeder(app, sqs, batch=2, max_messages_per_run=3), FeedRequest()
    )

    assert result.counts["enqueued"] == 3
    assert sqs.count(sqs.url) == 2


def test_sqs_settings_read_the_region_from_the_queue_url() -> None:
    url = "https://sqs.eu-central-1.amazonaws.com/123456789012/q"
    assert SqsSettings(queue_url=url).region_name() == "eu-central-1"
    assert SqsSettings(queue_url="http://127.0.0.1:5000/123/q").region_name() == "us-east-1"
    assert SqsSettings(queue_url=url, region="us-west-2").region_name() == "us-west-2"


def test_list_source_splits_lambda_batches_by_message_id() -> None:
    event = load("poison_batch")
    source = ListMessageSource([event, load("s3_eventbridge")])

    [batch] = list(source.batches())

    assert [m.tag for m in batch.messages] == [
        "3b1f8f0e-1111-4a4a-9a9a-000000000013",
        "3b1f8f0e-1111-4a4a-9a9a-000000000014",
        "3b1f8f0e-1111-4a4a-9a9a-000000000015",
        "1",
    ]
    assert [m.receive_count for m in batch.messages] == [1, 1, 1, None]
