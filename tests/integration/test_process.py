"""The process stage on both backends: every row of spec §3.7, and the quirks it fixes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from cirrus_feed.backends.base import ExecutionOutcome, StateRecord, StateStore
from cirrus_feed.errors import BackendUnavailableError
from cirrus_feed.model import layout
from cirrus_feed.model.executions import execution_arn, execution_name, name_from_arn
from cirrus_feed.model.states import State

from .conftest import (
    AwsHarness,
    Harness,
    LocalHarness,
    by_id,
    make_payload,
    outcomes_of,
    payload_id,
)
from .state_wrappers import PerRecordWrites

PID = payload_id()


def run_to(h: Harness, state: State) -> StateRecord:
    """Given a payload that ran once and ended in ``state``."""
    h.process(make_payload())
    record = h.record(PID)
    assert record is not None
    assert record.latest_execution
    arn = record.latest_execution
    [real] = h.outcomes()  # the execution really ran; report the ending the test needs
    endings = {
        State.SUCCEEDED: real,
        State.FAILED: ExecutionOutcome(
            arn,
            name_from_arn(arn),
            "FAILED",
            input=real.input,
            error="States.TaskFailed",
            cause="boom",
        ),
        State.ABORTED: ExecutionOutcome(arn, name_from_arn(arn), "ABORTED", input=real.input),
        State.INVALID: ExecutionOutcome(
            arn,
            name_from_arn(arn),
            "FAILED",
            input=real.input,
            error="stactask.exceptions.InvalidInput",
            cause=json.dumps({"errorMessage": "bad input"}),
        ),
    }
    h.app.updater.update([endings[state]])
    record = h.record(PID)
    assert record is not None
    assert record.state is state
    h.event_types()
    return record


def test_process_new_payload_starts_one_execution(harness: Harness) -> None:
    report = harness.process(make_payload())

    assert outcomes_of(report) == ["started"]
    assert harness.executions("test-workflow1") == 1
    assert harness.event_types() == ["CLAIMED_PROCESSING", "STARTED_PROCESSING"]
    record = harness.record(PID)
    assert record is not None
    assert record.state is State.PROCESSING
    stored = harness.b.store.get_json(
        harness.b.store.url_for(layout.input_key(PID, name_from_arn(record.executions[-1])))
    )
    assert stored["id"] == PID
    assert stored["features"][0]["id"] == "test-id1"


def test_process_execution_name_matches_cirrus(harness: Harness) -> None:
    harness.process(make_payload())

    record = harness.record(PID)
    assert record is not None
    name = execution_name(PID, [], harness.b.runner.region)
    assert record.executions == (execution_arn(harness.b.runner.base_arn, "test-workflow1", name),)


def test_process_same_payload_while_processing_is_skipped(harness: Harness) -> None:
    harness.process(make_payload())
    harness.event_types()

    report = harness.process(make_payload())

    assert outcomes_of(report) == ["skipped"]
    assert harness.executions("test-workflow1") == 1
    assert harness.event_types() == ["ALREADY_PROCESSING"]


@pytest.mark.parametrize("state", [State.SUCCEEDED, State.INVALID])
def test_process_done_payload_is_skipped_unless_replace(harness: Harness, state: State) -> None:
    run_to(harness, state)
    before = harness.executions("test-workflow1")

    skipped = harness.process(make_payload())
    assert outcomes_of(skipped) == ["skipped"]
    assert harness.event_types() == [f"ALREADY_{state.value}"]
    assert harness.executions("test-workflow1") == before
    assert harness.state_of(PID) is state

    replaced = harness.process(make_payload(replace=True))
    assert outcomes_of(replaced) == ["started"]
    assert harness.event_types() == ["CLAIMED_PROCESSING", "STARTED_PROCESSING"]
    assert harness.executions("test-workflow1") == before + 1


@pytest.mark.parametrize("state", [State.FAILED, State.ABORTED])
def test_process_failed_or_aborted_payload_runs_again(harness: Harness, state: State) -> None:
    first = run_to(harness, state)

    report = harness.process(make_payload())

    assert outcomes_of(report) == ["started"]
    assert harness.event_types() == ["CLAIMED_PROCESSING", "STARTED_PROCESSING"]
    record = harness.record(PID)
    assert record is not None
    assert record.state is State.PROCESSING
    assert record.executions[:-1] == first.executions
    assert len(record.executions) == 2
    assert record.last_error is None  # a claim clears the old error


def test_process_payload_without_id_and_url_pointer(harness: Harness) -> None:
    url = harness.b.store.put_json("tmp/oversized/pointer.json", make_payload(item_id="ptr"))

    report = harness.process(make_payload(item_id="noid"), {"url": url})

    assert outcomes_of(report) == ["started", "started"]
    assert {r.payload_id for r in report.results} == {payload_id("noid"), payload_id("ptr")}


def test_process_body_without_process_is_kept_as_invalid(harness: Harness) -> None:
    body = {"type": "FeatureCollection", "features": [{"id": "x"}]}
    report = harness.process(body)

    [result] = report.results
    assert result.outcome.value == "invalid"
    assert harness.event_types() == ["NOT_A_PROCESS_PAYLOAD"]
    kept = harness.kept(result)
    assert json.loads(kept["record"]["body"]) == body
    assert "process" in kept["error"]
    assert report.failed_message_ids() == []  # handled for good: not retried


def test_process_body_not_json_is_kept_as_invalid(harness: Harness) -> None:
    report = harness.process("{not json")

    [result] = report.results
    assert result.outcome.value == "invalid"
    assert harness.event_types() == ["RECORD_EXTRACT_FAILED"]
    assert harness.kept(result)["record"]["body"] == "{not json"


def test_process_two_distinct_payloads(harness: Harness) -> None:
    report = harness.process(make_payload("a"), make_payload("b"))

    assert outcomes_of(report) == ["started", "started"]
    assert harness.executions("test-workflow1") == 2
    assert harness.event_types() == ["CLAIMED_PROCESSING", "STARTED_PROCESSING"] * 2


def test_process_same_payload_twice_in_batch(harness: Harness) -> None:
    report = harness.process(make_payload(), make_payload())

    assert outcomes_of(report) == ["started", "duplicate"]
    assert harness.executions("test-workflow1") == 1
    assert harness.event_types() == [
        "CLAIMED_PROCESSING",
        "STARTED_PROCESSING",
        "DUPLICATE_ID_ENCOUNTERED",
    ]


def test_process_unknown_workflow_is_failed_and_retried(harness: Harness) -> None:
    """Q5: recorded FAILED *and* reported failed, so SQS retries it and it ends in the DLQ."""
    report = harness.process(make_payload("good"), make_payload("bad", workflow="nope"))

    assert by_id(report) == {payload_id("good"): "started", payload_id("bad", "nope"): "failed"}
    assert harness.event_types() == [
        "CLAIMED_PROCESSING",
        "STARTED_PROCESSING",
        "CLAIMED_PROCESSING",
        "FAILED",
    ]
    bad = harness.record(payload_id("bad", "nope"))
    assert bad is not None
    assert bad.state is State.FAILED
    assert bad.last_error
    assert "does not exist" in bad.last_error.lower()
    assert report.failed_message_ids() == [report.results[1].message_id]


def test_process_good_and_bad_format(harness: Harness) -> None:
    report = harness.process({"features": []}, make_payload())

    assert outcomes_of(report) == ["invalid", "started"]
    assert harness.event_types() == [
        "NOT_A_PROCESS_PAYLOAD",
        "CLAIMED_PROCESSING",
        "STARTED_PROCESSING",
    ]
    assert report.failed_message_ids() == []


def test_process_claimed_recovery_resumes_latest_execution(harness: Harness) -> None:
    """Q1: with history [OLD, NEW] and state CLAIMED, NEW is started, not OLD."""
    old = run_to(harness, State.FAILED)
    new_name = execution_name(PID, old.executions, harness.b.runner.region)
    new_arn = execution_arn(harness.b.runner.base_arn, "test-workflow1", new_name)
    harness.b.state.claim(PID, new_arn)  # a worker claimed, then crashed before starting

    report = harness.process(make_payload())

    assert outcomes_of(report) == ["started"]
    record = harness.record(PID)
    assert record is not None
    assert record.state is State.PROCESSING
    assert record.executions == (*old.executions, new_arn)
    assert harness.executions("test-workflow1") == 2
    harness.b.store.get_json(harness.b.store.url_for(layout.input_key(PID, new_name)))


def test_process_already_events_point_at_real_execution(harness: Harness) -> None:
    """Q2: ALREADY_SUCCEEDED carries the latest execution's input and output URLs."""
    done = run_to(harness, State.SUCCEEDED)
    harness.process(make_payload())
    name = name_from_arn(done.executions[-1])
    events = [e for e in _events(harness) if e["event_type"] == "ALREADY_SUCCEEDED"]

    assert events
    assert events[0]["input_payload_url"] == harness.b.store.url_for(layout.input_key(PID, name))
    assert events[0]["output_payload_url"] == harness.b.store.url_for(layout.output_key(PID, name))
    harness.b.store.get_json(events[0]["input_payload_url"])  # it exists


def _events(h: Harness) -> list[dict[str, Any]]:
    if isinstance(h, LocalHarness):
        return [e.to_message() for e in h.notifier.events()]
    assert isinstance(h, AwsHarness)
    return [json.loads(m["Message"]) for m in h.tap_messages("events")]


class _RaceState(PerRecordWrites):
    """Wraps a state store to replay a specific race at one call."""

    # the calls a test replaces (set on the instance); everything else goes to ``real``
    get_many: Callable[[Iterable[str]], dict[str, StateRecord]]
    claim: Callable[[str, str], StateRecord]
    set_processing: Callable[[StateRecord], StateRecord]
    finish: Callable[..., StateRecord]

    def __init__(self, real: StateStore) -> None:
        self.real = real
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_process_claim_race_lost_no_record_read(harness: Harness) -> None:
    """The batch read saw no record, but another worker claimed first."""
    harness.process(make_payload())
    harness.event_types()
    race = _RaceState(harness.b.state)
    race.get_many = lambda ids: {}
    harness.use_state(race)

    report = harness.process(make_payload())

    assert outcomes_of(report) == ["skipped"]
    assert harness.executions("test-workflow1") == 1
    assert harness.event_types() == ["ALREADY_PROCESSING"]


def test_process_set_processing_race_lost(harness: Harness) -> None:
    race = _RaceState(harness.b.state)

    def set_processing_after_rival(claimed: StateRecord) -> StateRecord:
        race.real.set_processing(claimed)  # the rival worker got there first
        return race.real.set_processing(claimed)

    race.set_processing = set_processing_after_rival
    harness.use_state(race)

    report = harness.process(make_payload())

    assert outcomes_of(report) == ["skipped"]
    assert harness.executions("test-workflow1") == 1
    assert harness.event_types() == ["CLAIMED_PROCESSING", "ALREADY_PROCESSING"]


def test_process_set_processing_race_against_finished_run(harness: Harness) -> None:
    """Q3: the execution ended (FAILED) before it was marked PROCESSING: no crash."""
    race = _RaceState(harness.b.state)

    def finished_first(claimed: StateRecord) -> StateRecord:
        assert claimed.latest_execution is not None  # a claim names its execution
        race.real.finish(claimed, claimed.latest_execution, State.FAILED, "X: fast failure")
        return race.real.set_processing(claimed)

    race.set_processing = finished_first
    harness.use_state(race)

    report = harness.process(make_payload())

    assert outcomes_of(report) == ["started"]
    assert harness.state_of(PID) is State.FAILED


def test_process_unreadable_pointer_fails_only_its_record(harness: Harness) -> None:
    """Q4: a missing {"url"} object is rejected; its batch-mate still starts."""
    missing = harness.b.store.url_for("tmp/oversized/missing.json")

    report = harness.process({"url": missing}, make_payload())

    assert outcomes_of(report) == ["invalid", "started"]


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/payload.json",
        "file:///etc/passwd",
        "s3://some-other-bucket/payload.json",
        "ftp://host/x.json",
    ],
)
def test_process_pointer_outside_allowed_locations_is_rejected(harness: Harness, url: str) -> None:
    report = harness.process({"url": url})

    [result] = report.results
    assert result.outcome.value == "invalid"
    assert url in (result.reason or "")


def test_process_claim_backend_error_fails_without_second_write(harness: Harness) -> None:
    """Q7: a non-conditional error on claim fails the record; no FAILED write is attempted."""
    race = _RaceState(harness.b.state)

    def claim(payload_id: str, arn: str) -> StateRecord:
        raise BackendUnavailableError("throttled")

    def finish(*args: Any, **kwargs: Any) -> StateRecord:
        race.calls.append("finish")
        raise AssertionError("finish must not be called")

    race.claim, race.finish = claim, finish
    harness.use_state(race)

    report = harness.process(make_payload())

    assert outcomes_of(report) == ["failed"]
    assert race.calls == []
    assert harness.record(PID) is None
    assert report.failed_message_ids() == [report.results[0].message_id]


def test_process_id_workflow_mismatch_is_invalid(harness: Harness) -> None:
    """Q6: the id's workflow segment must match process[0].workflow."""
    body = make_payload() | {"id": payload_id(workflow="other")}

    report = harness.process(body)

    assert outcomes_of(report) == ["invalid"]
    assert "process[0].workflow" in (report.results[0].reason or "")


def test_process_oversized_payload_goes_by_reference(harness: Harness) -> None:
    big = make_payload()
    big["features"][0]["properties"]["blob"] = "x" * 130_000

    report = harness.process(big)

    assert outcomes_of(report) == ["started"]
    [outcome] = harness.outcomes()
    assert set(outcome.input) == {"url"}
    assert harness.b.store.get_json(outcome.input["url"])["id"] == PID


def test_process_stale_batch_read_never_restarts_a_finished_attempt(harness: Harness) -> None:
    """Between our read and our claim, a rival ran the very attempt we planned to start."""
    failed = run_to(harness, State.FAILED)  # history [A], FAILED
    harness.process(make_payload())  # the rival's attempt B
    harness.finish_all()  # ... which SUCCEEDED: history [A, B]
    harness.event_types()
    before = harness.executions("test-workflow1")
    race = _RaceState(harness.b.state)
    race.get_many = lambda ids: {PID: failed}
    harness.use_state(race)

    report = harness.process(make_payload())  # plans B again from the stale [A]

    assert outcomes_of(report) == ["skipped"]
    assert harness.event_types() == ["ALREADY_SUCCEEDED"]
    assert harness.executions("test-workflow1") == before
    record = harness.record(PID)
    assert record is not None
    assert record.state is State.SUCCEEDED
    assert len(record.executions) == 2
