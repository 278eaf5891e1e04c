"""``cirrus-feed dlq`` and ``cirrus-feed invalid`` on both backends (local; SQS/S3 on moto).

Dead letters are planted the way they happen: a message received more than the queue's
limit without being deleted is redriven (local: the queue's ``dead_letters`` table; AWS: the
process queue's RedrivePolicy target).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from cirrus_feed.app import App, build_app
from cirrus_feed.backends.base import DeadLetterQueue, PayloadQueue, SendResult
from cirrus_feed.cli.main import cli
from cirrus_feed.config import Settings
from cirrus_feed.feeding.replay import DLQ_REPLAY, ReplayConfig, replay_dead_letters
from cirrus_feed.pipeline.enqueue import Enqueuer
from cirrus_feed.support.clock import FakeClock

from .cli_config import config as config
from .conftest import Harness, make_payload, payload_id


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def letters_of(h: Harness) -> DeadLetterQueue:
    assert h.b.dead_letters is not None
    return h.b.dead_letters


def dead_letter(h: Harness, *bodies: str) -> list[str]:
    """Send ``bodies`` and receive them without deleting until they are redriven; returns
    the dead letters' message ids in the order of ``bodies`` (a look at an SQS queue
    receives: each one adds one to the receive counts)."""
    h.b.queue.send(list(bodies))
    for _ in range(20):
        if not h.b.queue.receive(10, visibility_timeout=0):
            break
    assert h.b.queue.depth().dead == len(bodies)
    letters = {letter.body: letter.message_id for letter in letters_of(h).peek()}
    assert set(letters) == set(bodies), "not every body was dead-lettered"
    return [letters[body] for body in bodies]


def drain(queue: PayloadQueue) -> list[str]:
    bodies = []
    while messages := queue.receive(10):
        bodies += [m.body for m in messages]
        queue.delete([m.receipt for m in messages])
    return bodies


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_dlq_list_shows_each_letter_with_its_payload_id(harness: Harness, config: Path) -> None:
    one, two = json.dumps(make_payload("a")), json.dumps(make_payload("b"))
    ids = dead_letter(harness, one, two, "not json")

    listed = invoke(config, "dlq", "list", "--json")
    text = invoke(config, "dlq", "list")

    assert listed.exit_code == 0, listed.output
    rows = {row["message_id"]: row for row in lines(listed.stdout)}
    assert set(rows) == set(ids)
    assert rows[ids[0]]["payload_id"] == payload_id("a")
    assert rows[ids[1]]["payload_id"] == payload_id("b")
    assert rows[ids[2]]["payload_id"] is None
    # Five receives before the redrive; on SQS the helper's look counted once more.
    expected = 5 if harness.name == "local" else 6
    assert all(row["receive_count"] == expected for row in rows.values())
    assert all("received more than 5 times" in row["reason"] for row in rows.values())
    assert all(row["when"] for row in rows.values())
    assert text.exit_code == 0
    assert [line.split()[0] for line in text.stdout.splitlines()] == [
        r["message_id"] for r in lines(listed.stdout)
    ]
    # Looking removed nothing: the letters are all still there, visible to the next look.
    assert len(letters_of(harness).peek()) == 3


def test_dlq_show_prints_body_and_reason(harness: Harness, config: Path) -> None:
    body = json.dumps(make_payload("a"))
    [message_id] = dead_letter(harness, body)

    shown = invoke(config, "dlq", "show", message_id, "--json")
    missing = invoke(config, "dlq", "show", "12345")

    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["body"] == body
    assert data["payload_id"] == payload_id("a")
    assert "received more than" in data["reason"]
    assert missing.exit_code == 1
    assert "no dead letter '12345'" in missing.stderr


def test_dlq_replay_sends_the_named_letters_and_removes_only_them(
    harness: Harness, config: Path
) -> None:
    one, two = json.dumps(make_payload("a")), json.dumps(make_payload("b"))
    first, second = dead_letter(harness, one, two)

    replayed = invoke(config, "dlq", "replay", first, "--json")

    assert replayed.exit_code == 0, replayed.output
    summary = json.loads(replayed.stdout)
    assert summary["feeder"] == DLQ_REPLAY
    assert summary["counts"]["enqueued"] == 1
    assert summary["deleted"] == [first]
    assert [json.loads(b)["id"] for b in drain(harness.b.queue)] == [payload_id("a")]
    assert [letter.message_id for letter in letters_of(harness).peek()] == [second]
    feeds = build_app(Settings.model_validate(yaml.safe_load(config.read_text()))).backends.feeds
    assert feeds is not None
    [run] = feeds.list_runs(DLQ_REPLAY)
    assert run.status == "succeeded"
    assert run.counts["enqueued"] == 1


def test_dlq_replay_all_records_unreadable_bodies_as_invalid(
    harness: Harness, config: Path
) -> None:
    dead_letter(harness, json.dumps(make_payload("a")), "not json")

    replayed = invoke(config, "dlq", "replay", "--all")
    listed = invoke(config, "invalid", "list", "--json")

    assert replayed.exit_code == 1, replayed.output  # some records were invalid
    assert "removed from the dead-letter queue: 2, kept: 0" in replayed.stdout
    assert letters_of(harness).peek() == []
    assert [json.loads(b)["id"] for b in drain(harness.b.queue)] == [payload_id("a")]
    [record] = lines(listed.stdout)
    assert record["stage"] == "enqueue"
    assert "body is not JSON" in record["reason"]


def test_dlq_replay_refuses_ids_with_all_and_neither(tmp_path: Path) -> None:
    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump({"local": {"root": str(tmp_path / "root")}}))
    assert invoke(config, "dlq", "replay").exit_code == 2
    assert invoke(config, "dlq", "replay", "1", "--all").exit_code == 2


class FailingQueue:
    """The app's queue, except that every send fails (a throttled SQS, say)."""

    def __init__(self, queue: PayloadQueue) -> None:
        self.queue = queue
        self.max_message_bytes = queue.max_message_bytes

    def send(self, bodies: Sequence[str]) -> list[SendResult]:
        return [SendResult(None, "Throttling: slow down") for _ in bodies]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)


def test_dlq_replay_keeps_letters_whose_send_failed(harness: Harness) -> None:
    [message_id] = dead_letter(harness, json.dumps(make_payload("a")))
    failing = replace(harness.b, queue=FailingQueue(harness.b.queue))
    app = replace(harness.app, backends=failing, enqueuer=Enqueuer(failing.queue, failing.store))

    result, feeder = replay_dead_letters(app, letters_of(harness))

    assert not result.ok
    assert result.counts["failed"] == 1
    assert feeder.kept == [message_id]
    assert [letter.message_id for letter in letters_of(harness).peek()] == [message_id]


def test_dlq_replay_is_paced(tmp_path: Path) -> None:
    clock = FakeClock()
    app: App = build_app(Settings.model_validate({"local": {"root": str(tmp_path)}}), clock=clock)
    app.backends.queue.send([json.dumps(make_payload(f"i{n}")) for n in range(12)])
    while app.backends.queue.receive(10, visibility_timeout=0):
        pass
    assert app.backends.dead_letters is not None
    started = clock.monotonic()

    result, feeder = replay_dead_letters(
        app, app.backends.dead_letters, config=ReplayConfig(max_rate=2.0)
    )

    assert result.counts["enqueued"] == 12
    assert len(feeder.deleted) == 12
    # Sent a batch (10 letters, then 2) at a time, 2 a second: the first batch goes at once,
    # in debt by 8 tokens, so the second waits until 10 are earned: 5 s.
    assert clock.monotonic() - started == pytest.approx(5.0)
    app.close()


def test_invalid_list_and_show(harness: Harness, config: Path, tmp_path: Path) -> None:
    bad = make_payload("x")
    bad["process"] = [{}]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert invoke(config, "enqueue", str(path)).exit_code == 1

    listed = invoke(config, "invalid", "list", "--json")
    [row] = lines(listed.stdout)
    shown = invoke(config, "invalid", "show", row["record_id"], "--json")
    text = invoke(config, "invalid", "show", row["record_id"])
    missing = invoke(config, "invalid", "show", str(uuid.uuid1()))

    assert listed.exit_code == 0
    assert row["stage"] == "enqueue"
    assert "workflow" in row["reason"]
    assert "1 of 1 invalid records" in listed.stderr
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["record"] == bad
    assert "record:" in text.stdout
    assert '"x"' in text.stdout
    assert missing.exit_code == 1


def test_dlq_replay_follows_url_pointers_and_keeps_broken_ones(harness: Harness) -> None:
    stored = harness.b.store.put_json("tmp/oversized/replay-test.json", make_payload("big"))
    gone = harness.b.store.url_for("tmp/oversized/gone.json")
    pointer, broken = dead_letter(harness, json.dumps({"url": stored}), json.dumps({"url": gone}))

    result, feeder = replay_dead_letters(harness.app, letters_of(harness))

    assert result.counts["enqueued"] == 1
    assert feeder.deleted == [pointer]
    assert feeder.kept == [broken]  # the object may come back: the letter stays
    [body] = drain(harness.b.queue)
    assert json.loads(body) == make_payload("big") | {"id": payload_id("big")}
    assert [letter.message_id for letter in letters_of(harness).peek()] == [broken]
