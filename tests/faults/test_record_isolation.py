"""Per-record isolation (issue 10, item 3): a record that makes a stage raise something
unforeseen fails alone, is retried, then dead-lettered with its reason; its batch-mates go
on; a dead worker is logged, makes ``process --once`` exit 1 and is restarted by ``serve``.

The poison is a valid payload whose claim raises what no stage foresees: the
``UnicodeEncodeError`` sqlite3 raised on a lone surrogate before ids were checked for
storability (a lone surrogate itself is now INVALID at process, pinned below).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cirrus_feed import lambdas
from cirrus_feed.app import App, build_app
from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore
from cirrus_feed.backends.base import Claim, StateRecord
from cirrus_feed.backends.local.event_log import EventLogNotifier
from cirrus_feed.backends.local.sqlite_queue import SqlitePayloadQueue
from cirrus_feed.backends.local.sqlite_state import SqliteStateStore
from cirrus_feed.cli.main import cli
from cirrus_feed.config import LocalSettings, ProcessSettings, Settings
from cirrus_feed.model.envelopes import Envelope
from cirrus_feed.model.reports import Outcome
from cirrus_feed.model.states import State
from cirrus_feed.pipeline.execution_events import apply_execution_events
from cirrus_feed.service import scheduler
from cirrus_feed.service.scheduler import Service
from cirrus_feed.service.worker import WorkTotals, run_workers
from cirrus_feed.support.clock import FakeClock
from tests.integration.conftest import (
    WORKFLOWS,
    AwsHarness,
    LocalHarness,
    make_payload,
    payload_id,
)
from tests.integration.state_wrappers import PerRecordWrites

HEALTHY = [f"ok-{i}" for i in range(6)]
MAX_RECEIVES = 3
VISIBILITY = 30

CONFIG = """\
local:
  root: {root}
  max_receives: {max_receives}
  visibility_timeout: {visibility}
process:
  wait_seconds: 0
  batch_size: 10
workflows:
  test-workflow1:
    tasks:
      - task: noop
"""


POISON = "poison"


def poison_body() -> str:
    return json.dumps(make_payload(POISON))


def surrogate_body() -> str:
    """A payload body whose item id is a lone surrogate once decoded."""
    body = json.dumps(make_payload("bad-\ud800"))  # json.dumps escapes it: "bad-\\ud800"
    assert "\\ud800" in body
    return body


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch claim with the poison in it raises, on both backends (as sqlite3 did on a
    lone surrogate); every batch without it is the real one."""
    for store in (SqliteStateStore, DynamoDbStateStore):
        real = store.claim_many

        def claim_many(self: Any, claims: Sequence[Claim], real: Any = real) -> Any:
            if any(POISON in c.payload_id for c in claims):
                "\ud800".encode()  # raises UnicodeEncodeError
            return real(self, claims)

        monkeypatch.setattr(store, "claim_many", claim_many)


def settings(root: Path) -> Settings:
    return Settings(
        local=LocalSettings(root=root, max_receives=MAX_RECEIVES, visibility_timeout=VISIBILITY),
        process=ProcessSettings(wait_seconds=0),
        workflows=WORKFLOWS,
    )


def fill(app: App, poison: str | None = None) -> None:
    """Six healthy payloads and the poison in one batch (the poison in the middle)."""
    bodies = [json.dumps(make_payload(i)) for i in HEALTHY]
    bodies.insert(3, poison or poison_body())
    assert all(r.ok for r in app.backends.queue.send(bodies))


def succeeded(app: App) -> list[str]:
    records = app.backends.state.get_many(payload_id(i) for i in HEALTHY)
    return sorted(pid for pid, r in records.items() if r.state is State.SUCCEEDED)


@pytest.mark.usefixtures("poisoned")
def test_process_once_poison_record_fails_alone_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "cirrus-feed.yaml"
    root = tmp_path / "root"
    config.write_text(CONFIG.format(root=root, max_receives=MAX_RECEIVES, visibility=VISIBILITY))
    app = build_app(settings(root))
    fill(app)

    result = CliRunner().invoke(cli, ["--config", str(config), "process", "--once", "--json"])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary == {"process": {"started": 6, "failed": 1}, "update_state": {"updated": 6}}
    assert succeeded(app) == sorted(payload_id(i) for i in HEALTHY)
    notifier = app.backends.notifier
    assert isinstance(notifier, EventLogNotifier)
    assert sorted(e.payload_id for e in notifier.events() if e.event_type == "SUCCEEDED") == (
        sorted(payload_id(i) for i in HEALTHY)
    )
    depth = app.backends.queue.depth()
    assert (depth.visible, depth.in_flight, depth.dead) == (0, 1, 0)  # left for retry
    app.close()


def test_unstorable_record_on_the_queue_is_invalid_not_retried(tmp_path: Path) -> None:
    """A lone surrogate put straight on the queue (an older writer, another tool) is INVALID
    at process, recorded with the field named, and deleted: no retries, batch-mates go on."""
    config = tmp_path / "cirrus-feed.yaml"
    root = tmp_path / "root"
    config.write_text(CONFIG.format(root=root, max_receives=MAX_RECEIVES, visibility=VISIBILITY))
    app = build_app(settings(root))
    fill(app, surrogate_body())

    result = CliRunner().invoke(cli, ["--config", str(config), "process", "--once", "--json"])

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary == {"process": {"started": 6, "invalid": 1}, "update_state": {"updated": 6}}
    assert succeeded(app) == sorted(payload_id(i) for i in HEALTHY)
    depth = app.backends.queue.depth()
    assert (depth.visible, depth.in_flight, depth.dead) == (0, 0, 0)
    invalid = app.backends.invalid
    assert invalid is not None
    [rejected] = invalid.recent()
    assert rejected.reason is not None
    assert "surrogate" in rejected.reason
    app.close()


@pytest.mark.usefixtures("poisoned")
def test_poison_record_is_dead_lettered_with_its_reason(tmp_path: Path) -> None:
    clock = FakeClock()
    app = build_app(settings(tmp_path / "root"), clock=clock)
    fill(app)
    runs = []

    while True:  # what repeated `process --once` runs do, each after the visibility timeout
        totals = run_workers(app, 1, once=True, stop=threading.Event())
        if not totals.process.counts:
            break
        runs.append(dict(totals.process.counts))
        clock.advance(VISIBILITY + 1)

    assert runs == [{"started": 6, "failed": 1}] + [{"failed": 1}] * (MAX_RECEIVES - 1)
    queue = app.backends.queue
    assert isinstance(queue, SqlitePayloadQueue)
    assert app.backends.dead_letters is not None
    [letter] = app.backends.dead_letters.peek()
    body, reason = letter.body, letter.reason
    assert body == poison_body()
    assert reason.startswith(f"received more than {MAX_RECEIVES} times without being deleted")
    assert "last error:" in reason
    assert "UnicodeEncodeError" in reason
    assert "\\ud800" in reason  # what raised is named, escaped so the reason can be stored
    assert succeeded(app) == sorted(payload_id(i) for i in HEALTHY)
    depth = queue.depth()
    assert (depth.visible, depth.in_flight, depth.dead) == (0, 0, 1)
    app.close()


@pytest.mark.parametrize("command", [["process", "--once"], ["serve", "--once"]])
def test_dead_worker_is_logged_and_the_run_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """A worker dies of an error outside any record (here the queue's delete): the run says
    so on stderr, exits 1, and the healthy work it had done is kept."""
    config = tmp_path / "cirrus-feed.yaml"
    root = tmp_path / "root"
    config.write_text(CONFIG.format(root=root, max_receives=5, visibility=VISIBILITY))
    app = build_app(settings(root))
    assert app.enqueuer.enqueue([make_payload("x1")]).counts == {"queued": 1}

    def broken_delete(self: SqlitePayloadQueue, receipts: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(SqlitePayloadQueue, "delete", broken_delete)
    result = CliRunner().invoke(cli, ["--config", str(config), *command])

    assert result.exit_code == 1
    assert "worker crashed" in result.stderr
    assert "RuntimeError: disk on fire" in result.stderr
    app.close()


class _Flaky:
    """A worker that dies on its first two runs, then works until stopped."""

    def __init__(self) -> None:
        self.runs = 0

    def run_forever(self, stop: threading.Event, totals: WorkTotals) -> None:
        self.runs += 1
        if self.runs <= 2:
            raise KeyError("a record of an unforeseen shape")
        stop.set()  # the third run works until serve stops (here: at once)


def test_serve_restarts_a_dead_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler, "RESTART_MIN_SECONDS", 0.001)
    app = build_app(settings(tmp_path / "root"))
    service = Service(app, workers=1)
    worker = _Flaky()

    service._work(worker)  # type: ignore[arg-type] # what each worker thread of serve runs

    assert worker.runs == 3  # restarted twice
    assert service.restarts == 2
    assert service.failed  # serve will exit 1
    assert not service.stop_requested.is_set()  # ... but kept serving
    app.close()


def _sqs(*bodies: tuple[str, str]) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": mid, "receiptHandle": mid, "body": body, "eventSource": "aws:sqs"}
            for mid, body in bodies
        ]
    }


@pytest.mark.aws
@pytest.mark.usefixtures("poisoned")
def test_process_handler_reports_exactly_the_poison_record(
    aws_endpoint: str, make_aws_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AWS Lambda: the batch with the poison returns it alone in batchItemFailures
    (instead of raising), and the six healthy records are started."""
    harness = AwsHarness(make_aws_client, aws_endpoint)
    monkeypatch.setattr(lambdas, "_app", lambda: harness.app)
    bodies = [(f"m-{i}", json.dumps(make_payload(i))) for i in HEALTHY]
    bodies.insert(3, ("m-poison", poison_body()))

    response = lambdas.process_handler(_sqs(*bodies), None)

    assert response["batchItemFailures"] == [{"itemIdentifier": "m-poison"}]
    assert response["counts"] == {"started": 6, "failed": 1}
    records = harness.b.state.get_many(payload_id(i) for i in HEALTHY)
    assert {r.state for r in records.values()} == {State.PROCESSING}
    assert len(records) == 6
    harness.app.close()


class _KeyErrorOn(PerRecordWrites):
    """A state store whose ``finish`` of one payload raises KeyError (a bug, a record of an
    unforeseen shape): everything else is the real store."""

    def __init__(self, real: Any, payload_id: str) -> None:
        self.real, self.payload_id = real, payload_id

    def finish(self, current: StateRecord, *args: Any, **kwargs: Any) -> StateRecord:
        if current.payload_id == self.payload_id:
            raise KeyError("executions")
        record: StateRecord = self.real.finish(current, *args, **kwargs)
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_update_state_unexpected_error_fails_only_its_completion(tmp_path: Path) -> None:
    """update-state (Lambda and queue worker share `apply_execution_events`): one completion
    whose write raises KeyError is reported failed with the reason; the others are recorded
    and announced."""
    harness = LocalHarness(tmp_path / "root")
    harness.process(*(make_payload(i) for i in HEALTHY))
    outcomes = harness.outcomes()
    bad = payload_id(HEALTHY[2])
    harness.use_state(_KeyErrorOn(harness.b.state, bad))
    envelopes = [
        Envelope(kind="execution", body=o, raw={}, source="sqs", message_id=f"e{i}")
        for i, o in enumerate(outcomes)
    ]

    report = apply_execution_events(harness.app.updater, harness.b.store, envelopes)

    failed = [r for r in report.results if r.outcome is Outcome.FAILED]
    assert [r.payload_id for r in failed] == [bad]
    assert "unexpected KeyError" in (failed[0].reason or "")
    assert report.counts == {"updated": 5, "failed": 1}
    assert len(report.failed_message_ids()) == 1
    assert sorted(
        e.payload_id for e in harness.notifier.events() if e.event_type == "SUCCEEDED"
    ) == (sorted(payload_id(i) for i in HEALTHY if payload_id(i) != bad))
    harness.app.close()
