"""The Lambda handlers on AWS (moto's server), configured only by environment variables."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cirrus_feed import lambdas
from cirrus_feed.backends.base import ExecutionOutcome
from cirrus_feed.errors import CirrusFeedError
from cirrus_feed.states import State

from .conftest import REGION, AwsHarness, make_payload, payload_id

pytestmark = pytest.mark.aws


@pytest.fixture
def aws(
    make_aws_client: Callable[[str], Any],
    aws_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[AwsHarness]:
    """A Cirrus deployment on moto, and the handlers' environment pointing at it."""
    harness = AwsHarness(make_aws_client, aws_endpoint)
    settings = harness.app.settings.aws
    monkeypatch.chdir(tmp_path)  # no config/local.yaml: the environment is everything
    monkeypatch.delenv("CIRRUS_FEED_CONFIG", raising=False)
    for name, value in {
        "CIRRUS_FEED_BACKEND": "aws",
        "CIRRUS_FEED_AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_REGION": REGION,
        "CIRRUS_STATE_DB": settings.state_db,
        "CIRRUS_PAYLOAD_BUCKET": settings.payload_bucket,
        "CIRRUS_BASE_WORKFLOW_ARN": settings.base_workflow_arn,
        "CIRRUS_PROCESS_QUEUE_URL": settings.process_queue_url,
        "CIRRUS_PUBLISH_TOPIC_ARN": settings.publish_topic_arn,
        "CIRRUS_WORKFLOW_EVENT_TOPIC_ARN": settings.workflow_event_topic_arn,
    }.items():
        assert value is not None
        monkeypatch.setenv(name, value)
    lambdas._app.cache_clear()
    yield harness
    if lambdas._app.cache_info().currsize:
        lambdas._app().close()
    lambdas._app.cache_clear()
    harness.app.close()


def sqs_event(*records: tuple[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"receipt-{message_id}",
                "body": json.dumps(body),
                "eventSource": "aws:sqs",
                "attributes": {"ApproximateReceiveCount": "1"},
            }
            for message_id, body in records
        ]
    }


def status_change(outcome: ExecutionOutcome) -> dict[str, Any]:
    """The EventBridge event Step Functions emits when ``outcome``'s execution ends."""
    detail: dict[str, Any] = {
        "executionArn": outcome.execution_arn,
        "stateMachineArn": outcome.execution_arn.replace(":execution:", ":stateMachine:").rsplit(
            ":", 1
        )[0],
        "name": outcome.name,
        "status": outcome.status,
        "input": json.dumps(outcome.input),
        "output": None if outcome.output is None else json.dumps(outcome.output),
        "inputDetails": {"included": True},
        "outputDetails": {"included": True},
        "error": outcome.error,
        "cause": outcome.cause,
    }
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2025-01-01T00:00:00Z",
        "region": REGION,
        "resources": [outcome.execution_arn],
        "detail": detail,
    }


def state_of(h: AwsHarness, pid: str) -> State | None:
    record = h.record(pid)
    return None if record is None else record.state


def test_lambdas_process_handler_returns_exactly_the_failed_record(aws: AwsHarness) -> None:
    event = sqs_event(
        ("good", make_payload("g1")),
        ("invalid", {"type": "FeatureCollection", "features": []}),
        ("unknown", make_payload("u1", "no-such-workflow")),
    )

    response = lambdas.process_handler(event, None)

    assert response["batchItemFailures"] == [{"itemIdentifier": "unknown"}]
    assert response["counts"] == {"started": 1, "invalid": 1, "failed": 1}
    assert state_of(aws, payload_id("g1")) is State.PROCESSING
    assert state_of(aws, payload_id("u1", "no-such-workflow")) is State.FAILED
    assert aws.executions("test-workflow1") == 1


def test_lambdas_process_handler_direct_invocation_returns_counts(aws: AwsHarness) -> None:
    response = lambdas.process_handler(make_payload("d1"), None)

    assert response == {"batchItemFailures": [], "counts": {"started": 1}}
    assert state_of(aws, payload_id("d1")) is State.PROCESSING


def test_lambdas_process_handler_direct_invocation_with_failed_record_raises(
    aws: AwsHarness,
) -> None:
    # A direct invocation has no per-record retry: the invocation itself must fail.
    with pytest.raises(CirrusFeedError, match="failed"):
        lambdas.process_handler(make_payload("d2", "no-such-workflow"), None)

    assert state_of(aws, payload_id("d2", "no-such-workflow")) is State.FAILED


def test_lambdas_update_state_handler_direct_eventbridge_event(aws: AwsHarness) -> None:
    lambdas.process_handler(sqs_event(("m1", make_payload("s1"))), None)
    [outcome] = aws.outcomes()  # the execution really ran on moto
    assert outcome.status == "SUCCEEDED"

    response = lambdas.update_state_handler(status_change(outcome), None)

    assert response == {"batchItemFailures": [], "counts": {"updated": 1}}
    assert state_of(aws, payload_id("s1")) is State.SUCCEEDED


def test_lambdas_update_state_handler_through_sqs(aws: AwsHarness) -> None:
    lambdas.process_handler(
        sqs_event(("m1", make_payload("s2")), ("m2", make_payload("f2", "wf-fail"))), None
    )
    outcomes = {o.status: o for o in aws.outcomes()}
    assert set(outcomes) == {"SUCCEEDED", "FAILED"}
    event = sqs_event(
        ("e-ok", status_change(outcomes["SUCCEEDED"])),
        ("e-fail", status_change(outcomes["FAILED"])),
        ("e-junk", {"not": "an execution event"}),
    )

    response = lambdas.update_state_handler(event, None)

    assert response["batchItemFailures"] == []  # the junk record is kept, not retried
    assert response["counts"] == {"updated": 2, "invalid": 1}
    assert state_of(aws, payload_id("s2")) is State.SUCCEEDED
    failed = aws.record(payload_id("f2", "wf-fail"))
    assert failed is not None
    assert failed.state is State.FAILED
    assert failed.last_error is not None
    assert failed.last_error.startswith(f"{outcomes['FAILED'].error}: ")


def test_lambdas_update_state_handler_repeated_event_changes_nothing(aws: AwsHarness) -> None:
    lambdas.process_handler(sqs_event(("m1", make_payload("s3"))), None)
    [outcome] = aws.outcomes()
    lambdas.update_state_handler(status_change(outcome), None)
    before = aws.record(payload_id("s3"))

    response = lambdas.update_state_handler(sqs_event(("again", status_change(outcome))), None)

    assert response == {"batchItemFailures": [], "counts": {"duplicate": 1}}
    assert aws.record(payload_id("s3")) == before
