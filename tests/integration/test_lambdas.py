"""The Lambda handlers on AWS (moto's server), configured only by environment variables."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cirrus_feed import lambdas
from cirrus_feed.backends.base import ExecutionOutcome
from cirrus_feed.errors import CirrusFeedError
from cirrus_feed.model.states import State

from .conftest import REGION, AwsHarness, make_payload, payload_id

pytestmark = pytest.mark.aws


@pytest.fixture(scope="module")
def aws(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsHarness]:
    """A Cirrus deployment on moto, and the handlers' environment pointing at it.

    Shared by the module (each test uses its own payload ids): building the deployment and
    the handlers' clients is most of the cost of these tests.
    """
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=moto_server)  # type: ignore[call-overload]  # boto3-stubs type client() per literal service name

    harness = AwsHarness(client, moto_server)
    settings = harness.app.settings.aws
    with pytest.MonkeyPatch.context() as env:
        env.chdir(tmp_path_factory.mktemp("lambda"))  # no config/local.yaml: env is everything
        env.delenv("CIRRUS_FEED_CONFIG", raising=False)
        for name, value in {
            "CIRRUS_FEED_BACKEND": "aws",
            "CIRRUS_FEED_AWS_ENDPOINT_URL": moto_server,
            "AWS_REGION": REGION,
            "CIRRUS_STATE_DB": settings.state_db,
            "CIRRUS_PAYLOAD_BUCKET": settings.payload_bucket,
            "CIRRUS_BASE_WORKFLOW_ARN": settings.base_workflow_arn,
            "CIRRUS_PROCESS_QUEUE_URL": settings.process_queue_url,
            "CIRRUS_PUBLISH_TOPIC_ARN": settings.publish_topic_arn,
            "CIRRUS_WORKFLOW_EVENT_TOPIC_ARN": settings.workflow_event_topic_arn,
        }.items():
            assert value is not None
            env.setenv(name, value)
        lambdas._app.cache_clear()
        try:
            yield harness
        finally:
            if lambdas._app.cache_info().currsize:
                lambdas._app().close()
            lambdas._app.cache_clear()
            harness.app.close()


def ending(h: AwsHarness, pid: str) -> ExecutionOutcome:
    """How the latest execution of ``pid`` ended on moto (waits for it)."""
    record = h.record(pid)
    assert record is not None
    assert record.latest_execution is not None
    deadline = time.monotonic() + 15
    while (outcome := h.b.runner.describe(record.latest_execution)) is None:
        assert time.monotonic() < deadline, f"the execution of {pid} did not finish"
        time.sleep(0.05)
    return outcome


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

    before = aws.executions("test-workflow1")

    response = lambdas.process_handler(event, None)

    assert response["batchItemFailures"] == [{"itemIdentifier": "unknown"}]
    assert response["counts"] == {"started": 1, "invalid": 1, "failed": 1}
    assert state_of(aws, payload_id("g1")) is State.PROCESSING
    assert state_of(aws, payload_id("u1", "no-such-workflow")) is State.FAILED
    assert aws.executions("test-workflow1") == before + 1


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
    outcome = ending(aws, payload_id("s1"))  # the execution really ran on moto
    assert outcome.status == "SUCCEEDED"

    response = lambdas.update_state_handler(status_change(outcome), None)

    assert response == {"batchItemFailures": [], "counts": {"updated": 1}}
    assert state_of(aws, payload_id("s1")) is State.SUCCEEDED


PAIR = [("s2", "test-workflow1"), ("f2", "wf-fail")]


def test_lambdas_update_state_handler_through_sqs(aws: AwsHarness) -> None:
    lambdas.process_handler(
        sqs_event(("m1", make_payload(*PAIR[0])), ("m2", make_payload(*PAIR[1]))), None
    )
    outcomes = {o.status: o for o in (ending(aws, payload_id(*p)) for p in PAIR)}
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
    outcome = ending(aws, payload_id("s3"))
    lambdas.update_state_handler(status_change(outcome), None)
    before = aws.record(payload_id("s3"))

    response = lambdas.update_state_handler(sqs_event(("again", status_change(outcome))), None)

    assert response == {"batchItemFailures": [], "counts": {"duplicate": 1}}
    assert aws.record(payload_id("s3")) == before


def emf_documents(text: str) -> list[dict[str, Any]]:
    """The CloudWatch Embedded Metric Format lines among a handler's stdout."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]
    return [line for line in lines if "CloudWatchMetrics" in line["_aws"]]


def test_lambdas_handlers_write_their_counts_as_emf_lines(
    aws: AwsHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    event = sqs_event(("e1", make_payload("emf1")), ("e2", make_payload("emf2", "no-such")))

    response = lambdas.process_handler(event, None)

    [document] = emf_documents(capsys.readouterr().out)
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "cirrus-feed"
    assert directive["Dimensions"] == [["stage"]]
    assert document["stage"] == "process"
    assert (
        {k: document[k] for k in response["counts"]}
        == response["counts"]
        == {
            "started": 1,
            "failed": 1,
        }
    )
    named = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
    assert named == {
        "started": "Count",
        "failed": "Count",
        "errors": "Count",
        "duration": "Milliseconds",
    }


def test_lambdas_handler_that_raises_writes_an_error_metric(
    aws: AwsHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with pytest.raises(CirrusFeedError):
        lambdas.process_handler(make_payload("emf3", "no-such-workflow"), None)

    [document] = emf_documents(capsys.readouterr().out)
    assert (document["stage"], document["errors"]) == ("process", 1)
