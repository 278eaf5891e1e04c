"""Every Lambda handler, in a fresh interpreter whose environment is a Lambda's with only
Cirrus's own variables: the backend is AWS (moto's server) with no cirrus-feed variable."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cirrus_feed import lambdas
from cirrus_feed.model.states import State

from .conftest import REGION, AwsHarness, make_payload, payload_id
from .test_lambdas import ending, sqs_event, status_change

pytestmark = pytest.mark.aws

ROOT = Path(__file__).resolve().parents[2]
# One handler call per interpreter: event on stdin, response (or the error) on stdout.
SCRIPT = """
import json, sys
from cirrus_feed import lambdas
call = json.load(sys.stdin)
try:
    response = getattr(lambdas, call["handler"])(call["event"], None)
except Exception as exc:
    response = {"error": type(exc).__name__, "message": str(exc)}
print(json.dumps(response))
"""


def cirrus_env(h: AwsHarness, endpoint: str) -> dict[str, str]:
    """What a Lambda of a Cirrus deployment sees: the runtime's and the SDK's variables and
    Cirrus's; ``AWS_ENDPOINT_URL`` (the SDK's own) stands in for AWS itself."""
    aws = h.app.settings.aws
    cirrus = {
        "CIRRUS_STATE_DB": aws.state_db,
        "CIRRUS_PAYLOAD_BUCKET": aws.payload_bucket,
        "CIRRUS_BASE_WORKFLOW_ARN": aws.base_workflow_arn,
        "CIRRUS_PROCESS_QUEUE_URL": aws.process_queue_url,
        "CIRRUS_PUBLISH_TOPIC_ARN": aws.publish_topic_arn,
        "CIRRUS_WORKFLOW_EVENT_TOPIC_ARN": aws.workflow_event_topic_arn,
        "CIRRUS_WORKFLOW_LOG_GROUP": aws.workflow_log_group,
    }
    env = {name: value for name, value in cirrus.items() if value is not None}
    return {
        **env,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "AWS_LAMBDA_FUNCTION_NAME": "my-cirrus-process",
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL": endpoint,
    }


def invoke(handler: str, event: dict[str, Any], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(  # our interpreter, our script
        [sys.executable, "-c", SCRIPT],
        input=json.dumps({"handler": handler, "event": event}),
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    response: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return response


@pytest.fixture
def deployment(make_aws_client: Any, aws_endpoint: str) -> Any:
    harness = AwsHarness(make_aws_client, aws_endpoint)
    yield harness
    harness.app.close()


def test_lambda_handlers_are_all_covered_here() -> None:
    functions = inspect.getmembers(lambdas, inspect.isfunction)
    handlers = {name for name, _ in functions if name.endswith("_handler")}
    assert handlers == {"process_handler", "update_state_handler", "events_handler", "feed_handler"}


def test_lambda_handlers_run_on_aws_with_cirrus_variables_alone(
    deployment: AwsHarness, aws_endpoint: str, tmp_path: Path
) -> None:
    h, env = deployment, cirrus_env(deployment, aws_endpoint)
    item = f"env-{uuid.uuid4().hex[:8]}"
    pid = payload_id(item)

    # process: claims, starts the Step Functions execution.
    processed = invoke("process_handler", sqs_event(("m1", make_payload(item))), env, tmp_path)
    assert processed == {"batchItemFailures": [], "counts": {"started": 1}}
    assert h.state_of(pid) is State.PROCESSING
    assert h.executions("test-workflow1") == 1

    # update-state: the execution's EventBridge event, through SQS as Cirrus wires it.
    event = {
        "Records": [
            {
                "messageId": "u1",
                "receiptHandle": "r-u1",
                "body": json.dumps(status_change(ending(h, pid))),
                "eventSource": "aws:sqs",
            }
        ]
    }
    updated = invoke("update_state_handler", event, env, tmp_path)
    assert updated["batchItemFailures"] == []
    assert h.state_of(pid) is State.SUCCEEDED
    events = h.event_types()  # reached the deployment's workflow-event topic
    assert "STARTED_PROCESSING" in events
    assert events[-1] == "SUCCEEDED"
    # ... and one metric log event per workflow event in the deployment's log group (this
    # harness's own, so nothing else writes there).
    streams = h.logs.describe_log_streams(logGroupName=h.log_group)["logStreams"]
    logged = [
        json.loads(e["message"])["event"]
        for stream in streams
        for e in h.logs.get_log_events(
            logGroupName=h.log_group, logStreamName=stream["logStreamName"]
        )["events"]
    ]
    assert sorted(logged) == sorted(events)

    # events: the feeder comes from a file that names no backend; Cirrus's variables still
    # select aws, so the payload lands on the deployment's process queue.
    config = tmp_path / "events.yaml"
    config.write_text(
        json.dumps(
            {
                "feeders": {
                    "pushed": {
                        "type": "events",
                        "mapper": "stac-item",
                        "process": {"workflow": "test-workflow1"},
                    }
                }
            }
        )
    )
    feature = make_payload(f"{item}-pushed")["features"][0]
    message = {"MessageId": item, "Message": json.dumps(feature)}
    sns = {"Records": [{"EventSource": "aws:sns", "Sns": message}]}
    pushed = invoke("events_handler", sns, {**env, "CIRRUS_FEED_CONFIG": str(config)}, tmp_path)
    assert pushed["batchItemFailures"] == []
    messages = h.b.queue.receive(10)
    bodies = [json.loads(m.body) for m in messages]
    assert [b["features"][0]["id"] for b in bodies] == [f"{item}-pushed"]
    h.b.queue.delete([m.receipt for m in messages])

    assert not (tmp_path / "var").exists()  # nothing local was written


def test_lambda_without_cirrus_variables_is_a_config_error(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "AWS_LAMBDA_FUNCTION_NAME": "my-cirrus-process",
        "AWS_REGION": REGION,
    }
    calls: dict[str, dict[str, Any]] = {
        "process_handler": {"Records": []},
        "update_state_handler": {"Records": []},
        "events_handler": {"Records": []},
        "feed_handler": {"feeder": "nightly"},  # the full run is in test_scheduled_feed.py
    }
    for handler, event in calls.items():
        response = invoke(handler, event, env, tmp_path)
        assert response["error"] == "ConfigError"
        assert "local backend is not chosen implicitly" in response["message"]
        assert "CIRRUS_STATE_DB" in response["message"]
    assert not (tmp_path / "var").exists()
