"""Exactly-once start under faults (issue 9, item 4).

A StartExecution that fails ambiguously is resolved by DescribeExecution on the deterministic
name before any state is written; ``ExecutionAlreadyExists`` is "already started". Each
decision is pinned on moto's server with `faults.FaultInjector` on the app's own clients,
and the whole pipeline is run with faults on every AWS call of process and update-state.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from cirrus_feed.backends.aws.stepfunctions import StepFunctionsWorkflowRunner
from cirrus_feed.backends.base import Backends, ExecutionOutcome, PayloadStore
from cirrus_feed.errors import BackendError
from cirrus_feed.model.envelopes import normalize
from cirrus_feed.model.executions import execution_arn, execution_name
from cirrus_feed.model.reports import StageReport
from cirrus_feed.model.states import State
from cirrus_feed.pipeline.process import Processor
from cirrus_feed.support.batching import chunks

from .conftest import REGION, AwsHarness, Harness, make_payload, outcomes_of, payload_id
from .faults import FaultInjector

PID = payload_id()
START = frozenset({"StartExecution"})
DESCRIBE = frozenset({"DescribeExecution"})


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


@pytest.fixture
def faults() -> FaultInjector:
    return FaultInjector(seed=9)


@pytest.fixture
def aws(
    faults: FaultInjector, aws_endpoint: str, make_aws_client: Callable[[str], Any]
) -> Iterator[AwsHarness]:
    """An AWS pipeline whose clients carry ``faults``' hooks (inactive until enabled)."""
    session = _session()
    faults.install(session.events)
    harness = AwsHarness(make_aws_client, aws_endpoint, session=session)
    yield harness
    harness.app.close()


def _planned_arn(h: Harness) -> str:
    name = execution_name(PID, (), h.b.runner.region)
    return execution_arn(h.b.runner.base_arn, "test-workflow1", name)


def _all_arns(h: AwsHarness) -> list[str]:
    pages = h.sfn.get_paginator("list_executions").paginate(
        stateMachineArn=f"{h.base_arn}test-workflow1"
    )
    return [e["executionArn"] for page in pages for e in page["executions"]]


# -- one decision at a time ---------------------------------------------------------------


@pytest.mark.aws
def test_start_lost_response_execution_exists_is_processing(
    aws: AwsHarness, faults: FaultInjector
) -> None:
    """The start went through, its response was lost: described, found, PROCESSING."""
    faults.lost, faults.operations = 1.0, START

    with faults.enabled():
        report = aws.process(make_payload())

    assert faults.counts == {"lost sfn.StartExecution": 1}
    assert outcomes_of(report) == ["started"]
    record = aws.record(PID)
    assert record is not None
    assert record.state is State.PROCESSING
    assert record.executions == (_planned_arn(aws),)
    assert _all_arns(aws) == [_planned_arn(aws)]
    assert aws.event_types() == ["CLAIMED_PROCESSING", "STARTED_PROCESSING"]


@pytest.mark.aws
@pytest.mark.parametrize("fault", ["dropped", "throttled", "server_error"])
def test_start_not_performed_stays_claimed_and_retry_starts_once(
    aws: AwsHarness, faults: FaultInjector, fault: str
) -> None:
    """A connection reset before sending, a throttle, a 500: described, absent → CLAIMED,
    reported failed (SQS redelivers), never FAILED; the redelivery starts the same name."""
    faults.operations = START
    if fault == "dropped":
        faults.dropped = 1.0
    else:
        faults.throttled, faults.server_errors = 1.0, float(fault == "server_error")

    with faults.enabled():
        first = aws.process(make_payload())

    assert outcomes_of(first) == ["failed"]
    assert first.failed_message_ids() == ["m1"]
    assert aws.state_of(PID) is State.CLAIMED
    assert _all_arns(aws) == []
    assert aws.event_types() == ["CLAIMED_PROCESSING"]  # no FAILED event: nothing failed

    second = aws.process(make_payload())  # the redelivery

    assert outcomes_of(second) == ["started"]
    record = aws.record(PID)
    assert record is not None
    assert record.state is State.PROCESSING
    assert record.executions == (_planned_arn(aws),)
    assert _all_arns(aws) == [_planned_arn(aws)]
    assert aws.event_types() == ["STARTED_PROCESSING"]


@pytest.mark.aws
def test_start_lost_and_describe_fails_stays_claimed(
    aws_endpoint: str, make_aws_client: Callable[[str], Any]
) -> None:
    """Started, response lost, and the DescribeExecution throttled: cannot tell → CLAIMED and
    retried; the retry's StartExecution says it exists → PROCESSING, one execution."""
    lost = FaultInjector(lost=1.0, operations=START)
    throttled = FaultInjector(throttled=1.0, server_errors=0.0, operations=DESCRIBE)
    session = _session()
    lost.install(session.events)
    throttled.install(session.events)
    aws = AwsHarness(make_aws_client, aws_endpoint, session=session)

    with lost.enabled(), throttled.enabled():
        first = aws.process(make_payload())

    assert lost.counts == {"lost sfn.StartExecution": 1}
    assert throttled.counts == {"throttled sfn.DescribeExecution": 1}
    assert outcomes_of(first) == ["failed"]
    assert aws.state_of(PID) is State.CLAIMED
    assert _all_arns(aws) == [_planned_arn(aws)]

    second = aws.process(make_payload())

    assert outcomes_of(second) == ["started"]
    record = aws.record(PID)
    assert record is not None
    assert record.state is State.PROCESSING
    assert record.executions == (_planned_arn(aws),)
    assert _all_arns(aws) == [_planned_arn(aws)]
    aws.app.close()


@pytest.mark.aws
def test_start_retried_attempt_already_exists_is_processing(
    aws: AwsHarness, faults: FaultInjector
) -> None:
    """The first attempt went through and its response was lost; botocore's own retry gets
    ``ExecutionAlreadyExists`` (or moto's idempotent success): PROCESSING, one execution."""
    faults.lost_attempt, faults.operations = 0.5, START  # the attempt after a loss sees it
    with faults.enabled():
        report = aws.process(make_payload())

    assert outcomes_of(report) in (["started"], ["failed"])
    if outcomes_of(report) == ["failed"]:  # every attempt lost: the retry resumes
        assert aws.state_of(PID) is State.CLAIMED
        report = aws.process(make_payload())
    assert outcomes_of(report) == ["started"]
    assert aws.state_of(PID) is State.PROCESSING
    assert _all_arns(aws) == [_planned_arn(aws)]


def test_start_already_exists_for_claimed_record_is_processing(harness: Harness) -> None:
    """Both backends: a CLAIMED record whose execution was started before (its worker died
    before set-processing) is recorded PROCESSING with that ARN, and nothing starts again."""
    arn = _planned_arn(harness)
    harness.b.state.claim(PID, arn)
    harness.b.runner.start("test-workflow1", arn.rsplit(":", 1)[-1], make_payload())

    report = harness.process(make_payload())

    assert outcomes_of(report) == ["started"]
    record = harness.record(PID)
    assert record is not None
    assert record.state is State.PROCESSING
    assert record.executions == (arn,)
    assert harness.executions("test-workflow1") == 1
    assert harness.event_types() == ["STARTED_PROCESSING"]


@pytest.mark.aws
def test_start_unknown_workflow_is_still_failed(aws: AwsHarness, faults: FaultInjector) -> None:
    """Not ambiguous: the state machine does not exist, so nothing was started → FAILED."""
    report = aws.process(make_payload(workflow="no-such-workflow"))

    assert outcomes_of(report) == ["failed"]
    assert aws.state_of(payload_id(workflow="no-such-workflow")) is State.FAILED


# -- the whole pipeline under faults ------------------------------------------------------

# Per call (seen by the caller) and per HTTP attempt (seen by botocore's retries), on every
# AWS call the process and update-state stages make.
RATES = {
    "lost": 0.03,
    "dropped": 0.01,
    "throttled": 0.03,
    "lost_attempt": 0.02,
    "throttled_attempt": 0.02,
}
PAYLOADS = int(os.environ.get("CIRRUS_FEED_FAULT_PAYLOADS", "150"))  # the run: 1000


def _deliver(
    bodies: dict[str, Any], handle: Callable[[list[str], list[Any]], StageReport]
) -> tuple[int, dict[str, int]]:
    """Replay an SQS event source mapping: batches of 10; the records a batch reports failed
    are redelivered (in a later batch) until they succeed. Returns rounds, receive counts."""
    pending = dict(bodies)
    receives: Counter[str] = Counter()
    rounds = 0
    while pending and rounds < 100:
        rounds += 1
        for chunk in chunks(list(pending.items()), 10):
            ids = [message_id for message_id, _ in chunk]
            receives.update(ids)
            failed = set(handle(ids, [body for _, body in chunk]).failed_message_ids())
            for message_id in ids:
                if message_id not in failed:
                    del pending[message_id]
    assert not pending, f"{len(pending)} messages still failing after {rounds} rounds"
    return rounds, dict(receives)


@pytest.mark.aws
def test_faults_every_payload_succeeds_with_exactly_one_execution(
    aws: AwsHarness, faults: FaultInjector, make_aws_client: Callable[[str], Any]
) -> None:
    for kind, rate in RATES.items():
        setattr(faults, kind, rate)
    bodies = {f"p{i}": make_payload(f"item-{i:05d}") for i in range(PAYLOADS)}
    pids = {payload_id(f"item-{i:05d}") for i in range(PAYLOADS)}

    def process(ids: list[str], payloads: list[Any]) -> StageReport:
        records = [
            {"messageId": m, "receiptHandle": m, "body": json.dumps(p), "eventSource": "aws:sqs"}
            for m, p in zip(ids, payloads, strict=True)
        ]
        return aws.app.processor.process(normalize({"Records": records}))

    with faults.enabled():
        process_rounds, _ = _deliver(bodies, process)

    # EventBridge delivers each execution's end; the outcome is read unfaulted (it is the
    # event's content), update-state's own calls run under the faults.
    sfn = StepFunctionsWorkflowRunner(
        aws.base_arn, client=make_aws_client("stepfunctions"), region=REGION
    )
    ended: dict[str, ExecutionOutcome] = {}
    for index, arn in enumerate(_all_arns(aws)):
        while (outcome := sfn.describe(arn)) is None:
            time.sleep(0.02)
        ended[f"e{index}"] = outcome

    def update(ids: list[str], outcomes: list[Any]) -> StageReport:
        return aws.app.updater.update(outcomes, ids)

    with faults.enabled():
        update_rounds, _ = _deliver(ended, update)

    names = Counter(arn.rsplit(":", 1)[-1] for arn in _all_arns(aws))
    records = aws.b.state.get_many(pids)
    states = Counter(r.state.value for r in records.values())
    started_twice = [r.payload_id for r in records.values() if len(r.executions) != 1]
    print(  # the numbers for the closing note (pytest -s)
        f"\nfault run: {PAYLOADS} payloads, rates {RATES}; process rounds {process_rounds}, "
        f"update-state rounds {update_rounds}; states {dict(states)}; executions "
        f"{sum(names.values())}; started twice {len(started_twice)}; injected "
        f"{sum(faults.counts.values())}: {dict(sorted(faults.counts.items()))}"
    )
    assert len(records) == PAYLOADS  # none lost
    assert states == {"SUCCEEDED": PAYLOADS}
    assert started_twice == []
    assert len(names) == PAYLOADS
    assert set(names.values()) == {1}  # exactly one execution per name and per payload
    assert {r.latest_execution for r in records.values()} == set(_all_arns(aws))
    assert faults.counts["lost sfn.StartExecution"] > 0  # the fault the issue is about


class _FailingPuts:
    """A payload store whose writes fail for good (an access-denied bucket)."""

    def __init__(self, real: PayloadStore) -> None:
        self.real = real

    def put_json(self, key: str, data: Any) -> str:
        raise BackendError(f"put {key} failed: AccessDenied")

    def put_many(self, objects: Any) -> list[str]:
        raise BackendError(f"put of {len(objects)} objects failed: AccessDenied")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _with_store(h: Harness, store: Any) -> Processor:
    b = h.b
    return Processor(Backends(b.state, b.queue, store, b.runner, b.notifier))


@pytest.mark.parametrize("started", [True, False])
def test_start_permanent_error_fails_only_when_nothing_was_started(
    harness: Harness, started: bool
) -> None:
    """Both backends: a permanent error while resuming a CLAIMED record turns it FAILED only
    when its execution does not exist; an execution that exists is recorded PROCESSING."""
    arn = _planned_arn(harness)
    harness.b.state.claim(PID, arn)
    if started:
        harness.b.runner.start("test-workflow1", arn.rsplit(":", 1)[-1], make_payload())
    processor = _with_store(harness, _FailingPuts(harness.b.store))

    report = processor.process(normalize(harness.sqs_event(make_payload())))

    assert outcomes_of(report) == (["started"] if started else ["failed"])
    assert harness.state_of(PID) is (State.PROCESSING if started else State.FAILED)
    assert harness.executions("test-workflow1") == int(started)
