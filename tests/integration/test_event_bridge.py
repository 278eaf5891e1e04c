"""Pushed events (Lambda, `feed --input`) through the events feeder and the runner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cirrus_feed import lambdas
from cirrus_feed.app import App, build_app
from cirrus_feed.config import load_settings
from cirrus_feed.errors import BackendUnavailableError, CirrusFeedError

EVENTS_FEEDER = {
    "type": "events",
    "mapper": "s3-object",
    "options": {
        "filter": {"suffix": [".tif"]},
        "item": {"collection": "drone", "id": "{stem}", "asset": "image"},
    },
    "process": {"workflow": "wf"},
}


def s3_record(key: str) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-28T01:02:03.000Z",
        "s3": {
            "bucket": {"name": "uploads"},
            "object": {"key": key, "size": 10, "eTag": "abc", "sequencer": f"00{len(key)}"},
        },
    }


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"r-{message_id}",
        "body": body,
        "eventSource": "aws:sqs",
    }


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "local": {"root": str(tmp_path / "root")},
                "workflows": {"wf": {"tasks": [{"task": "noop"}]}},
                "feeders": {"uploads": EVENTS_FEEDER},
            }
        )
    )
    return path


@pytest.fixture
def app(config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv("CIRRUS_FEED_CONFIG", str(config))
    lambdas._app.cache_clear()
    application = lambdas._app()
    yield application
    application.close()
    lambdas._app.cache_clear()


def queued_ids(app: App) -> list[str]:
    ids = []
    while messages := app.backends.queue.receive(10):
        ids += [json.loads(m.body)["id"] for m in messages]
        app.backends.queue.delete([m.receipt for m in messages])
    return sorted(ids)


def test_events_handler_reports_exactly_the_poison_message(app: App) -> None:
    good = json.dumps({"Records": [s3_record("a/one+image.tif"), s3_record("a/two.tif")]})
    event = {"Records": [sqs_record("m1", good), sqs_record("m2", "{not json")]}

    response = lambdas.events_handler(event)

    assert response["batchItemFailures"] == [{"itemIdentifier": "m2"}]
    assert queued_ids(app) == ["drone/workflow-wf/one image", "drone/workflow-wf/two"]


def test_events_handler_for_sns_raises_when_a_message_fails(app: App) -> None:
    event = {
        "Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "s1", "Message": "{not json"}}]
    }

    with pytest.raises(CirrusFeedError, match="s1"):
        lambdas.events_handler(event)


def test_feed_input_replays_messages_from_a_file(config: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cirrus_feed.cli.main import cli

    messages = tmp_path / "messages.ndjson"
    messages.write_text(json.dumps({"Records": [s3_record("x/scene.tif")]}) + "\n")

    result = CliRunner().invoke(
        cli, ["--config", str(config), "feed", "uploads", "--input", str(messages)]
    )

    assert result.exit_code == 0, result.output
    app = build_app(load_settings(config, env={}))
    try:
        assert queued_ids(app) == ["drone/workflow-wf/scene"]
    finally:
        app.close()


def test_events_duplicate_sns_delivery_is_fed_once(app: App) -> None:
    """The seen-message cache (wired from the app's feed store) absorbs a redelivery."""
    notification = {
        "EventSource": "aws:sns",
        "Sns": {"MessageId": "sns-1", "Message": json.dumps({"Records": [s3_record("d/dup.tif")]})},
    }

    first = lambdas.events_handler({"Records": [notification]})
    again = lambdas.events_handler({"Records": [notification]})

    assert first["counts"]["enqueued"] == 1
    assert again["counts"]["enqueued"] == 0
    assert queued_ids(app) == ["drone/workflow-wf/dup"]


def test_events_sns_retry_after_a_failed_send_is_not_suppressed(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seen cache forgets a message whose payloads could not be sent, so the SNS
    retry of that message is fed: nothing is lost."""
    notification = {
        "EventSource": "aws:sns",
        "Sns": {
            "MessageId": "sns-retry",
            "Message": json.dumps({"Records": [s3_record("r/x.tif")]}),
        },
    }
    queue = app.backends.queue
    real_send = queue.send

    def broken_send(bodies: Any) -> Any:
        raise BackendUnavailableError("queue is down")

    monkeypatch.setattr(queue, "send", broken_send)
    with pytest.raises(CirrusFeedError):
        lambdas.events_handler({"Records": [notification]})
    monkeypatch.setattr(queue, "send", real_send)

    retried = lambdas.events_handler({"Records": [notification]})

    assert retried["counts"]["enqueued"] == 1
    assert queued_ids(app) == ["drone/workflow-wf/x"]
