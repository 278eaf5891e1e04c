"""The rendered template deployed into moto's CloudFormation (over its server), with the
Lambda zip uploaded to S3, next to a Cirrus deployment (`AwsHarness`), replacing its
process and update-state. Each function's handler then runs in-process with exactly the
environment the stack gave it, and payloads go through to SUCCEEDED:

* (a) from the scheduled ``stac-api`` feeder (a real STAC API), invoked with the input of its
  schedule (``feed_handler``: needs the Lambda handler of issue 11 item 3);
* (b) from an S3 notification on the events feeder's queue (``events_handler``).
"""

from __future__ import annotations

import ast
import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stac_data
import yaml

from cirrus_feed.config import load_settings
from cirrus_feed.deploy.template import render_template
from cirrus_feed.model.states import State
from tests.integration.conftest import AwsHarness
from tests.integration.test_lambdas import ending, status_change

from .stack import REGION, LambdaContext, Stack

pytestmark = pytest.mark.aws

ACCOUNT = "123456789012"  # moto's
WORKFLOW = "test-workflow1"
UPLOADS = "drone-uploads"


def feeder_config(stac_url: str) -> dict[str, Any]:
    return {
        "feeders": {
            "s2-scenes": {
                "type": "stac-api",
                "url": stac_url,
                "search": {"collections": [stac_data.COLLECTION]},
                "datetime": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"},
                "schedule": {"interval": "15m", "jitter": 30},
                "process": {"workflow": WORKFLOW},
            },
            "uploads": {
                "type": "events",
                "mapper": "s3-object",
                "options": {
                    "filter": {"suffix": [".tif"]},
                    "item": {"collection": UPLOADS, "id": "{stem}", "asset": "data"},
                },
                "process": {"workflow": WORKFLOW},
            },
        }
    }


@pytest.fixture
def cirrus(make_aws_client: Any, aws_endpoint: str) -> Iterator[AwsHarness]:
    """The existing Cirrus: state table, payload bucket, process queue, topics, machines."""
    harness = AwsHarness(make_aws_client, aws_endpoint)
    yield harness
    harness.app.close()


@pytest.fixture
def stac_items() -> list[dict[str, Any]]:
    tag = uuid.uuid4().hex[:6]
    return [stac_data.make_item(f"S2-{tag}-{n}", f"2024-01-01T0{n}:30:00Z") for n in range(1, 4)]


@pytest.fixture
def stack(
    request: pytest.FixtureRequest,
    cirrus: AwsHarness,
    make_aws_client: Callable[[str], Any],
    aws_endpoint: str,
    lambda_zip: bytes,
    serve_items: Callable[[list[dict[str, Any]]], str],
    stac_items: list[dict[str, Any]],
    tmp_path: Path,
) -> Stack:
    """The stack; replacing Cirrus's stages unless the test parametrizes it with "false"."""
    config = tmp_path / "feeders.yaml"
    config.write_text(yaml.safe_dump(feeder_config(serve_items(stac_items))))
    template = render_template(load_settings(config, env={}))
    s3 = make_aws_client("s3")
    code_bucket, uploads = f"{cirrus.prefix}code", f"{cirrus.prefix}uploads"
    s3.create_bucket(Bucket=code_bucket)
    s3.put_object(Bucket=code_bucket, Key="cirrus-feed.zip", Body=lambda_zip)
    s3.create_bucket(Bucket=uploads)
    aws = cirrus.app.settings.aws
    assert aws.process_queue_url
    assert aws.state_db
    assert aws.payload_bucket
    queue_arn = cirrus.sqs.get_queue_attributes(
        QueueUrl=aws.process_queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    parameters = {
        "CodeBucket": code_bucket,
        "CodeKey": "cirrus-feed.zip",
        "StateTableName": aws.state_db,
        "PayloadBucket": aws.payload_bucket,
        "ProcessQueueUrl": aws.process_queue_url,
        "ProcessQueueArn": queue_arn,
        "BaseWorkflowArn": cirrus.base_arn,
        "WorkflowEventTopicArn": aws.workflow_event_topic_arn or "",
        "PublishTopicArn": aws.publish_topic_arn or "",
        "WorkflowLogGroup": cirrus.log_group,
        "FeederConfigParameterName": f"/{cirrus.prefix}cirrus-feed/feeders",
        "EventSourceArns": f"arn:aws:s3:::{uploads}",
        "ReplaceCirrusStages": getattr(request, "param", "true"),
    }
    return Stack.create(
        make_aws_client, aws_endpoint, f"{cirrus.prefix}stack", template, parameters
    )


def role_statements(stack: Stack, role: str) -> dict[str, list[str]]:
    """The resources of each statement (by ``Sid``) of ``role``'s inline policy, as IAM has
    them once CloudFormation resolved the template's functions."""
    iam = stack.client("iam")
    name = stack.physical[role]
    (policy,) = iam.list_role_policies(RoleName=name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
    if isinstance(document, str):  # moto keeps a CloudFormation-made one as a Python repr
        document = ast.literal_eval(document)
    return {s["Sid"]: s["Resource"] for s in document["Statement"]}


def finish(cirrus: AwsHarness, stack: Stack, pids: list[str]) -> dict[str, Any]:
    """Let each payload's execution end, announce it on EventBridge as Step Functions does,
    and run update-state on what the stack's rule put on its queue."""
    events = stack.client("events")
    for pid in pids:
        change = status_change(ending(cirrus, pid))
        sent = events.put_events(
            Entries=[
                {
                    "Source": change["source"],
                    "DetailType": change["detail-type"],
                    "Detail": json.dumps(change["detail"]),
                    "Resources": [change["detail"]["executionArn"]],
                }
            ]
        )
        assert sent["FailedEntryCount"] == 0
    return stack.deliver("UpdateStateQueue", "UpdateStateFunction")


def test_stack_wires_every_function_to_its_resources(cirrus: AwsHarness, stack: Stack) -> None:
    aws = cirrus.app.settings.aws
    feeder = stack.function("FeedS2ScenesFunction")
    assert feeder["Handler"] == "cirrus_feed.lambdas.feed_handler"
    assert feeder["Runtime"] == "python3.11"
    assert feeder["Environment"]["Variables"] == {
        "CIRRUS_STATE_DB": aws.state_db,
        "CIRRUS_PAYLOAD_BUCKET": aws.payload_bucket,
        "CIRRUS_PAYLOAD_ROOT_PREFIX": "cirrus",
        "CIRRUS_BASE_WORKFLOW_ARN": cirrus.base_arn,
        "CIRRUS_PROCESS_QUEUE_URL": aws.process_queue_url,
        "CIRRUS_FEED_FEED_TABLE": stack.physical["FeedTable"],
        "CIRRUS_FEED_CONFIG_PARAMETER": f"/{cirrus.prefix}cirrus-feed/feeders",
    }
    events = stack.function("EventsUploadsFunction")["Environment"]["Variables"]
    assert events["CIRRUS_FEED_EVENTS_FEEDER"] == "uploads"
    process = stack.function("ProcessFunction")["Environment"]["Variables"]
    assert process["CIRRUS_WORKFLOW_EVENT_TOPIC_ARN"] == aws.workflow_event_topic_arn
    assert process["CIRRUS_PUBLISH_TOPIC_ARN"] == aws.publish_topic_arn
    assert process["CIRRUS_WORKFLOW_LOG_GROUP"] == cirrus.log_group
    # The feed store has the key schema DynamoDbFeedStore reads and writes.
    table = stack.client("dynamodb").describe_table(TableName=stack.physical["FeedTable"])
    assert {k["AttributeName"]: k["KeyType"] for k in table["Table"]["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    # Every queue-driven function reports per-message failures, from the right queue.
    sources = {
        function: [
            (m["EventSourceArn"], m["FunctionResponseTypes"]) for m in stack.mappings(function)
        ]
        for function in ("EventsUploadsFunction", "ProcessFunction", "UpdateStateFunction")
    }
    process_arn = cirrus.sqs.get_queue_attributes(
        QueueUrl=aws.process_queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert sources == {
        "EventsUploadsFunction": [
            (stack.queue_arn("EventsUploadsQueue"), ["ReportBatchItemFailures"])
        ],
        "ProcessFunction": [(process_arn, ["ReportBatchItemFailures"])],
        "UpdateStateFunction": [(stack.queue_arn("UpdateStateQueue"), ["ReportBatchItemFailures"])],
    }
    # The events queue dead-letters after five receives.
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url("EventsUploadsQueue"), AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stack.queue_arn("EventsUploadsDeadLetterQueue")
    assert int(redrive["maxReceiveCount"]) == 5
    # The roles' resources resolve to the deployment's own table, queue, machines, topics.
    process_policy = role_statements(stack, "ProcessRole")
    account_region = f"{REGION}:{ACCOUNT}"
    assert process_policy["ClaimAndRecordState"] == [
        f"arn:aws:dynamodb:{account_region}:table/{aws.state_db}"
    ]
    assert process_policy["StartWorkflows"] == [f"{cirrus.base_arn}*"]
    assert process_policy["DescribeExecutions"] == [
        f"arn:aws:states:{account_region}:execution:{cirrus.prefix}*"
    ]
    assert process_policy["Payloads"] == [f"arn:aws:s3:::{aws.payload_bucket}/cirrus/*"]
    assert process_policy["AnnounceWorkflowEvents"] == [aws.workflow_event_topic_arn]
    assert process_policy["ConsumeProcessQueue"] == [process_arn]
    update_policy = role_statements(stack, "UpdateStateRole")
    assert update_policy["PublishItems"] == [aws.publish_topic_arn]
    assert update_policy["Chain"] == [process_arn]
    feeder_policy = role_statements(stack, "FeedS2ScenesRole")
    assert feeder_policy["ReadFeederConfig"] == [
        f"arn:aws:ssm:{account_region}:parameter/{cirrus.prefix}cirrus-feed/feeders"
    ]
    assert feeder_policy["Enqueue"] == [process_arn]
    assert "StartWorkflows" not in feeder_policy  # feeders only enqueue
    # The code every function runs is the uploaded zip, which holds the handlers' module.
    code = stack.client("s3").get_object(Bucket=f"{cirrus.prefix}code", Key="cirrus-feed.zip")
    with zipfile.ZipFile(io.BytesIO(code["Body"].read())) as zipped:
        assert "cirrus_feed/lambdas.py" in zipped.namelist()


def test_stack_scheduled_stac_feed_to_succeeded(
    cirrus: AwsHarness,
    stack: Stack,
    stac_items: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    stack.take_over_mappings()
    schedules = stack.create_schedules()
    assert list(schedules) == ["FeedS2ScenesSchedule"]
    schedule = schedules["FeedS2ScenesSchedule"]
    assert schedule["ScheduleExpression"] == "rate(15 minutes)"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 1}
    assert schedule["Target"]["Arn"] == stack.function("FeedS2ScenesFunction")["FunctionArn"]

    # When: the schedule fires (its input, a context with time to spare).
    fed = stack.invoke(
        "FeedS2ScenesFunction", json.loads(schedule["Target"]["Input"]), LambdaContext(600_000)
    )

    # Then: every item is on Cirrus's process queue, the run is done, and the pipeline the
    # stack replaced takes each to SUCCEEDED.
    assert fed["more"] is False
    processed = stack.deliver(cirrus.app.settings.aws.process_queue_url or "", "ProcessFunction")
    assert processed["batchItemFailures"] == []
    assert processed["counts"] == {"started": 3}
    pids = [f"{stac_data.COLLECTION}/workflow-{WORKFLOW}/{item['id']}" for item in stac_items]
    updated = finish(cirrus, stack, pids)
    assert updated["batchItemFailures"] == []
    assert {pid: cirrus.state_of(pid) for pid in pids} == dict.fromkeys(pids, State.SUCCEEDED)
    # The run is recorded in the stack's feed store.
    runs = stack.client("dynamodb").query(
        TableName=stack.physical["FeedTable"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :run)",
        ExpressionAttributeValues={":pk": {"S": "feeder#s2-scenes"}, ":run": {"S": "run#"}},
    )
    assert runs["Count"] >= 1
    assert not (tmp_path / "var").exists()  # nothing local was written


def test_stack_s3_notification_to_succeeded(
    cirrus: AwsHarness, stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    stack.take_over_mappings()
    s3, uploads = stack.client("s3"), f"{cirrus.prefix}uploads"
    s3.put_bucket_notification_configuration(
        Bucket=uploads,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": stack.queue_arn("EventsUploadsQueue"),
                    "Events": ["s3:ObjectCreated:*"],
                }
            ]
        },
    )
    # moto, like S3, first sends a test event to a newly configured queue: not a failure.
    tested = stack.deliver("EventsUploadsQueue", "EventsUploadsFunction")
    assert tested["batchItemFailures"] == []
    assert cirrus.b.queue.receive(10) == []  # and no payload

    # When: an upload lands in the bucket.
    s3.put_object(Bucket=uploads, Key="surveys/ortho-7.tif", Body=b"II*\x00")
    pushed = stack.deliver("EventsUploadsQueue", "EventsUploadsFunction")

    # Then: its payload goes through process and update-state to SUCCEEDED.
    assert pushed["batchItemFailures"] == []
    processed = stack.deliver(cirrus.app.settings.aws.process_queue_url or "", "ProcessFunction")
    assert processed["counts"] == {"started": 1}
    pid = f"{UPLOADS}/workflow-{WORKFLOW}/ortho-7"
    assert finish(cirrus, stack, [pid])["batchItemFailures"] == []
    assert cirrus.state_of(pid) is State.SUCCEEDED
    assert cirrus.event_types()[-1] == "SUCCEEDED"
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("stack", ["false"], indirect=True)
def test_stack_next_to_cirrus_feeds_its_process_queue(
    cirrus: AwsHarness,
    stack: Stack,
    stac_items: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    # Cirrus keeps its own process and update-state: the stack has none of them.
    functions = {r for r in stack.physical if r.endswith("Function")}
    assert functions == {"FeedS2ScenesFunction", "EventsUploadsFunction"}
    assert not {"UpdateStateQueue", "WorkflowStatusRule", "ProcessMapping"} & set(stack.physical)
    stack.take_over_mappings()
    schedule = stack.create_schedules()["FeedS2ScenesSchedule"]

    fed = stack.invoke(
        "FeedS2ScenesFunction", json.loads(schedule["Target"]["Input"]), LambdaContext(600_000)
    )

    # Then: the payloads wait on Cirrus's process queue for Cirrus's process Lambda.
    assert fed["more"] is False
    messages = cirrus.b.queue.receive(10)
    assert sorted(json.loads(m.body)["features"][0]["id"] for m in messages) == sorted(
        item["id"] for item in stac_items
    )
