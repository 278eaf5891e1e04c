"""AWS faults on every call of enqueue, process and update-state (issue 10, items 6 and 8).

moto's server over HTTP, with `FaultInjector`'s botocore hooks on the app's own clients:
throttles and 5xx (before the call, and per HTTP attempt under botocore's own retries),
lost responses (the call is performed, its response never arrives), connections dropped
before sending, and partial batch failures (some entries of a batch reported failed by the
service; a state-DB transaction cancelled for some of its items). Seeds are fixed, so each
run injects the same faults in the same order of calls.

What must hold: the enqueue report covers every input record; every failure is reported
with its reason; after the redeliveries a queue and an event source mapping would make,
every payload SUCCEEDED with one execution (0 lost, 0 duplicated StartExecutions), every
SUCCEEDED was announced, and nothing is left in the state table's outbox.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from cirrus_feed.backends.aws.dynamodb import DynamoDbStateStore
from cirrus_feed.backends.aws.stepfunctions import StepFunctionsWorkflowRunner
from cirrus_feed.backends.base import ExecutionOutcome, StateRecord
from cirrus_feed.errors import BackendError
from cirrus_feed.model.reports import Outcome, RecordResult, StageReport
from cirrus_feed.model.states import State
from cirrus_feed.pipeline.enqueue import SEND_CHUNK
from cirrus_feed.service.queue_worker import QueueWorker
from cirrus_feed.service.worker import WorkTotals
from cirrus_feed.support.batching import chunks
from tests.integration.conftest import REGION, AwsHarness, make_payload, payload_id
from tests.integration.faults import FaultInjector

pytestmark = pytest.mark.aws

PAYLOADS = int(os.environ.get("CIRRUS_FEED_AWS_FAULT_PAYLOADS", "100"))
SEED = 10
RATES = {
    "lost": 0.04,
    "dropped": 0.02,
    "throttled": 0.04,
    # Per HTTP attempt, under botocore's own retries (their backoff is what makes them slow).
    "lost_attempt": 0.01,
    "throttled_attempt": 0.01,
    "partial": 0.15,
}
WORKERS = 4  # process worker threads sharing the queue, as `process --workers 4` runs them
SEND = frozenset({"SendMessageBatch"})


@pytest.fixture
def faults() -> FaultInjector:
    return FaultInjector(seed=SEED)


@pytest.fixture
def aws(
    faults: FaultInjector, aws_endpoint: str, make_aws_client: Callable[[str], Any]
) -> Iterator[AwsHarness]:
    """A deployment on moto whose app clients carry ``faults`` (inactive until enabled);
    the queue dead-letters only after 50 receives, so a faulted run never loses a payload
    to the redrive."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    faults.install(session.events)
    harness = AwsHarness(make_aws_client, aws_endpoint, session=session)
    queue_url = harness.app.settings.aws.process_queue_url
    policy = harness.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    redrive = json.loads(policy["Attributes"]["RedrivePolicy"]) | {"maxReceiveCount": 50}
    harness.sqs.set_queue_attributes(
        QueueUrl=queue_url, Attributes={"RedrivePolicy": json.dumps(redrive)}
    )
    yield harness
    harness.app.close()


def ids() -> list[str]:
    return [payload_id(f"item-{i:04d}") for i in range(PAYLOADS)]


def queued_bodies(h: AwsHarness) -> list[dict[str, Any]]:
    """Every message on the process queue, read (and left) with an unfaulted client."""
    url = h.app.settings.aws.process_queue_url
    bodies: list[dict[str, Any]] = []
    while batch := h.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60
    ).get("Messages", []):
        bodies += [json.loads(m["Body"]) for m in batch]
    return bodies


def assert_reported(results: list[RecordResult]) -> None:
    """Every failure names its reason (and, from a queue, its message)."""
    for result in results:
        if result.outcome is Outcome.FAILED:
            assert result.reason, result


def enqueue_until_queued(h: AwsHarness, faults: FaultInjector) -> tuple[int, int]:
    """Enqueue every payload under faults; re-enqueue exactly what the report says failed,
    as a caller would. Returns (rounds, records reported failed)."""
    pending = {i: make_payload(f"item-{i:04d}") for i in range(PAYLOADS)}
    rounds = failed = 0
    while pending and rounds < 20:
        rounds += 1
        order = sorted(pending)
        with faults.enabled():
            report = h.app.enqueuer.enqueue([pending[i] for i in order])
        assert [r.index for r in report.results] == list(range(len(order)))  # every record
        assert {r.outcome for r in report.results} <= {Outcome.QUEUED, Outcome.FAILED}
        assert_reported(report.results)
        for result in report.results:
            if result.outcome is Outcome.QUEUED:
                del pending[order[result.index]]
            else:
                failed += 1
    assert not pending
    return rounds, failed


def test_enqueue_call_level_outage_reports_every_record(
    aws: AwsHarness, faults: FaultInjector
) -> None:
    """SendMessageBatch throttled on every call: nothing raises, all 3,000 records are
    reported failed with the reason, none silently untried (issue: 44 sent, 2,956 never
    tried, none reported)."""
    faults.throttled, faults.server_errors, faults.operations = 1.0, 0.0, SEND

    with faults.enabled():
        report = aws.app.enqueuer.enqueue(make_payload(f"o-{i:04d}") for i in range(3000))

    assert [r.index for r in report.results] == list(range(3000))
    assert report.counts == {"failed": 3000}
    tried = [r for r in report.results if (r.reason or "").startswith("SQS SendMessageBatch")]
    untried = [r for r in report.results if (r.reason or "").startswith("not sent: SQS")]
    assert len(tried) + len(untried) == 3000
    # Each send (a chunk of SEND_CHUNK bodies) tries its first batch of 10 through the
    # retries, then reports the rest of that send untried; the next send tries again.
    assert len(tried) == 10 * -(-3000 // SEND_CHUNK)
    assert all("ThrottlingException" in (r.reason or "") for r in report.results)
    assert queued_bodies(aws) == []


def _process_all(h: AwsHarness, faults: FaultInjector, store: DynamoDbStateStore) -> WorkTotals:
    """`WORKERS` AWS process workers on the faulted queue until every payload is PROCESSING
    or further (failed messages come back after their 2 s visibility timeout)."""
    worker = QueueWorker(
        "process",
        h.app.backends.queue,
        h.app.processor.process,
        wait_seconds=1,
        visibility_timeout=2,
    )
    totals = WorkTotals(keep_results=True)
    stop = threading.Event()
    threads = [
        threading.Thread(target=worker.run_forever, args=(stop, totals)) for _ in range(WORKERS)
    ]
    wanted = ids()
    started: list[StateRecord] = []
    deadline = time.monotonic() + 300  # generous: a loaded machine is slow, not wrong
    with faults.enabled():
        for thread in threads:
            thread.start()
        try:
            while time.monotonic() < deadline:
                try:
                    records = store.get_many(wanted)
                except BackendError:  # moto may show a half-written item to a racing read
                    continue
                started = [r for r in records.values() if r.state is not State.CLAIMED]
                if len(started) == PAYLOADS and not queued_bodies_count(h):
                    break
                time.sleep(0.5)  # real queues on real visibility timeouts
            else:
                pytest.fail(f"process: {len(started)} of {PAYLOADS} started before the deadline")
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    return totals


def queued_bodies_count(h: AwsHarness) -> int:
    url = h.app.settings.aws.process_queue_url
    attributes = h.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _update_all(
    h: AwsHarness, faults: FaultInjector, outcomes: list[ExecutionOutcome]
) -> tuple[int, list[RecordResult]]:
    """update-state on every execution end, redelivering (as SQS would) the records each
    batch reports failed, until none fails. Returns rounds and every result."""
    pending = {f"e{i}": o for i, o in enumerate(outcomes)}
    results: list[RecordResult] = []
    rounds = 0
    while pending and rounds < 30:
        rounds += 1
        for chunk in chunks(list(pending.items()), 10):
            message_ids = [m for m, _ in chunk]
            with faults.enabled():
                report: StageReport = h.app.updater.update([o for _, o in chunk], message_ids)
            assert len(report.results) == len(chunk)  # one result per record
            results += report.results
            failed = set(report.failed_message_ids())
            for message_id in message_ids:
                if message_id not in failed:
                    del pending[message_id]
    assert not pending, f"{len(pending)} completions still failing after {rounds} rounds"
    return rounds, results


def test_pipeline_under_faults_loses_nothing_and_starts_each_once(
    aws: AwsHarness,
    faults: FaultInjector,
    make_aws_client: Callable[[str], Any],
) -> None:
    for kind, rate in RATES.items():
        setattr(faults, kind, rate)
    store = DynamoDbStateStore(
        aws.app.settings.aws.state_db or "", client=make_aws_client("dynamodb")
    )

    enqueue_rounds, enqueue_failed = enqueue_until_queued(aws, faults)
    on_queue = Counter(
        payload_id(b["features"][0]["id"]) for b in queued_bodies(aws) if "features" in b
    )
    assert set(on_queue) == set(ids())  # 0 lost (a lost response may send a body twice)

    totals = _process_all(aws, faults, store)
    assert_reported(totals.process.results or [])
    assert all(r.message_id for r in totals.process.results or [] if r.outcome is Outcome.FAILED)

    sfn = StepFunctionsWorkflowRunner(
        aws.base_arn, client=make_aws_client("stepfunctions"), region=REGION
    )
    arns = [
        e["executionArn"]
        for page in aws.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=f"{aws.base_arn}test-workflow1"
        )
        for e in page["executions"]
    ]
    outcomes = []
    for arn in arns:  # EventBridge's event content: read unfaulted
        while (outcome := sfn.describe(arn)) is None:
            time.sleep(0.02)
        outcomes.append(outcome)
    update_rounds, updated = _update_all(aws, faults, outcomes)
    assert_reported(updated)

    records = store.get_many(ids())
    names = Counter(arn.rsplit(":", 1)[-1] for arn in arns)
    announced = Counter(
        json.loads(m["Message"])["payload_id"]
        for m in aws.tap_messages("events")
        if json.loads(m["Message"])["event_type"] == "SUCCEEDED"
    )
    leftover = store.pending_events()
    process_failed = totals.process.counts.get("failed", 0)
    update_failed = sum(r.outcome is Outcome.FAILED for r in updated)
    print(  # the numbers for the closing note (pytest -s)
        f"\naws faults: {PAYLOADS} payloads, rates {RATES}, seed {SEED}; injected "
        f"{sum(faults.counts.values())}: {dict(sorted(faults.counts.items()))}; enqueue rounds "
        f"{enqueue_rounds}, reported failed {enqueue_failed}, bodies on the queue "
        f"{sum(on_queue.values())}; process {dict(totals.process.counts)}; update-state "
        f"rounds {update_rounds}, reported failed {update_failed}; states "
        f"{dict(Counter(r.state.value for r in records.values()))}; executions {len(arns)}; "
        f"SUCCEEDED announced {sum(announced.values())} for {len(announced)} payloads; "
        f"outbox left {len(leftover)}"
    )
    assert len(records) == PAYLOADS  # 0 lost
    assert {r.state for r in records.values()} == {State.SUCCEEDED}
    assert all(len(r.executions) == 1 for r in records.values())
    assert len(arns) == PAYLOADS
    assert set(names.values()) == {1}  # 0 duplicated starts
    # every SUCCEEDED announced (SNS: at least once), nothing left in the outbox
    assert set(announced) == set(ids()), sorted(set(ids()) - set(announced))
    assert leftover == [], Counter((e.event_type, announced.get(e.payload_id, 0)) for e in leftover)
    assert process_failed + update_failed + enqueue_failed > 0  # the faults did bite
    kinds = {key.split(" ")[0] for key in faults.counts}
    assert kinds == set(RATES)  # every kind of fault was injected
    # ... on the state writes too. Which kinds hit the few transactions of a run depends on
    # how the workers' threads interleave; each kind on a transaction (cancelled items, a
    # lost response, a failed call) is pinned by tests/contract/test_dynamodb_transactions.py.
    transact = {k.split(" ")[0] for k in faults.counts if k.endswith("TransactWriteItems")}
    assert transact, dict(faults.counts)
