"""The update-state stage on both backends: spec §5.3 mapping, chaining, the stale guard."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cirrus_feed.backends.base import ExecutionOutcome, ExecutionStatus
from cirrus_feed.backends.limits import SNS_MAX_MESSAGE_BYTES
from cirrus_feed.errors import BackendUnavailableError
from cirrus_feed.model import layout
from cirrus_feed.model.executions import name_from_arn
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.model.reports import Outcome
from cirrus_feed.model.states import State
from cirrus_feed.pipeline.update_state import NO_CAUSE

from .conftest import AwsHarness, Harness, LocalHarness, make_payload, outcomes_of, payload_id

PID = payload_id()


def started(h: Harness, body: dict[str, Any] | None = None) -> ExecutionOutcome:
    """Given a payload whose execution really ran; returns that execution's outcome."""
    body = body or make_payload()
    h.process(body)
    [outcome] = h.outcomes()
    h.event_types()
    return outcome


def ending(
    base: ExecutionOutcome,
    status: ExecutionStatus,
    error: str | None = None,
    cause: str | None = None,
    output: Any = None,
) -> ExecutionOutcome:
    return ExecutionOutcome(
        base.execution_arn,
        base.name,
        status,
        input=base.input,
        output=output,
        error=error,
        cause=cause,
    )


def published(h: Harness) -> list[dict[str, Any]]:
    if isinstance(h, LocalHarness):
        items = h.notifier.items()
        new, h.items_seen = items[h.items_seen :], len(items)
        return new
    assert isinstance(h, AwsHarness)
    return [json.loads(m["Message"]) for m in h.tap_messages("publish")]


def test_update_state_succeeded_archives_publishes_and_records(harness: Harness) -> None:
    outcome = started(harness)
    output = dict(outcome.input if "process" in outcome.input else make_payload()) | {"id": PID}

    report = harness.app.updater.update([ending(outcome, "SUCCEEDED", output=output)])

    assert outcomes_of(report) == ["updated"]
    record = harness.record(PID)
    assert record is not None
    assert record.state is State.SUCCEEDED
    assert harness.event_types() == ["SUCCEEDED"]
    archived = harness.b.store.get_json(
        harness.b.store.url_for(layout.output_key(PID, outcome.name))
    )
    assert archived["id"] == PID
    assert [item["id"] for item in published(harness)] == ["test-id1"]


@pytest.mark.parametrize(
    ("status", "error", "cause", "state", "event", "last_error"),
    [
        (
            "FAILED",
            "States.TaskFailed",
            "plain text cause",
            State.FAILED,
            "FAILED",
            "States.TaskFailed: plain text cause",
        ),
        (
            "FAILED",
            "UnknownError",
            json.dumps(
                {"errorMessage": "/usr/local/bin/python: No module named name-delivery-to-stac"}
            ),
            State.FAILED,
            "FAILED",
            "UnknownError: /usr/local/bin/python: No module named name-delivery-to-stac",
        ),
        ("FAILED", "X", json.dumps({"other": 1}), State.FAILED, "FAILED", "X: unknown"),
        ("FAILED", None, None, State.FAILED, "FAILED", f"Unknown: {NO_CAUSE}"),
        (
            "FAILED",
            "stactask.exceptions.InvalidInput",
            json.dumps({"errorMessage": "nope"}),
            State.INVALID,
            "INVALID",
            "stactask.exceptions.InvalidInput: nope",
        ),
        (
            "FAILED",
            "cirrus.lib.errors.InvalidInput",
            "bad",
            State.INVALID,
            "INVALID",
            "cirrus.lib.errors.InvalidInput: bad",
        ),
        ("FAILED", "InvalidInput", "bare name", State.FAILED, "FAILED", "InvalidInput: bare name"),
        (
            "TIMED_OUT",
            None,
            None,
            State.FAILED,
            "TIMED_OUT",
            "TimedOutError: The step function execution timed out.",
        ),
        ("ABORTED", None, None, State.ABORTED, "ABORTED", None),
    ],
)
def test_update_state_outcome_mapping(
    harness: Harness,
    status: ExecutionStatus,
    error: str | None,
    cause: str | None,
    state: State,
    event: str,
    last_error: str | None,
) -> None:
    outcome = started(harness)

    harness.app.updater.update([ending(outcome, status, error, cause)])

    record = harness.record(PID)
    assert record is not None
    assert record.state is state
    assert record.last_error == last_error
    assert harness.event_types() == [event]
    assert published(harness) == []


def test_update_state_stale_event_changes_nothing(harness: Harness) -> None:
    """A late completion of an older execution never overwrites the newer run's state."""
    first = started(harness)
    harness.app.updater.update([ending(first, "FAILED", "States.TaskFailed", "boom")])
    harness.process(make_payload())  # the rerun: a newer execution is PROCESSING
    rerun = harness.record(PID)
    assert rerun is not None
    assert rerun.state is State.PROCESSING
    harness.event_types()

    report = harness.app.updater.update([ending(first, "SUCCEEDED", output=None)])

    assert outcomes_of(report) == ["stale"]
    assert harness.record(PID) == rerun
    assert harness.event_types() == []


def test_update_state_repeated_completion_is_a_no_op(harness: Harness) -> None:
    outcome = started(harness)
    output = make_payload() | {"id": PID}
    harness.app.updater.update([ending(outcome, "SUCCEEDED", output=output)])
    published(harness)
    harness.event_types()
    done = harness.record(PID)

    report = harness.app.updater.update([ending(outcome, "SUCCEEDED", output=output)])

    assert outcomes_of(report) == ["duplicate"]
    assert harness.record(PID) == done
    assert published(harness) == []
    assert harness.event_types() == []


def test_update_state_chains_forks_with_chain_filter(harness: Harness) -> None:
    body = make_payload()
    body["features"] = [
        {"id": "a", "collection": "c", "properties": {"gsd": 1}},
        {"id": "b", "collection": "c", "properties": {"gsd": 3}},
    ]
    body["process"] = [
        {"workflow": "test-workflow1"},
        [
            {"workflow": "wf2", "chain_filter": "@.properties.gsd > 2"},
            {"workflow": "wf3", "collections": "override"},
            {"workflow": "wf5", "chain_filter": "@.properties.gsd > 100"},
        ],
        {"workflow": "wf4"},
    ]
    outcome = started(harness, body)
    output = body | {"id": "c/workflow-test-workflow1/a/b"}

    report = harness.app.updater.update([ending(outcome, "SUCCEEDED", output=output)])

    assert outcomes_of(report) == ["updated"]
    children = [json.loads(m.body) for m in harness.b.queue.receive(10)]
    # Cirrus (spec §5.5) sends chained payloads without ``id``: process derives it.
    assert [c for c in children if "id" in c] == []
    derived = sorted(ProcessPayload.from_dict(c).id for c in children)
    assert derived == ["c/workflow-wf2/b", "override/workflow-wf3/a/b"]
    by_workflow = {c["process"][0]["workflow"]: c for c in children}
    assert [f["id"] for f in by_workflow["wf2"]["features"]] == ["b"]
    assert [p["workflow"] for p in by_workflow["wf3"]["process"]] == ["wf3", "wf4"]


def test_update_state_invalid_output_ends_failed(harness: Harness) -> None:
    outcome = started(harness)

    harness.app.updater.update([ending(outcome, "SUCCEEDED", output={"id": PID, "process": {}})])

    record = harness.record(PID)
    assert record is not None
    assert record.state is State.FAILED
    assert record.last_error is not None
    assert record.last_error.startswith("InvalidOutput:")


def test_update_state_success_without_output(harness: Harness) -> None:
    outcome = started(harness)

    harness.app.updater.update([ending(outcome, "SUCCEEDED", output=None)])

    assert harness.state_of(PID) is State.SUCCEEDED
    assert published(harness) == []


def test_update_state_missing_input_details_is_kept_as_invalid(harness: Harness) -> None:
    outcome = started(harness)
    hidden = ExecutionOutcome(
        outcome.execution_arn, outcome.name, "SUCCEEDED", input_included=False
    )

    report = harness.app.updater.update([hidden])

    [result] = report.results
    assert result.outcome.value == "invalid"
    assert "Input details not included" in (result.reason or "")
    assert harness.kept(result)["record"]["execution_arn"] == (outcome.execution_arn)
    assert harness.state_of(PID) is State.PROCESSING


def test_update_state_real_executions_end_to_end(harness: Harness) -> None:
    """process → a real execution (moto's ASL interpreter / the inline runner) → update-state."""
    harness.process(make_payload("ok"), make_payload("ko", workflow="wf-fail"))

    report = harness.finish_all()

    assert sorted(outcomes_of(report)) == ["updated", "updated"]
    ok = harness.record(payload_id("ok"))
    ko = harness.record(payload_id("ko", workflow="wf-fail"))
    assert ok is not None
    assert ok.state is State.SUCCEEDED
    assert ko is not None
    assert ko.state is State.FAILED
    assert ko.last_error == "TaskFailed: boom"  # the same text from SFN and the inline runner
    name = name_from_arn(ok.executions[-1])
    assert harness.b.store.get_json(
        harness.b.store.url_for(layout.output_key(payload_id("ok"), name))
    )["id"] == (payload_id("ok"))


def test_update_state_item_too_large_to_publish_fails_only_its_record(harness: Harness) -> None:
    # Given two executions of one batch whose outputs are published together,
    big, small = payload_id("big"), payload_id("small")
    harness.process(make_payload("big"), make_payload("small"))
    by_payload = {o.input["id"]: o for o in harness.outcomes()}
    harness.event_types()
    outputs = {pid: make_payload(pid.rsplit("/", 1)[-1]) | {"id": pid} for pid in (big, small)}
    # one with an item over SNS's 256 KiB message limit:
    outputs[big]["features"][0]["properties"]["pad"] = "x" * SNS_MAX_MESSAGE_BYTES

    # When update-state applies both in one call,
    report = harness.app.updater.update(
        [ending(by_payload[pid], "SUCCEEDED", output=outputs[pid]) for pid in (big, small)]
    )

    # Then only the big one fails (recorded FAILED: retrying cannot publish it),
    assert outcomes_of(report) == ["updated", "updated"]
    big_record, small_record = harness.record(big), harness.record(small)
    assert big_record is not None
    assert small_record is not None
    assert big_record.state is State.FAILED
    assert (big_record.last_error or "").startswith("InvalidOutput: output item 'big'")
    # and the other succeeds with its item published.
    assert small_record.state is State.SUCCEEDED
    assert [item["id"] for item in published(harness)] == ["small"]
    assert sorted(harness.event_types()) == ["FAILED", "SUCCEEDED"]


def test_update_state_redelivery_fails_when_its_outbox_cannot_be_read(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completion found already applied drains its payload's outbox (its event may never
    have gone out). If that read fails, the record fails, so the queue redelivers it rather
    than dropping the message with the event still waiting (seen under AWS faults)."""
    outcome = started(harness)
    done = ending(outcome, "SUCCEEDED", output=dict(outcome.input) | {"id": PID})
    assert outcomes_of(harness.app.updater.update([done])) == ["updated"]
    store = harness.b.state

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailableError("outbox read refused (injected)")

    monkeypatch.setattr(store, "pending_events", unreadable)
    [failed] = harness.app.updater.update([done]).results
    monkeypatch.undo()
    [again] = harness.app.updater.update([done]).results

    assert failed.outcome is Outcome.FAILED
    assert failed.reason is not None
    assert "outbox not read" in failed.reason
    assert "injected" in failed.reason
    assert again.outcome is Outcome.DUPLICATE  # readable again: the redelivery succeeds
